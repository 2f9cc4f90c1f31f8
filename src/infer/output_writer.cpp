#include "m2sa/infer/output_writer.h"

#include <ATen/ATen.h>
#include <cstdio>
#include <set>
#include <system_error>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/mask_image.h"

namespace m2sa::infer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kResultJson = "result.json";
constexpr const char* kOverlayPng = "overlay.png";

// File names an earlier result.json in `dir` says we wrote (plain names only: never a path that leaves the directory).
std::set<std::string> previous_outputs(const fs::path& dir) {
  std::set<std::string> names;
  const fs::path p = dir / kResultJson;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return names;
  json j;
  try {
    j = read_json_file(p);
  } catch (const std::exception&) {
    return names;  // not ours, or damaged: leave everything alone
  }
  auto take = [&](const json& v) {
    if (!v.is_string()) return;
    const std::string s = v.get<std::string>();
    if (s.empty() || s.find('/') != std::string::npos || s.find('\\') != std::string::npos || s == "." || s == "..")
      return;
    names.insert(s);
  };
  if (!j.is_object()) return names;
  if (j.contains("targets") && j["targets"].is_array())
    for (const auto& t : j["targets"])
      if (t.is_object() && t.contains("mask_file")) take(t["mask_file"]);
  if (j.contains("overlay_file")) take(j["overlay_file"]);
  if (j.contains("reference_files") && j["reference_files"].is_array())
    for (const auto& f : j["reference_files"]) take(f);
  return names;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::string dump_json(const json& value, int indent) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string sanitize_file_name(const std::string& text, std::size_t max_length) {
  std::string out;
  bool dash = false;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      if (dash && !out.empty()) out += '-';
      dash = false;
      out += static_cast<char>(c);
    } else if (c >= 'A' && c <= 'Z') {
      if (dash && !out.empty()) out += '-';
      dash = false;
      out += static_cast<char>(c - 'A' + 'a');
    } else {
      dash = true;
    }
  }
  if (out.size() > max_length) {
    std::size_t cut = out.rfind('-', max_length);
    if (cut == std::string::npos || cut < max_length / 2) cut = max_length;
    out.resize(cut);
    while (!out.empty() && out.back() == '-') out.pop_back();
  }
  return out;
}

std::string mask_file_name(const Target& target, int64_t num_targets) {
  const int width = std::max<int>(2, static_cast<int>(std::to_string(std::max<int64_t>(0, num_targets - 1)).size()));
  const std::string slug = sanitize_file_name(target.phrase);
  char index[32];
  std::snprintf(index, sizeof index, "%0*lld", width, static_cast<long long>(target.index));
  return std::string("mask_") + index + (slug.empty() ? "" : "_" + slug) + ".png";
}

json timings_json(const PredictionTimings& t) {
  return json{{"preprocess_s", t.preprocess_s},   {"clip_s", t.clip_s},
              {"prefill_s", t.prefill_s},         {"decode_s", t.decode_s},
              {"sam_s", t.sam_s},                 {"masks_s", t.masks_s},
              {"total_s", t.total_s},             {"prompt_tokens", t.prompt_tokens},
              {"new_tokens", t.new_tokens},       {"decode_steps", t.decode_steps},
              {"batch_queries", t.batch_queries}, {"batch_images", t.batch_images},
              {"clip_cached", t.clip_cached},     {"sam_cached", t.sam_cached}};
}

std::string timing_line(const PredictionTimings& t) {
  std::string s = "CLIP " + (t.clip_cached ? std::string("cached") : fixed(t.clip_s, 3) + " s");
  s += ", prefill " + fixed(t.prefill_s, 3) + " s (" + std::to_string(t.prompt_tokens) + " tok)";
  const double rate = t.decode_s > 0 ? static_cast<double>(t.decode_steps) / t.decode_s : 0.0;
  s += ", decode " + fixed(t.decode_s, 3) + " s (" + std::to_string(t.new_tokens) + " tok";
  if (t.decode_steps > 0) s += ", " + fixed(rate, 1) + " tok/s";
  s += ")";
  s += ", SAM encoder " + (t.sam_cached ? std::string("cached") : fixed(t.sam_s, 3) + " s");
  s += ", mask decoding " + fixed(t.masks_s, 3) + " s";
  s += ", total " + fixed(t.total_s, 3) + " s";
  if (t.batch_queries > 1) s += " (batch of " + std::to_string(t.batch_queries) + " questions)";
  return s;
}

