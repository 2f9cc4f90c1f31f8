#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "entry_json.h"
#include "label_map_dataset.h"
#include "m2sa/data/image_files.h"
#include "m2sa/data/vqa_reason_datasets.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using detail::json;

namespace {

// cp1252 -> UTF-8 (the reference's fallback when a JSON file is not UTF-8).
std::string cp1252_to_utf8(const std::string& in) {
  static const uint16_t high[32] = {0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
                                    0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
                                    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178};
  std::string out;
  for (unsigned char c : in) {
    uint32_t cp = c < 0x80 ? c : (c < 0xA0 ? high[c - 0x80] : c);
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::vector<cv::Point> polygon_points(const json& shape, const std::string& where) {
  const json& pts = detail::need_array(shape, "points", where);
  std::vector<cv::Point> out;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (!pts[i].is_array() || pts[i].size() != 2 || !pts[i][0].is_number() || !pts[i][1].is_number())
      bad_entry(where, ": points[", i, "] must be [x, y]");
    const double x = pts[i][0].get<double>(), y = pts[i][1].get<double>();
    if (!std::isfinite(x) || !std::isfinite(y) || std::fabs(x) > 1e9 || std::fabs(y) > 1e9)
      bad_entry(where, ": points[", i, "] is not a finite coordinate");
    out.emplace_back(static_cast<int>(x), static_cast<int>(y));  // np.int32 cast truncates toward zero
  }
  if (out.empty()) bad_entry(where, ": polygon without points");
  return out;
}

void draw(cv::Mat& m, const std::vector<cv::Point>& pts, int value) {
  std::vector<std::vector<cv::Point>> polys{pts};
  cv::polylines(m, polys, true, cv::Scalar(value), 1, cv::LINE_8);
  cv::fillPoly(m, polys, cv::Scalar(value), cv::LINE_8);
}

}  // namespace

ReasonSegAnnotation read_reason_seg_json(const fs::path& json_path, int64_t height, int64_t width) {
  std::ifstream in(json_path, std::ios::binary);
  if (!in) bad_entry(json_path.string(), ": annotation file does not exist or cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  json anno;
  try {
    anno = json::parse(text);
  } catch (const json::exception&) {
    try {
      anno = json::parse(cp1252_to_utf8(text));
    } catch (const json::exception& e) {
      bad_entry(json_path.string(), ": invalid JSON: ", e.what());
    }
  }
  const std::string where = json_path.string();
  ReasonSegAnnotation out;
  const json& shapes = detail::need_array(anno, "shapes", where);
  const json& sents = detail::need(anno, "text", where);
  if (sents.is_string()) {
    out.sentences.push_back(sents.get<std::string>());
  } else if (sents.is_array()) {
    for (const json& s : sents) {
      if (!s.is_string()) bad_entry(where, ": \"text\" must hold strings");
      out.sentences.push_back(s.get<std::string>());
    }
  } else {
    bad_entry(where, ": \"text\" must be a list of sentences");
  }
  const json& is_sentence = detail::need(anno, "is_sentence", where);
  if (!is_sentence.is_boolean() && !is_sentence.is_number_integer()) bad_entry(where, ": \"is_sentence\" must be a boolean");
  if (is_sentence.is_boolean()) {
    out.is_sentence = is_sentence.get<bool>();
  } else {
    try {
      out.is_sentence = json_int(is_sentence, where + ": \"is_sentence\"") != 0;
    } catch (const Error& e) {
      bad_entry(e.what());
    }
  }

  // Valid shapes and their filled areas.
  struct Shape {
    std::vector<cv::Point> pts;
    int value;
    int64_t area;
  };
  std::vector<Shape> valid;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const std::string wi = where + ": shapes[" + std::to_string(i) + "]";
    const std::string label = lower(detail::need_string(shapes[i], "label", wi));
    if (label == "flag") continue;  // deprecated annotations
    Shape s{polygon_points(shapes[i], wi), label.find("ignore") != std::string::npos ? 255 : 1, 0};
    cv::Mat tmp = cv::Mat::zeros(static_cast<int>(height), static_cast<int>(width), CV_8UC1);
    draw(tmp, s.pts, 1);
    s.area = cv::countNonZero(tmp);
    valid.push_back(std::move(s));
  }
  // np.argsort(area)[::-1]: largest first; numpy's sort of these short lists is stable, so among equal areas the
  // later shape comes first after the reversal.
  std::vector<std::size_t> order(valid.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return valid[a].area < valid[b].area; });
  std::reverse(order.begin(), order.end());
  out.mask = at::zeros({height, width}, at::kByte);
  cv::Mat m(static_cast<int>(height), static_cast<int>(width), CV_8UC1, out.mask.data_ptr<uint8_t>());
  for (std::size_t k : order) draw(m, valid[k].pts, valid[k].value);
  return out;
}

// ---- training ----

