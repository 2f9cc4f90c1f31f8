#include "coco_part_dataset.h"

#include <ATen/ATen.h>

#include "m2sa/data/image_files.h"

namespace m2sa::data::detail {

CocoPartDataset::CocoPartDataset(std::string name, CocoIndex index, std::unordered_map<int64_t, PartName> names,
                                 std::function<std::filesystem::path(const std::string&)> image_path,
                                 SemSegOptions options, QuestionLists lists)
    : name_(std::move(name)),
      index_(std::move(index)),
      names_(std::move(names)),
      image_path_(std::move(image_path)),
      options_(std::move(options)),
      lists_(std::move(lists)) {
  M2SA_CHECK(!index_.images.empty(), name_, ": ", index_.path.string(), " has no images");
}

std::optional<Sample> CocoPartDataset::get(int64_t item, Rng& rng) const {
  const CocoImage& img = index_.images.at(static_cast<std::size_t>(item));
  if (img.anns.empty()) return std::nullopt;  // the reference draws again
  const std::string where = name_ + ": " + index_.path.string() + ": image id " + std::to_string(img.id) + " (" +
                            img.file_name + ")";
  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + std::to_string(img.id);
  s.image_path = image_path_(img.file_name).string();
  const ImageSize size = probe_image(s.image_path, where);
  if (size.height != img.height || size.width != img.width)
    bad_entry(where, ": the annotation file says ", img.height, "x", img.width, " (h x w) but the image is ",
              size.height, "x", size.width);
  s.height = size.height;
  s.width = size.width;

  const int64_t max_total = int64_t{options_.num_classes_per_question} * options_.num_classes_per_sample;
  const int64_t n = static_cast<int64_t>(img.anns.size());
  std::vector<int64_t> sampled;  // indices into index_.anns
  if (n >= max_total) {
    for (int64_t i : sample_without_replacement(rng, n, max_total)) sampled.push_back(img.anns[static_cast<std::size_t>(i)]);
  } else {
    sampled = img.anns;
  }
  // Names are drawn per sampled annotation, before allocate_class (the reference's order of draws).
  std::vector<std::string> phrases;
  for (int64_t a : sampled) {
    const CocoAnn& ann = index_.anns[static_cast<std::size_t>(a)];
    const PartName& pn = names_.at(ann.category_id);
    phrases.push_back(pn.part.empty() ? pn.object : part_phrase(pn.object, pn.part, rng));
  }
  const auto groups = allocate_class(static_cast<int>(sampled.size()), options_.num_classes_per_sample,
                                     options_.num_classes_per_question, rng);
  std::vector<at::Tensor> masks;
  for (const auto& group : groups) {
    std::vector<std::string> names;
    for (int g : group) {
      const CocoAnn& ann = index_.anns[static_cast<std::size_t>(sampled[static_cast<std::size_t>(g)])];
      const PartName& pn = names_.at(ann.category_id);
      names.push_back(phrases[static_cast<std::size_t>(g)]);
      masks.push_back(index_.ann_to_mask(ann));
      s.targets.push_back(Target{phrases[static_cast<std::size_t>(g)], pn.part.empty() ? pn.object : pn.object + ":" + pn.part,
                                 !pn.part.empty()});
    }
    QuestionAnswer qa = class_question(names, lists_.short_questions, rng);
    s.conversations.push_back({Turn{qa.question, qa.answer}});
  }
  s.masks = at::stack(masks);
  return s;
}

}  // namespace m2sa::data::detail
