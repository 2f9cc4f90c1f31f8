#include "m2sa/data/coco_json.h"

#include <ATen/ATen.h>

#include "entry_json.h"
#include "m2sa/io/coco_mask.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using detail::json;

namespace {

template <typename Fn>
auto as_bad_entry(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const BadEntry&) {
    throw;
  } catch (const Error& e) {
    throw BadEntry(e.what());
  }
}

}  // namespace

CocoIndex read_coco_json(const fs::path& path, const std::string& dataset, bool skip_bad, SkipReport* report) {
  CocoIndex index;
  index.path = path;
  std::string section;
  std::vector<int64_t> counters(3, 0);
  bool saw_root_object = false;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth == 0 && event == json::parse_event_t::object_start) saw_root_object = true;
    if (depth == 0 && event == json::parse_event_t::array_start)
      fail(path.string(), ": expected a COCO object {images, annotations, categories} at the top level, got a list");
    if (depth == 1 && event == json::parse_event_t::key) section = parsed.get<std::string>();
    if (depth != 2 || !(event == json::parse_event_t::object_end || event == json::parse_event_t::value ||
                        event == json::parse_event_t::array_end))
      return true;
    if (section == "images") {
      const int64_t i = counters[0]++;
      detail::guarded(skip_bad, report, dataset, [&] {
        const std::string where = path.string() + ": images[" + std::to_string(i) + "]";
        CocoImage img;
        img.id = detail::need_int(parsed, "id", where);
        img.file_name = detail::need_string(parsed, "file_name", where);
        img.height = detail::need_int(parsed, "height", where);
        img.width = detail::need_int(parsed, "width", where);
        if (img.height <= 0 || img.width <= 0)
          bad_entry(where, " (id ", img.id, "): size ", img.height, "x", img.width, " is not positive");
        if (index.image_by_id.count(img.id)) bad_entry(where, ": duplicate image id ", img.id);
        index.image_by_id[img.id] = index.images.size();
        index.images.push_back(std::move(img));
      });
    } else if (section == "annotations") {
      const int64_t i = counters[1]++;
      detail::guarded(skip_bad, report, dataset, [&] {
        const std::string where = path.string() + ": annotations[" + std::to_string(i) + "]";
        CocoAnn ann;
        ann.id = detail::need_int(parsed, "id", where);
        ann.image_id = detail::need_int(parsed, "image_id", where);
        ann.category_id = detail::need_int(parsed, "category_id", where);
        const json& segm = detail::need(parsed, "segmentation", where);
        if (!segm.is_array() && !segm.is_object())
          bad_entry(where, " (id ", ann.id, "): segmentation must be polygons or an RLE dict, got ", detail::type_of(segm));
        ann.segmentation = segm.dump();
        if (index.ann_by_id.count(ann.id)) bad_entry(where, ": duplicate annotation id ", ann.id);
        index.ann_by_id[ann.id] = index.anns.size();
        index.anns.push_back(std::move(ann));
      });
    } else if (section == "categories") {
      const int64_t i = counters[2]++;
      const std::string where = path.string() + ": categories[" + std::to_string(i) + "]";
      try {
        const int64_t id = detail::need_int(parsed, "id", where);
        std::string name = detail::need_string(parsed, "name", where);
        index.category_by_id[id] = index.categories.size();
        index.categories.emplace_back(id, std::move(name));
      } catch (const BadEntry& e) {
        fail(e.what());  // a broken category list makes every name suspect
      }
    }
    return false;  // nothing at depth 2 stays in the tree
  };
  detail::parse_json_file(path, cb);
  if (!saw_root_object) fail(path.string(), ": expected a COCO object at the top level");
  // Link annotations to images (file order).
  std::vector<CocoAnn> kept;
  for (std::size_t a = 0; a < index.anns.size(); ++a) {
    const CocoAnn& ann = index.anns[a];
    bool ok = detail::guarded(skip_bad, report, dataset, [&] {
      if (!index.image_by_id.count(ann.image_id))
        bad_entry(path.string(), ": annotation id ", ann.id, " refers to image id ", ann.image_id, ", which is not in \"images\"");
      if (!index.category_by_id.count(ann.category_id))
        bad_entry(path.string(), ": annotation id ", ann.id, " has category id ", ann.category_id,
                  ", which is not in \"categories\"");
    });
    if (ok) kept.push_back(ann);
  }
  if (kept.size() != index.anns.size()) {
    index.anns = std::move(kept);
    index.ann_by_id.clear();
    for (std::size_t a = 0; a < index.anns.size(); ++a) index.ann_by_id[index.anns[a].id] = a;
  }
  for (std::size_t a = 0; a < index.anns.size(); ++a)
    index.images[index.image_by_id.at(index.anns[a].image_id)].anns.push_back(static_cast<int64_t>(a));
  return index;
}

at::Tensor CocoIndex::ann_to_mask(const CocoAnn& ann) const {
  const CocoImage& img = images.at(image_by_id.at(ann.image_id));
  const std::string what = path.string() + ": annotation id " + std::to_string(ann.id) + " (image " + img.file_name + ")";
  return as_bad_entry([&] { return coco::ann_to_mask(json::parse(ann.segmentation), img.height, img.width, what); });
}

at::Tensor CocoIndex::refer_mask(const CocoAnn& ann, int64_t height, int64_t width) const {
  const std::string what = path.string() + ": annotation id " + std::to_string(ann.id);
  const json segm = json::parse(ann.segmentation);
  if (segm.is_array() && segm.empty()) return at::zeros({height, width}, at::kByte);
  return as_bad_entry([&] { return coco::ann_to_mask(segm, height, width, what); });
}

}  // namespace m2sa::data