ReasonSegTrainDataset::ReasonSegTrainDataset(const fs::path& dataset_dir, const std::string& data, double explanatory,
                                             int num_classes_per_sample, QuestionLists lists)
    : explanatory_(explanatory), num_classes_per_sample_(num_classes_per_sample), lists_(std::move(lists)) {
  const std::size_t bar = data.find('|');
  if (bar == std::string::npos) fail("reason_seg_data \"", data, "\": expected \"<name>|<split>[_<split>...]\", e.g. ReasonSeg|train");
  const std::string ds = data.substr(0, bar);
  name_ = "reason_seg";
  const fs::path root = dataset_dir / "reason_seg" / ds;
  std::string splits = data.substr(bar + 1);
  std::size_t p = 0;
  while (p <= splits.size()) {
    std::size_t q = splits.find('_', p);
    if (q == std::string::npos) q = splits.size();
    for (const fs::path& img : detail::list_files(root / splits.substr(p, q - p), ".jpg", "reason_seg")) images_.push_back(img);
    p = q + 1;
  }
  if (images_.empty()) fail("reason_seg: no images in ", root.string(), " for splits \"", splits, "\"");
  if (explanatory_ != -1) {
    const fs::path path = root / "explanatory" / "train.json";
    const json items = detail::parse_json_file(path);
    if (!items.is_array()) fail(path.string(), ": expected a list of {image, query, outputs}");
    for (std::size_t i = 0; i < items.size(); ++i) {
      try {
        const std::string where = path.string() + ": entry " + std::to_string(i);
        explanations_[detail::need_string(items[i], "image", where)] = detail::need_string(items[i], "outputs", where);
      } catch (const BadEntry& e) {
        fail(e.what());
      }
    }
  }
}

std::optional<Sample> ReasonSegTrainDataset::get(int64_t index, Rng& rng) const {
  const fs::path& image = images_.at(static_cast<std::size_t>(index));
  const ImageSize size = probe_image(image, name_);
  fs::path json_path = image;
  json_path.replace_extension(".json");
  ReasonSegAnnotation anno = read_reason_seg_json(json_path, size.height, size.width);
  if (anno.sentences.empty()) bad_entry(json_path.string(), ": no sentences in \"text\"");
  const int64_t n = static_cast<int64_t>(anno.sentences.size());
  std::vector<int64_t> ids;
  if (n >= num_classes_per_sample_) ids = sample_without_replacement(rng, n, num_classes_per_sample_);
  else for (int64_t i = 0; i < n; ++i) ids.push_back(i);

  const std::string image_name = image.filename().string();
  auto expl = explanations_.find(image_name);
  const bool has_expl = explanatory_ != -1 && expl != explanations_.end();
  int choice_kind = 0;
  if (has_expl) choice_kind = uniform01(rng) < explanatory_ ? 2 : static_cast<int>(uniform_int(rng, 2));

  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + image_name;
  s.image_path = image.string();
  s.height = size.height;
  s.width = size.width;
  for (int64_t id : ids) {
    const std::string& text = anno.sentences[static_cast<std::size_t>(id)];
    Turn t;
    if (anno.is_sentence) t.user = py_format(choice(rng, lists_.long_questions), {{"sent", text}});
    else t.user = py_format(choice(rng, lists_.short_questions), {{"class_name", lower(text)}});
    if (has_expl && choice_kind == 1) {
      t.assistant = py_format(choice(rng, answer_list()), {{"seg", kSegToken}}) + " " + expl->second;
      t.user = std::string(kImageToken) + "\n" + text + " " + choice(rng, explanatory_question_list());
    } else if (has_expl && choice_kind == 2) {
      t.user = std::string(kImageToken) + "\n" + text;
      t.assistant = expl->second;
    } else {
      t.assistant = py_format(choice(rng, answer_list()), {{"seg", kSegToken}});
    }
    s.conversations.push_back({t});
  }
  const at::Tensor target = anno.mask.eq(1).to(at::kByte);
  if (has_expl && choice_kind == 2) {
    s.masks = at::zeros({0, size.height, size.width}, at::kByte);
  } else {
    s.masks = target.unsqueeze(0).repeat({static_cast<int64_t>(ids.size()), 1, 1});
    for (int64_t id : ids) s.targets.push_back(Target{anno.sentences[static_cast<std::size_t>(id)], "", false});
  }
  s.ignore = anno.mask.eq(255).to(at::kByte);
  return s;
}

// ---- evaluation ----

ReasonSegEvalDataset::ReasonSegEvalDataset(const fs::path& dataset_dir, const std::string& split)
    : name_("reasonseg/" + split) {
  images_ = detail::list_files(dataset_dir / "reason_seg" / "ReasonSeg" / split, ".jpg", name_);
  if (images_.empty()) fail(name_, ": no .jpg images in ", (dataset_dir / "reason_seg" / "ReasonSeg" / split).string());
}

Sample ReasonSegEvalDataset::get(int64_t index) const {
  M2SA_CHECK(index >= 0 && index < size(), name_, ": item ", index, " out of range (", size(), " items)");
  const fs::path& image = images_[static_cast<std::size_t>(index)];
  const ImageSize size = probe_image(image, name_);
  fs::path json_path = image;
  json_path.replace_extension(".json");
  ReasonSegAnnotation anno = read_reason_seg_json(json_path, size.height, size.width);
  if (anno.sentences.empty()) bad_entry(json_path.string(), ": no sentences in \"text\"");
  const std::string text = detail::py_strip(anno.sentences[0]);
  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + image.filename().string();
  s.image_path = image.string();
  s.height = size.height;
  s.width = size.width;
  Turn t;
  t.user = anno.is_sentence
               ? std::string(kImageToken) + "\n " + text + " Please output segmentation mask."
               : std::string(kImageToken) + "\n What is " + text + " in this image? Please output segmentation mask.";
  t.assistant = std::string(kSegToken) + ".";
  s.conversations.push_back({t});
  s.masks = anno.mask.eq(1).to(at::kByte).unsqueeze(0);
  s.ignore = anno.mask.eq(255).to(at::kByte);
  s.targets.push_back(Target{anno.sentences[0], "", false});
  return s;
}

}  // namespace m2sa::data
