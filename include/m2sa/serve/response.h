#pragma once
// The JSON of an answer (POST /v1/segment, /v1/sessions/{id}/ask, the "m2sa" field of chat completions):
//   {"answer", "finish_reason", "targets": [{"index", "phrase", "color": "#rrggbb", "bbox": [x, y, w, h], "area",
//    "mask": {"format": "rle", "size": [h, w], "counts"} | {"format": "png", "data": base64 PNG}}],
//    "image_size": {"height", "width"}, "overlay": "data:image/png;base64,..." (when asked), "timings": {...}}
// Masks are the same bytes `m2sa infer` writes (COCO compressed RLE; 0/255 PNG).
#include <ATen/core/Tensor.h>

#include "m2sa/core/json_reader.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/serve/request.h"

namespace m2sa::serve {

// Timings of the server around a prediction.
struct ServeTimings {
  double queue_s = 0;  // from arrival to the start of its prefill
  double total_s = 0;  // from arrival to the answer
};

json prediction_response(const infer::Prediction& prediction, const at::Tensor& rgb, const OutputRequest& output,
                         const ServeTimings& timings);

// "#rrggbb" of target k: the overlay's colour (vision::palette_color).
std::string target_color(int64_t index);

}  // namespace m2sa::serve
