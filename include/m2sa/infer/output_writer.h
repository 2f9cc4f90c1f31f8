#pragma once
// What `m2sa infer --out DIR` writes for one prediction (docs/INFER.md):
//   mask_<k>[_<phrase>].png   one per [SEG]: 0 / 255 grayscale at the original size (k zero-padded to 2+ digits,
//                             the phrase sanitised: lower-case ASCII letters, digits and '-', at most 48 characters)
//   overlay.png               the image with a colour per target, contours and a legend "k: phrase"
//   result.json               answer, per target {index, phrase, text_before, mask_file, segmentation (COCO
//                             compressed RLE {"size": [h, w], "counts": str}), bbox [x, y, w, h], area}, timings
//   <stem>_mask_<j>.jpg, <stem>_masked_img_<j>.jpg   optional: the reference chat.py outputs (spec 5.2)
// Every file is written atomically (temp file + rename), result.json last, so a result.json always describes complete
// files. Files listed by an earlier result.json in the same directory that this prediction does not rewrite (e.g. a
// mask_03 from a previous run with more targets) are removed; nothing else in the directory is touched.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/vision/overlay.h"

namespace m2sa::infer {

struct OutputOptions {
  bool masks = true;
  bool overlay = true;
  bool reference_outputs = false;  // chat.py's {stem}_mask_{j}.jpg (mask x 100) and {stem}_masked_img_{j}.jpg
  std::string image_path;          // recorded in result.json; the reference stem comes from it ("image" if empty)
  json extra = json::object();     // more top-level fields for result.json (id, round, model, precision, ...)
  vision::OverlayOptions overlay_options;
};

struct WrittenOutputs {
  std::filesystem::path dir;
  std::filesystem::path json;     // result.json
  std::filesystem::path overlay;  // empty when not written
  std::vector<std::filesystem::path> masks;      // one per target, in order
  std::vector<std::filesystem::path> reference;  // the reference-style files, in chat.py's order
};

// Lower-case ASCII letters and digits; every other run of characters becomes one '-'; trimmed of '-' and cut to
// max_length characters (at a '-' when possible). "The chair's Leg!" -> "the-chair-s-leg".
std::string sanitize_file_name(const std::string& text, std::size_t max_length = 48);
// "mask_<k>_<phrase>.png" (or "mask_<k>.png" without a phrase); k padded to max(2, digits(num_targets - 1)).
std::string mask_file_name(const Target& target, int64_t num_targets);

// The result.json document; mask_files[k] is target k's file name ("" or missing: not written).
json prediction_json(const Prediction& prediction, const std::vector<std::string>& mask_files = {},
                     const OutputOptions& options = {});
// Stage timings as JSON {preprocess_s, clip_s, prefill_s, decode_s, sam_s, masks_s, total_s, prompt_tokens, ...}.
json timings_json(const PredictionTimings& timings);
// "CLIP 0.12 s, prefill 0.30 s (270 tok), decode 1.20 s (15 tok, 12.5 tok/s), SAM encoder 0.80 s, masks 0.05 s,
// total 2.61 s" (cached stages say so).
std::string timing_line(const PredictionTimings& timings);

// Writes the prediction's files into `dir` (created if needed). rgb: the uint8 [H, W, 3] image the prediction is
// about (for the overlay and the reference images).
WrittenOutputs write_prediction(const std::filesystem::path& dir, const at::Tensor& rgb, const Prediction& prediction,
                                const OutputOptions& options = {});

// JSON text that never throws on invalid UTF-8 in generated text (replaced by U+FFFD), as written to the files.
std::string dump_json(const json& value, int indent = 2);

}  // namespace m2sa::infer
