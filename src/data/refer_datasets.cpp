#include "m2sa/data/refer_datasets.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "entry_json.h"
#include "m2sa/core/read_file.h"
#include "m2sa/data/image_files.h"
#include "m2sa/io/pickle.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using detail::json;

namespace {

Ref to_ref(const PyValue& v, std::size_t i, const std::string& file) {
  const std::string where = file + ": refs[" + std::to_string(i) + "]";
  try {
    Ref r;
    r.ref_id = v.at("ref_id").as_int();
    r.ann_id = v.at("ann_id").as_int();
    r.image_id = v.at("image_id").as_int();
    r.category_id = v.find("category_id") ? v.at("category_id").as_int() : 0;
    r.split = v.at("split").as_str();
    for (const PyValue& s : v.at("sentences").items()) r.sentences.push_back(s.at("sent").as_str());
    return r;
  } catch (const BadEntry&) {
    throw;
  } catch (const Error& e) {
    throw BadEntry(where + ": " + e.what());
  }
}

fs::path refer_image_dir(const fs::path& refer_seg_dir, const std::string& dataset) {
  if (dataset == "refclef") return refer_seg_dir / "images" / "saiapr_tc-12";
  return refer_seg_dir / "images" / "mscoco" / "images" / "train2014";
}

Sample start_sample(const ReferApi& api, const ReferImage& item, const std::string& name) {
  Sample s;
  s.dataset = name;
  s.source = name + ":" + std::to_string(item.image->id);
  s.image_path = (api.image_dir() / item.image->file_name).string();
  const std::string where = name + ": image id " + std::to_string(item.image->id) + " (" + item.image->file_name + ")";
  const ImageSize size = probe_image(s.image_path, where);
  if (size.height != item.image->height || size.width != item.image->width)
    bad_entry(where, ": instances.json says ", item.image->height, "x", item.image->width, " (h x w) but the image is ",
              size.height, "x", size.width);
  s.height = size.height;
  s.width = size.width;
  return s;
}

at::Tensor ref_mask(const ReferApi& api, const Ref& ref, const CocoImage& img) {
  const CocoIndex& inst = api.instances();
  return inst.refer_mask(inst.anns.at(inst.ann_by_id.at(ref.ann_id)), img.height, img.width);
}

}  // namespace

ReferApi::ReferApi(const fs::path& refer_seg_dir, const std::string& dataset, const std::string& split_by,
                   bool skip_bad, SkipReport* report)
    : dataset_(dataset) {
  if (dataset != "refcoco" && dataset != "refcoco+" && dataset != "refcocog" && dataset != "refclef")
    fail("refer_seg: unknown dataset \"", dataset, "\"; expected refcoco, refcoco+, refcocog or refclef");
  const fs::path dir = refer_seg_dir / dataset;
  refs_path_ = dir / ("refs(" + split_by + ").p");
  image_dir_ = refer_image_dir(refer_seg_dir, dataset);
  instances_ = read_coco_json(dir / "instances.json", dataset, skip_bad, report);

  const std::string bytes = read_file(refs_path_);
  const PyValue root = unpickle(bytes, PickleHooks{}, refs_path_.string());
  if (root.kind() != PyValue::Kind::List) fail(refs_path_.string(), ": expected a list of refs, got a ", root.kind_name());
  const auto& items = root.items();
  for (std::size_t i = 0; i < items.size(); ++i) {
    detail::guarded(skip_bad, report, dataset, [&] {
      Ref r = to_ref(items[i], i, refs_path_.string());
      if (!instances_.ann_by_id.count(r.ann_id))
        bad_entry(refs_path_.string(), ": ref_id ", r.ref_id, ": ann_id ", r.ann_id, " is not in instances.json");
      if (!instances_.image_by_id.count(r.image_id))
        bad_entry(refs_path_.string(), ": ref_id ", r.ref_id, ": image_id ", r.image_id, " is not in instances.json");
      refs_.push_back(std::move(r));
    });
  }
}

std::vector<const Ref*> ReferApi::refs_in_split(const std::string& split) const {
  std::vector<const Ref*> out;
  const bool letter = split == "testA" || split == "testB" || split == "testC";
  const bool pair = split == "testAB" || split == "testBC" || split == "testAC";
  if (!letter && !pair && split != "test" && split != "train" && split != "val")
    fail(dataset_, ": unknown split \"", split, "\"; expected train, val, test, testA, testB, testC, testAB, testBC or testAC");
  for (const Ref& r : refs_) {
    bool keep = false;
    if (letter) keep = r.split.find(split.back()) != std::string::npos;
    else if (split == "test") keep = r.split.find("test") != std::string::npos;
    else keep = r.split == split;
    if (keep) out.push_back(&r);
  }
  return out;
}

