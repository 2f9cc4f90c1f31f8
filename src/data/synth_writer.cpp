// Writes the synthetic dataset in the real formats and layout (see m2sa/data/synth.h).
#include <ATen/ATen.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "m2sa/core/error.h"
#include "m2sa/data/synth.h"
#include "m2sa/data/templates.h"
#include "m2sa/io/coco_mask.h"
#include "synth_catalog.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path temp_path(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()));
}

void write_bytes_renamed(const fs::path& path, const std::vector<uchar>& bytes) {
  fs::create_directories(path.parent_path());
  const fs::path tmp = temp_path(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp.string(), ": cannot create file");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail(tmp.string(), ": write failed");
  }
  fs::rename(tmp, path);
}

// A JSON list written element by element to a temp file, renamed into place by finish().
class JsonArrayStream {
 public:
  explicit JsonArrayStream(fs::path path) : path_(std::move(path)), tmp_(temp_path(path_)) {
    fs::create_directories(path_.parent_path());
    out_.open(tmp_, std::ios::binary | std::ios::trunc);
    if (!out_) fail(tmp_.string(), ": cannot create file");
    out_ << "[";
  }
  ~JsonArrayStream() {
    if (!finished_) {
      out_.close();
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  void add(const json& v) {
    out_ << (count_ ? ",\n" : "\n") << v.dump();
    ++count_;
  }
  // Raw JSON text of one element (already serialised).
  void add_raw(const std::string& text) {
    out_ << (count_ ? ",\n" : "\n") << text;
    ++count_;
  }
  int64_t count() const { return count_; }
  void finish() {
    out_ << "\n]\n";
    out_.close();
    if (!out_) fail(tmp_.string(), ": write failed");
    fs::rename(tmp_, path_);
    finished_ = true;
  }
  const fs::path& path() const { return path_; }
  const fs::path& temp() const { return tmp_; }

 private:
  fs::path path_, tmp_;
  std::ofstream out_;
  int64_t count_ = 0;
  bool finished_ = false;
};

struct CategoryIds {
  std::map<std::string, int> ids;  // "house" / "house:door" -> id
  json list = json::array();
};

CategoryIds category_ids() {
  CategoryIds c;
  int next = 1;
  for (const auto& cat : detail::catalog()) {
    c.ids[cat.name] = next;
    c.list.push_back({{"id", next}, {"name", cat.name}, {"supercategory", cat.name}});
    ++next;
    for (const auto& p : cat.parts) {
      const std::string name = cat.name + ":" + p.name;
      c.ids[name] = next;
      c.list.push_back({{"id", next}, {"name", name}, {"supercategory", cat.name}});
      ++next;
    }
  }
  return c;
}

json bbox_json(const coco::Rle& rle) {
  const auto b = coco::bbox(rle);
  return {b[0], b[1], b[2], b[3]};
}

const char* kSplitFiles[5] = {"MMR_train.json", "MMR_val.json", "MMR_test_obj_only.json", "MMR_test_part_only.json",
                              "MMR_test_mixed.json"};

std::string image_name(int64_t image_id) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%012lld.jpg", static_cast<long long>(image_id));
  return buf;
}

// LLaVA-style conversation about the scene (counting, colours, position, description).
json vqa_conversation(const SynthScene& s, int64_t image_id, Rng& rng) {
  const auto& cats = detail::catalog();
  std::vector<std::pair<std::string, std::string>> qa;
  std::map<std::string, int> count;
  for (const auto& o : s.objects) ++count[o.category];
  {
    const std::string c = s.objects[uniform_int(rng, s.objects.size())].category;
    const int n = count[c];
    std::string plural;
    for (const auto& spec : cats)
      if (spec.name == c) plural = spec.plural_name;
    static const char* words[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight"};
    qa.emplace_back("How many " + plural + " are there in the image?",
                    n == 1 ? "There is one " + c + " in the image." : std::string("There are ") + words[n] + " " + plural + " in the image.");
  }
  {
    const SynthObject& o = s.objects[uniform_int(rng, s.objects.size())];
    const std::size_t p = uniform_int(rng, o.parts.size());
    for (const auto& spec : cats)
      if (spec.name == o.category) {
        const auto& ps = spec.parts[p];
        qa.emplace_back(std::string("What color ") + (ps.plural ? "are " : "is ") + o.reference + "'s " + ps.name + "?",
                        std::string(ps.plural ? "They are " : "It is ") + ps.color_name + ".");
      }
  }
  {
    static const char* number[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight"};
    std::vector<std::string> names;
    std::set<std::string> done;
    for (const auto& o : s.objects) {
      if (!done.insert(o.category).second) continue;
      const int n = count[o.category];
      std::string plural;
      for (const auto& spec : cats)
        if (spec.name == o.category) plural = spec.plural_name;
      names.push_back(n == 1 ? "a " + o.category : std::string(number[n]) + " " + plural);
    }
    qa.emplace_back("Describe the scene briefly.",
                    "The picture shows " + join_and(names) + " standing on the ground under a pale sky.");
  }
  shuffle(rng, qa);
  qa.resize(2 + uniform_int(rng, 2));
  json conv = json::array();
  for (std::size_t i = 0; i < qa.size(); ++i) {
    std::string human = qa[i].first;
    if (i == 0) human = coin(rng) ? "<image>\n" + human : human + "\n<image>";
    conv.push_back({{"from", "human"}, {"value", human}});
    conv.push_back({{"from", "gpt"}, {"value", qa[i].second}});
  }
  std::string id = image_name(image_id);
  id = id.substr(0, id.size() - 4);
  return {{"id", id}, {"image", image_name(image_id)}, {"conversations", conv}};
}

}  // namespace

uint64_t synth_scene_seed(const SynthOptions& o, int split, int index) {
  return seed_of({o.seed, 0x73796E7468ull, static_cast<uint64_t>(split), static_cast<uint64_t>(index)});
}

constexpr int kInferExamplesPerSplit = 2;

SynthSummary write_synthetic_dataset(const fs::path& out, const SynthOptions& options) {
  options.validate();
  fs::create_directories(out);
  const CategoryIds cats = category_ids();
  const fs::path image_root = out / "refer_seg" / "images" / "mscoco" / "images";
  SynthSummary summary;

  const fs::path paco_path = out / "vlpart" / "paco" / "annotations" / "paco_lvis_v1_train.json";
  JsonArrayStream paco_images(paco_path.parent_path() / ".paco_images.part");
  JsonArrayStream paco_anns(paco_path.parent_path() / ".paco_annotations.part");
  JsonArrayStream vqa(out / "llava_dataset" / "llava_instruct_150k.json");
  int64_t paco_ann_id = 0;

  const int counts[5] = {options.train_images, options.val_images, options.test_images, options.test_images,
                         options.test_images};
  const std::vector<std::vector<SynthKind>> kinds = {{SynthKind::kObject, SynthKind::kPart, SynthKind::kMixed},
                                                     {SynthKind::kObject, SynthKind::kPart, SynthKind::kMixed},
                                                     {SynthKind::kObject},
                                                     {SynthKind::kPart},
                                                     {SynthKind::kMixed}};
  const int q_lo[5] = {3, 3, 2, 2, 2}, q_hi[5] = {5, 4, 3, 3, 3};
  // Questions to try `m2sa infer --batch` on: the first question of the first test images of every test split
  // (held out from training), in the JSONL format of infer/batch_input.h, image paths relative to `out`.
  const char* kTestNames[5] = {"", "", "test_obj", "test_part", "test_mixed"};
  std::string examples;
  for (int split = 0; split < 5; ++split) {
    JsonArrayStream mmr(out / "MMR" / kSplitFiles[split]);
    for (int i = 0; i < counts[split]; ++i) {
      const SynthScene scene = render_scene(synth_scene_seed(options, split, i), options);
      Rng rng(seed_of({synth_scene_seed(options, split, i), 0x71756573ull}));
      const int nq = q_lo[split] + static_cast<int>(uniform_int(rng, static_cast<uint64_t>(q_hi[split] - q_lo[split] + 1)));
      const std::vector<SynthQuestion> questions = make_questions(scene, kinds[static_cast<std::size_t>(split)], nq, rng);
      if (questions.empty()) continue;
      const int64_t image_id = split == 0 ? i + 1 : int64_t{split} * 1000000 + i + 1;
      const std::string file_name = std::string(split == 0 ? "train2017/" : "val2017/") + image_name(image_id);

      // Image: JPEG once, written where MMR (and, for train, PACO / LLaVA) read it.
      cv::Mat rgb(static_cast<int>(scene.height), static_cast<int>(scene.width), CV_8UC3, scene.image.data_ptr<uint8_t>());
      cv::Mat bgr;
      cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
      std::vector<uchar> jpeg;
      if (!cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, options.jpeg_quality}))
        fail("synth: cannot encode image ", file_name);
      write_bytes_renamed(image_root / file_name, jpeg);
      if (split == 0) write_bytes_renamed(out / "coco" / file_name, jpeg);

      // Annotations of every visible object and part (MMR "annotations", PACO annotations).
      auto ann_of = [&](int o, int p) {
        const SynthObject& obj = scene.objects[static_cast<std::size_t>(o)];
        const at::Tensor& m = p < 0 ? obj.mask : obj.parts[static_cast<std::size_t>(p)].mask;
        const std::string cat = p < 0 ? obj.category : obj.category + ":" + obj.parts[static_cast<std::size_t>(p)].name;
        const coco::Rle rle = coco::encode(m);
        const int cid = cats.ids.at(cat);
        return json{{"bbox", bbox_json(rle)},
                    {"segmentation", coco::rle_to_json(rle)},
                    {"image_id", image_id},
                    {"category_name", cat},
                    {"category_id", cid},
                    {"sorted_category_id", cid - 1}};
      };
      json all = json::array();
      for (std::size_t o = 0; o < scene.objects.size(); ++o) {
        all.push_back(ann_of(static_cast<int>(o), -1));
        for (std::size_t p = 0; p < scene.objects[o].parts.size(); ++p)
          if (scene.objects[o].parts[p].visible_area > 0) all.push_back(ann_of(static_cast<int>(o), static_cast<int>(p)));
      }
      json entry = {{"file_name", file_name},
                    {"height", scene.height},
                    {"width", scene.width},
                    {"image_id", image_id},
                    {"not_exhaustive_category_ids", json::array()},
                    {"neg_category_ids", json::array()},
                    {"coco_url", ""},
                    {"annotations", all},
                    {"questions", json::array()},
                    {"answers", json::array()},
                    {"text_answers", json::array()},
                    {"raw_answers", json::array()}};
      for (const SynthQuestion& q : questions) {
        json answer = json::array();
        for (const SynthTarget& t : q.targets) answer.push_back(ann_of(t.object, t.part));
        std::string raw = q.text_answer;
        for (std::size_t p = raw.find(" {seg}"); p != std::string::npos; p = raw.find(" {seg}")) raw.erase(p, 6);
        entry["questions"].push_back(q.question);
        entry["answers"].push_back(answer);
        entry["text_answers"].push_back(q.text_answer);
        entry["raw_answers"].push_back(raw);
        summary.masks += static_cast<int64_t>(q.targets.size());
      }
      if (split >= 2 && i < kInferExamplesPerSplit)
        examples += json{{"id", std::string(kTestNames[split]) + "_" + std::to_string(i)},
                         {"image", fs::relative(image_root / file_name, out).generic_string()},
                         {"question", questions.front().question}}
                        .dump() + "\n";
      summary.questions += static_cast<int64_t>(questions.size());
      ++summary.images;
      mmr.add(entry);

      if (split == 0) {
        paco_images.add({{"id", image_id}, {"file_name", file_name}, {"height", scene.height}, {"width", scene.width}});
        for (const json& a : all) {
          ++paco_ann_id;
          json seg = a["segmentation"];
          if (paco_ann_id % 2 == 0) {  // every other annotation as uncompressed RLE (both forms occur in COCO files)
            const auto counts_list = coco::counts_from_string(seg["counts"].get<std::string>());
            seg["counts"] = counts_list;
          }
          const coco::Rle rle{scene.height, scene.width, coco::counts_from_string(a["segmentation"]["counts"].get<std::string>())};
          paco_anns.add({{"id", paco_ann_id},
                         {"image_id", image_id},
                         {"category_id", a["category_id"]},
                         {"segmentation", seg},
                         {"area", coco::area(rle)},
                         {"bbox", a["bbox"]},
                         {"iscrowd", 0}});
        }
        summary.paco_annotations = paco_ann_id;
        Rng vrng(seed_of({synth_scene_seed(options, split, i), 0x767161ull}));
        vqa.add(vqa_conversation(scene, image_id, vrng));
        ++summary.vqa_conversations;
      }
    }
    mmr.finish();
    summary.files.push_back(mmr.path());
  }
  vqa.finish();
  summary.files.push_back(vqa.path());

