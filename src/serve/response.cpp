#include "m2sa/serve/response.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <string>
#include <vector>

#include "m2sa/core/base64.h"
#include "m2sa/infer/output_writer.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/mask_image.h"
#include "m2sa/vision/overlay.h"

namespace m2sa::serve {

std::string target_color(int64_t index) {
  const auto c = vision::palette_color(index);
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c[0], c[1], c[2]);
  return buf;
}

json prediction_response(const infer::Prediction& p, const at::Tensor& rgb, const OutputRequest& output,
                         const ServeTimings& timings) {
  json j = json::object();
  j["question"] = p.question;
  j["answer"] = p.answer;
  j["finish_reason"] = p.finish_reason;
  j["image_size"] = {{"height", p.height}, {"width", p.width}};
  json targets = json::array();
  std::vector<at::Tensor> masks;
  std::vector<std::string> labels;
  for (const infer::Target& t : p.targets) {
    json tj{{"index", t.index}, {"phrase", t.phrase}, {"color", target_color(t.index)}};
    if (t.mask.defined()) {
      tj["bbox"] = {t.box[0], t.box[1], t.box[2], t.box[3]};
      tj["area"] = t.area;
      if (output.masks) {
        if (output.mask_format == MaskFormat::kRle) {
          json rle = coco::rle_to_json(coco::encode(t.mask.to(at::kByte).contiguous()));
          tj["mask"] = {{"format", "rle"}, {"size", rle.at("size")}, {"counts", rle.at("counts")}};
        } else {
          tj["mask"] = {{"format", "png"}, {"data", base64_encode(encode_image(vision::mask_to_png(t.mask), ".png"))}};
        }
      }
      masks.push_back(t.mask);
      labels.push_back(t.phrase);
    }
    targets.push_back(std::move(tj));
  }
  j["targets"] = std::move(targets);
  if (output.overlay) {
    const at::Tensor img = masks.empty() ? rgb.contiguous() : vision::overlay_masks(rgb, at::stack(masks), labels);
    j["overlay"] = "data:image/png;base64," + base64_encode(encode_image(img, ".png"));
  }
  json tm = infer::timings_json(p.timings);
  tm["queue_s"] = timings.queue_s;
  tm["server_total_s"] = timings.total_s;
  j["timings"] = std::move(tm);
  return j;
}

}  // namespace m2sa::serve