json prediction_json(const Prediction& p, const std::vector<std::string>& mask_files, const OutputOptions& options) {
  json j = json::object();
  if (!options.image_path.empty()) j["image"] = options.image_path;
  j["image_size"] = {{"height", p.height}, {"width", p.width}};
  j["question"] = p.question;
  j["answer"] = p.answer;
  j["reference_text"] = p.reference_text;
  j["finish_reason"] = p.finish_reason;
  j["num_targets"] = p.targets.size();
  if (p.targets.empty()) j["note"] = "the answer has no [SEG] token, so there are no masks";
  json targets = json::array();
  for (std::size_t k = 0; k < p.targets.size(); ++k) {
    const Target& t = p.targets[k];
    json tj{{"index", t.index}, {"phrase", t.phrase}, {"text_before", t.text_before}};
    if (k < mask_files.size() && !mask_files[k].empty()) tj["mask_file"] = mask_files[k];
    if (t.mask.defined()) {
      tj["segmentation"] = coco::rle_to_json(coco::encode(t.mask.to(at::kByte).contiguous()));
      tj["bbox"] = {t.box[0], t.box[1], t.box[2], t.box[3]};
      tj["area"] = t.area;
    }
    targets.push_back(std::move(tj));
  }
  j["targets"] = std::move(targets);
  j["timings"] = timings_json(p.timings);
  for (auto it = options.extra.begin(); it != options.extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

WrittenOutputs write_prediction(const fs::path& dir, const at::Tensor& rgb, const Prediction& p,
                                const OutputOptions& options) {
  return with_context("writing the outputs to " + dir.string(), [&] {
    M2SA_CHECK(rgb.defined() && rgb.scalar_type() == at::kByte && rgb.dim() == 3 && rgb.size(2) == 3 &&
                   rgb.size(0) == p.height && rgb.size(1) == p.width,
               "the image must be the uint8 [", p.height, ", ", p.width, ", 3] image of the prediction, got ",
               rgb.defined() ? c10::str(rgb.scalar_type(), " ", rgb.sizes()) : std::string("undefined"));
    std::error_code ec;
    fs::create_directories(dir, ec);
    M2SA_CHECK(fs::is_directory(dir), "cannot create the output directory", ec ? " (" + ec.message() + ")" : "");
    const std::set<std::string> before = previous_outputs(dir);
    std::set<std::string> now;
    WrittenOutputs w;
    w.dir = dir;
    const bool have_masks = !p.targets.empty() && p.targets.front().mask.defined();
    std::vector<std::string> mask_files;
    if (options.masks && have_masks) {
      for (const Target& t : p.targets) {
        const std::string name = mask_file_name(t, static_cast<int64_t>(p.targets.size()));
        vision::write_mask_png(dir / name, t.mask);
        mask_files.push_back(name);
        w.masks.push_back(dir / name);
        now.insert(name);
      }
    }
    at::Tensor stacked;
    if (have_masks) {
      std::vector<at::Tensor> ms;
      for (const Target& t : p.targets) ms.push_back(t.mask);
      stacked = at::stack(ms);
    }
    if (options.overlay) {
      std::vector<std::string> labels;
      for (const Target& t : p.targets) labels.push_back(t.phrase);
      // Without masks the overlay is the image itself (nothing to colour, no legend).
      write_image(dir / kOverlayPng, have_masks ? vision::overlay_masks(rgb, stacked, labels, options.overlay_options)
                                                : rgb.contiguous());
      w.overlay = dir / kOverlayPng;
      now.insert(kOverlayPng);
    }
    std::vector<std::string> reference_names;
    if (options.reference_outputs && have_masks) {
      std::string stem = vision::reference_stem(options.image_path.empty() ? "image" : options.image_path);
      if (stem.empty()) stem = "image";
      w.reference = vision::write_reference_outputs(dir, stem, rgb, stacked);
      for (const auto& f : w.reference) {
        reference_names.push_back(f.filename().string());
        now.insert(f.filename().string());
      }
    }
    json j = prediction_json(p, mask_files, options);
    if (!w.overlay.empty()) j["overlay_file"] = kOverlayPng;
    if (!reference_names.empty()) j["reference_files"] = reference_names;
    w.json = dir / kResultJson;
    write_file_atomic(w.json, dump_json(j) + "\n");
    // Stale outputs of an earlier run in this directory (listed in its result.json, not rewritten now).
    for (const std::string& name : before)
      if (!now.count(name)) fs::remove(dir / name, ec);
    return w;
  });
}

}  // namespace m2sa::infer