std::vector<ReferImage> refer_images(const ReferApi& api, const std::string& split) {
  std::map<int64_t, std::vector<const Ref*>> by_image;
  for (const Ref* r : api.refs_in_split(split)) by_image[r->image_id].push_back(r);
  std::vector<ReferImage> out;
  for (auto& [id, refs] : by_image)
    out.push_back({&api.instances().images.at(api.instances().image_by_id.at(id)), std::move(refs)});
  return out;
}

// ---- training ----

ReferTrainDataset::ReferTrainDataset(const fs::path& dataset_dir, const std::string& dataset, ReferOptions options,
                                     QuestionLists lists, SkipReport* report)
    : options_(std::move(options)), lists_(std::move(lists)) {
  api_ = std::make_unique<ReferApi>(dataset_dir / "refer_seg", dataset, dataset == "refcocog" ? "umd" : "unc",
                                    options_.skip_bad, report);
  images_ = refer_images(*api_, "train");
  if (images_.empty()) fail(dataset, ": no image with refs in the train split");
}

std::optional<Sample> ReferTrainDataset::get(int64_t index, Rng& rng) const {
  const ReferImage& item = images_.at(static_cast<std::size_t>(index));
  std::vector<std::string> sents;
  std::vector<const Ref*> owners;
  for (const Ref* r : item.refs)
    for (const std::string& s : r->sentences) {
      sents.push_back(s);
      owners.push_back(r);
    }
  if (sents.empty()) return std::nullopt;
  Sample s = start_sample(*api_, item, name());
  const int64_t max_total = int64_t{options_.num_classes_per_question} * options_.num_classes_per_sample;
  std::vector<int64_t> sampled;
  if (static_cast<int64_t>(sents.size()) >= max_total) {
    sampled = sample_without_replacement(rng, static_cast<int64_t>(sents.size()), max_total);
  } else {
    for (int64_t i = 0; i < static_cast<int64_t>(sents.size()); ++i) sampled.push_back(i);
  }
  const auto groups = allocate_class(static_cast<int>(sampled.size()), options_.num_classes_per_sample,
                                     options_.num_classes_per_question, rng);
  std::vector<at::Tensor> masks;
  for (const auto& group : groups) {
    std::vector<std::string> names;
    for (int g : group) {
      const int64_t k = sampled[static_cast<std::size_t>(g)];
      names.push_back(sents[static_cast<std::size_t>(k)]);
      masks.push_back(ref_mask(*api_, *owners[static_cast<std::size_t>(k)], *item.image));
      const auto& cats = api_->instances();
      auto cat = cats.category_by_id.find(owners[static_cast<std::size_t>(k)]->category_id);
      s.targets.push_back(Target{sents[static_cast<std::size_t>(k)],
                                 cat == cats.category_by_id.end() ? "" : cats.categories[cat->second].second, false});
    }
    QuestionAnswer qa = class_question(names, lists_.short_questions, rng);
    s.conversations.push_back({Turn{qa.question, qa.answer}});
  }
  s.masks = at::stack(masks);
  return s;
}

// ---- evaluation ----

ReferEvalDataset::ReferEvalDataset(const fs::path& dataset_dir, const std::string& dataset, const std::string& split_by,
                                   const std::string& split, bool multi, bool skip_bad, SkipReport* report)
    : multi_(multi) {
  api_ = std::make_unique<ReferApi>(dataset_dir / "refer_seg", dataset, split_by, skip_bad, report);
  images_ = refer_images(*api_, split);
  name_ = std::string(multi ? "multi" : "") + dataset + "/" + split;
  if (images_.empty()) fail(name_, ": no image with refs in split \"", split, "\"");
}

Sample ReferEvalDataset::get(int64_t index) const {
  M2SA_CHECK(index >= 0 && index < size(), name_, ": item ", index, " out of range (", size(), " items)");
  const ReferImage& item = images_[static_cast<std::size_t>(index)];
  Sample s = start_sample(*api_, item, name_);
  std::vector<std::string> sents;
  std::vector<const Ref*> owners;
  for (const Ref* r : item.refs)
    for (const std::string& t : r->sentences) {
      sents.push_back(lower(detail::py_strip(t)));
      owners.push_back(r);
    }
  if (sents.empty()) bad_entry(name_, ": image id ", item.image->id, " has refs but no sentences");
  const std::string prefix = std::string(kImageToken) + "\n What is ";
  const std::string suffix = " in this image? Please output segmentation mask.";
  if (multi_) {
    const int group_sizes[3] = {6, 5, 4};
    std::size_t i = 0;
    int g = 0;
    while (i < sents.size()) {
      const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(group_sizes[g]), sents.size() - i);
      std::vector<std::string> texts;
      for (std::size_t k = i; k < i + n; ++k) texts.push_back(detail::py_strip(sents[k]));
      std::string answer;
      if (n > 1) answer = join_and(std::vector<std::string>(n, kSegToken)) + ".";
      else answer = kSegToken;  // reference: `answer[0]`, no period
      s.conversations.push_back({Turn{prefix + join_and(texts) + suffix, answer}});
      i += n;
      g = (g + 1) % 3;
    }
  } else {
    for (const std::string& t : sents)
      s.conversations.push_back({Turn{prefix + detail::py_strip(t) + suffix, std::string(kSegToken) + "."}});
  }
  std::vector<at::Tensor> masks;
  for (std::size_t k = 0; k < sents.size(); ++k) {
    const CocoIndex& inst = api_->instances();
    const CocoAnn& ann = inst.anns.at(inst.ann_by_id.at(owners[k]->ann_id));
    masks.push_back(inst.refer_mask(ann, item.image->height, item.image->width));
    s.targets.push_back(Target{sents[k], "", false});
  }
  s.masks = at::stack(masks);
  return s;
}

