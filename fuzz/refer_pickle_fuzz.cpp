// Fuzz target: a RefCOCO `refs(unc).p` pickle (Python 2 protocols 0-2, py2 str) through ReferApi, against a fixed
// small instances.json, then every split query and every ref's mask.
#include <fstream>

#include "fuzz_target.h"
#include "m2sa/data/refer_datasets.h"

M2SA_FUZZ_TARGET(refer_pickle) {
  namespace fs = std::filesystem;
  // refer_seg/refcoco/instances.json: two images, three annotations (polygon, RLE, empty), written once.
  static const fs::path refer_seg = [] {
    const fs::path root = m2sa::fuzz::TempDir::get() / "refer_pickle" / "refer_seg";
    fs::create_directories(root / "refcoco");
    std::ofstream(root / "refcoco" / "instances.json")
        << R"({"images": [{"id": 1, "file_name": "a.jpg", "height": 6, "width": 5},)"
           R"( {"id": 2, "file_name": "b.jpg", "height": 3, "width": 4}],)"
           R"( "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 5]]},)"
           R"( {"id": 11, "image_id": 2, "category_id": 2, "segmentation": {"size": [3, 4], "counts": [3, 2, 5, 2]}},)"
           R"( {"id": 12, "image_id": 2, "category_id": 1, "segmentation": []}],)"
           R"( "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]})";
    return root;
  }();
  m2sa::fuzz::write_temp("refer_pickle/refer_seg/refcoco/refs(unc).p", data, size);
  return m2sa::fuzz::swallow_error([&] {
    m2sa::data::SkipReport report;
    const m2sa::data::ReferApi api(refer_seg, "refcoco", "unc", /*skip_bad=*/true, &report);
    for (const char* split : {"train", "val", "test", "testA", "testB", "testAB"}) {
      for (const auto& item : m2sa::data::refer_images(api, split)) {
        for (const m2sa::data::Ref* ref : item.refs) {
          const auto& ann = api.instances().anns.at(api.instances().ann_by_id.at(ref->ann_id));
          (void)api.instances().refer_mask(ann, item.image->height, item.image->width);
        }
      }
    }
  });
}