  // PACO: {"images": [...], "annotations": [...], "categories": [...]} assembled from the two streams.
  paco_images.finish();
  paco_anns.finish();
  {
    const fs::path tmp = temp_path(paco_path);
    std::ofstream outf(tmp, std::ios::binary | std::ios::trunc);
    if (!outf) fail(tmp.string(), ": cannot create file");
    auto copy = [&](const fs::path& part) {
      std::ifstream in(part, std::ios::binary);
      outf << in.rdbuf();
    };
    outf << "{\"images\": ";
    copy(paco_images.path());
    outf << ", \"annotations\": ";
    copy(paco_anns.path());
    outf << ", \"categories\": " << cats.list.dump() << "}\n";
    outf.close();
    if (!outf) fail(tmp.string(), ": write failed");
    fs::rename(tmp, paco_path);
    fs::remove(paco_images.path());
    fs::remove(paco_anns.path());
  }
  summary.files.push_back(paco_path);

  write_bytes_renamed(out / "infer_examples.jsonl", std::vector<uchar>(examples.begin(), examples.end()));
  summary.files.push_back(out / "infer_examples.jsonl");

  json info = {{"generator", "m2sa synth"},
               {"version", 1},
               {"options",
                {{"seed", options.seed},
                 {"train_images", options.train_images},
                 {"val_images", options.val_images},
                 {"test_images", options.test_images},
                 {"min_size", options.min_size},
                 {"max_size", options.max_size},
                 {"max_objects", options.max_objects},
                 {"jpeg_quality", options.jpeg_quality}}},
               {"categories", cats.list},
               {"counts",
                {{"images", summary.images},
                 {"questions", summary.questions},
                 {"masks", summary.masks},
                 {"paco_annotations", summary.paco_annotations},
                 {"vqa_conversations", summary.vqa_conversations}}}};
  {
    const std::string text = info.dump(2) + "\n";
    write_bytes_renamed(out / "synth_info.json", std::vector<uchar>(text.begin(), text.end()));
  }
  summary.files.push_back(out / "synth_info.json");
  return summary;
}

}  // namespace m2sa::data