// ---- RefCOCOm ----

RefCocomEvalDataset::RefCocomEvalDataset(const fs::path& dataset_dir, const std::string& json_name, bool skip_bad,
                                         SkipReport* report)
    : refer_seg_dir_(dataset_dir / "refer_seg") {
  json_path_ = refer_seg_dir_ / "RefCOCOm" / "annotations" / json_name;
  name_ = "refcocom/" + fs::path(json_name).stem().string();
  const json root = detail::parse_json_file(json_path_);
  if (!root.is_array()) fail(json_path_.string(), ": expected a list of {img_name, segment_id, sentences}");
  for (std::size_t i = 0; i < root.size(); ++i) {
    detail::guarded(skip_bad, report, name_, [&] {
      const std::string where = json_path_.string() + ": entry " + std::to_string(i);
      Item it;
      it.index = static_cast<int64_t>(i);
      it.img_name = detail::need_string(root[i], "img_name", where);
      const json& seg = detail::need(root[i], "segment_id", where);
      if (seg.is_number_integer()) it.segment_id = std::to_string(detail::need_int(root[i], "segment_id", where));
      else if (seg.is_string()) it.segment_id = seg.get<std::string>();
      else bad_entry(where, ": segment_id must be an integer or a string");
      const json& sents = detail::need_array(root[i], "sentences", where);
      for (std::size_t k = 0; k < sents.size(); ++k)
        it.sentences.push_back(lower(detail::py_strip(
            detail::need_string(sents[k], "sent", where + ": sentences[" + std::to_string(k) + "]"))));
      if (it.sentences.empty()) bad_entry(where, ": no sentences");
      items_.push_back(std::move(it));
    });
  }
}

Sample RefCocomEvalDataset::get(int64_t index) const {
  M2SA_CHECK(index >= 0 && index < size(), name_, ": item ", index, " out of range (", size(), " items)");
  const Item& it = items_[static_cast<std::size_t>(index)];
  const std::string where = json_path_.string() + ": entry " + std::to_string(it.index) + " (" + it.img_name + ")";
  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + std::to_string(it.index);
  s.image_path = (refer_seg_dir_ / "images" / "mscoco" / "images" / "train2014" / it.img_name).string();
  const ImageSize size = probe_image(s.image_path, where);
  s.height = size.height;
  s.width = size.width;
  fs::path mask_path = refer_seg_dir_ / "RefCOCOm" / "masks" / (it.segment_id + ".png");
  std::error_code ec;
  if (!fs::exists(mask_path, ec)) {
    const fs::path alt = refer_seg_dir_ / "Refcocom" / "masks" / (it.segment_id + ".png");
    if (!fs::exists(alt, ec))
      bad_entry(where, ": mask ", it.segment_id, ".png is in neither ", mask_path.parent_path().string(), " nor ",
                alt.parent_path().string());
    mask_path = alt;
  }
  const at::Tensor gray = read_gray_like_cv2(mask_path, where);
  if (gray.size(0) != s.height || gray.size(1) != s.width)
    bad_entry(where, ": mask ", mask_path.string(), " is ", gray.size(0), "x", gray.size(1), " but the image is ", s.height,
              "x", s.width);
  const at::Tensor mask = gray.eq(255).to(at::kByte);
  std::vector<at::Tensor> masks;
  for (const std::string& t : it.sentences) {
    s.conversations.push_back({Turn{std::string(kImageToken) + "\n What is " + detail::py_strip(t) +
                                        " in this image? Please output segmentation mask.",
                                    std::string(kSegToken) + "."}});
    masks.push_back(mask);
    s.targets.push_back(Target{t, "", false});
  }
  s.masks = at::stack(masks);
  return s;
}

}  // namespace m2sa::data
