#include "m2sa/data/mmr_dataset.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "entry_json.h"
#include "m2sa/data/image_files.h"
#include "m2sa/io/coco_mask.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using detail::json;

int64_t MmrFile::num_questions() const {
  int64_t n = 0;
  for (const auto& e : entries) n += static_cast<int64_t>(e.questions.size());
  return n;
}

namespace {

// Fields of an entry (or of its annotation dicts) the code never reads; dropped while parsing.
bool is_dropped_key(const std::string& key) {
  return key == "annotations" || key == "raw_answers" || key == "coco_url" || key == "not_exhaustive_category_ids" ||
         key == "neg_category_ids" || key == "bbox";
}

MmrTarget parse_target(const json& ann, const std::string& where) {
  MmrTarget t;
  if (!ann.is_object()) bad_entry(where, ": expected an annotation dict, got ", detail::type_of(ann));
  const json& segm = detail::need(ann, "segmentation", where);
  auto add = [&](const json& one, const std::string& w) {
    coco::Rle rle = coco::segmentation_to_rle(one, 1, 1, w, /*check_size=*/false);
    if (one.contains("counts") && one["counts"].is_string())
      t.counts.push_back(one["counts"].get<std::string>());
    else
      t.counts.push_back(coco::counts_to_string(rle.counts));
    if (t.counts.size() == 1) {
      t.rle_h = rle.h;
      t.rle_w = rle.w;
    } else if (rle.h != t.rle_h || rle.w != t.rle_w) {
      bad_entry(w, ": RLE size ", rle.h, "x", rle.w, " differs from the first one, ", t.rle_h, "x", t.rle_w);
    }
  };
  try {
    if (segm.is_object()) {
      add(segm, where + ": segmentation");
    } else if (segm.is_array() && !segm.empty() && segm[0].is_object()) {
      for (std::size_t i = 0; i < segm.size(); ++i) add(segm[i], where + ": segmentation[" + std::to_string(i) + "]");
    } else {
      bad_entry(where, ": segmentation must be an RLE dict {size, counts} (MMR stores compressed RLE), got ",
                segm.dump().substr(0, 60));
    }
  } catch (const BadEntry&) {
    throw;
  } catch (const Error& e) {  // codec errors already carry `where`
    throw BadEntry(e.what());
  }
  if (ann.contains("category_name") && ann["category_name"].is_string()) t.category_name = ann["category_name"];
  return t;
}

// A question whose {seg} count differs from its mask count. The reference trains without it (the dataset draws
// another sample, multi_part_reason_seg_dataset.py) and scores it with zip(gt, pred) over the GT count
// (train_ds.py validate()); both go on with a warning naming the question, never as a bad entry.
enum class SegMismatch { kDropQuestion, kScoreAsReference };

MmrEntry parse_entry(const json& e, int64_t index, const fs::path& path, bool skip_bad, SkipReport* report,
                     const std::string& dataset, SegMismatch mismatch) {
  MmrEntry out;
  out.index = index;
  std::string where = path.string() + ": entry " + std::to_string(index);
  out.file_name = detail::need_string(e, "file_name", where);
  where += " (" + out.file_name + ")";
  const json& questions = detail::need_array(e, "questions", where);
  const json& text_answers = detail::need_array(e, "text_answers", where);
  const json& answers = detail::need_array(e, "answers", where);
  if (questions.size() != text_answers.size() || questions.size() != answers.size())
    bad_entry(where, ": ", questions.size(), " questions but ", text_answers.size(), " text_answers and ",
              answers.size(), " answers");
  if (questions.empty()) bad_entry(where, ": no questions");
  for (std::size_t k = 0; k < questions.size(); ++k) {
    const std::string wk = where + ": question " + std::to_string(k);
    detail::guarded(skip_bad, report, dataset, [&] {
      MmrQuestion q;
      if (!questions[k].is_string()) bad_entry(wk, ": questions[", k, "] must be a string");
      if (!text_answers[k].is_string()) bad_entry(wk, ": text_answers[", k, "] must be a string");
      if (!answers[k].is_array()) bad_entry(wk, ": answers[", k, "] must be a list of annotation dicts");
      q.question = questions[k].get<std::string>();
      q.text_answer = text_answers[k].get<std::string>();
      if (detail::py_strip(q.question).empty()) bad_entry(wk, ": empty question");
      const std::size_t n_seg = count_of(q.text_answer, "{seg}");
      if (n_seg == 0 && answers[k].empty()) bad_entry(wk, ": text_answers[", k, "] has no {seg} and answers[", k,
                                                      "] no mask");
      if (n_seg != answers[k].size()) {
        const bool drop = mismatch == SegMismatch::kDropQuestion;
        spdlog::warn("{}: text_answers[{}] has {} {{seg}} but answers[{}] has {} masks (\"{}\"): {}", wk, k, n_seg, k,
                     answers[k].size(), q.text_answer.substr(0, 120),
                     drop ? "left out of training, as the reference's dataset does"
                          : "scored as the reference scores it (zip of GT and predicted masks, the GT count as the "
                            "denominator)");
        if (drop) return;
      }
      try {
        py_format(q.text_answer, {{"seg", kSegToken}}, wk + ": text_answers[" + std::to_string(k) + "]");
      } catch (const BadEntry&) {
        throw;
      } catch (const Error& err) {
        throw BadEntry(err.what());
      }
      for (std::size_t j = 0; j < answers[k].size(); ++j)
        q.targets.push_back(parse_target(answers[k][j], wk + ": answers[" + std::to_string(k) + "][" + std::to_string(j) + "]"));
      out.questions.push_back(std::move(q));
    });
  }
  if (out.questions.empty()) bad_entry(where, ": no usable question left");
  return out;
}

Sample make_sample(const fs::path& image_root, const MmrEntry& entry, const std::string& dataset,
                   const std::string& json_path, const std::vector<std::size_t>& question_ids, bool eval,
                   const QuestionLists* lists, Rng* rng) {
  Sample s;
  s.dataset = dataset;
  s.source = dataset + ":" + std::to_string(entry.index);
  const std::string where = json_path + ": entry " + std::to_string(entry.index) + " (" + entry.file_name + ")";
  s.image_path = (image_root / entry.file_name).string();
  const ImageSize size = probe_image(s.image_path, where);
  s.height = size.height;
  s.width = size.width;
  std::vector<const MmrTarget*> targets;
  bool mismatched = false;
  for (std::size_t k : question_ids) {
    const MmrQuestion& q = entry.questions[k];
    Turn turn;
    if (eval) {
      turn.user = std::string(kImageToken) + "\n " + detail::py_strip(q.question) + " Please output segmentation mask.";
      turn.assistant = py_format(q.text_answer, {{"seg", kSegToken}}) + ".";
    } else {
      turn.user = py_format(choice(*rng, lists->long_questions), {{"sent", q.question}});
      turn.assistant = py_format(q.text_answer, {{"seg", kSegToken}});
    }
    s.conversations.push_back({turn});
    s.masks_per_conversation.push_back(static_cast<int64_t>(q.targets.size()));
    if (count_of(q.text_answer, "{seg}") != q.targets.size()) mismatched = true;
    for (const MmrTarget& t : q.targets) {
      targets.push_back(&t);
      Target info;
      info.category = t.category_name;
      info.phrase = t.category_name;
      info.is_part = t.category_name.find(':') != std::string::npos;
      s.targets.push_back(std::move(info));
    }
  }
  s.masks = decode_mmr_targets(targets, s.height, s.width, where);
  if (!mismatched) s.masks_per_conversation.clear();
  return s;
}

MmrFile read_file(const fs::path& path, bool skip_bad, SkipReport* report, const std::string& dataset,
                  SegMismatch mismatch) {
  MmrFile file;
  file.path = path;
  int64_t index = 0;
  bool root_checked = false;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (!root_checked && depth == 0 && event == json::parse_event_t::object_start)
      fail(path.string(), ": expected a list of per-image entries at the top level, got an object");
    if (depth == 0 && event == json::parse_event_t::array_start) root_checked = true;
    if (event == json::parse_event_t::key && depth >= 2 && parsed.is_string() && is_dropped_key(parsed.get_ref<const std::string&>()))
      return false;
    if (depth == 1 && (event == json::parse_event_t::object_end || event == json::parse_event_t::value ||
                       event == json::parse_event_t::array_end)) {
      const int64_t i = index++;
      detail::guarded(skip_bad, report, dataset, [&] {
        if (!parsed.is_object())
          bad_entry(path.string(), ": entry ", i, ": expected an object, got ", detail::type_of(parsed));
        file.entries.push_back(parse_entry(parsed, i, path, skip_bad, report, dataset, mismatch));
      });
      return false;  // converted: do not keep it in the tree
    }
    return true;
  };
  json root = detail::parse_json_file(path, cb);
  if (!root.is_array()) fail(path.string(), ": expected a list of per-image entries at the top level");
  return file;
}

}  // namespace

at::Tensor decode_mmr_targets(const std::vector<const MmrTarget*>& targets, int64_t height, int64_t width,
                              const std::string& context) {
  at::Tensor masks = at::zeros({static_cast<int64_t>(targets.size()), height, width}, at::kByte);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const MmrTarget& t = *targets[i];
    const std::string what = context + ": mask " + std::to_string(i) + " (" + t.category_name + ")";
    if (t.rle_h != height || t.rle_w != width)
      bad_entry(what, ": RLE size ", t.rle_h, "x", t.rle_w, " (h x w) disagrees with the image, ", height, "x", width);
    uint8_t* dst = masks[static_cast<int64_t>(i)].data_ptr<uint8_t>();
    for (const std::string& c : t.counts) {
      try {
        coco::decode_into(coco::Rle{t.rle_h, t.rle_w, coco::counts_from_string(c, what)}, dst, /*accumulate=*/true, what);
      } catch (const BadEntry&) {
        throw;
      } catch (const Error& e) {
        throw BadEntry(e.what());
      }
    }
  }
  return masks;
}

MmrFile read_mmr_json(const fs::path& path, bool skip_bad, SkipReport* report) {
  return read_file(path, skip_bad, report, path.stem().string(), SegMismatch::kScoreAsReference);
}

MmrTrainDataset::MmrTrainDataset(const fs::path& dataset_dir, MmrOptions options, QuestionLists lists,
                                 SkipReport* report)
    : image_root_(dataset_dir / "refer_seg" / "images" / "mscoco" / "images"),
      options_(std::move(options)),
      lists_(std::move(lists)) {
  M2SA_CHECK(options_.num_questions_per_sample >= 1, "MMR: num_classes_per_sample must be >= 1");
  const fs::path path = dataset_dir / "MMR" / options_.json_name;
  name_ = path.stem().string();
  file_ = read_file(path, options_.skip_bad, report, name_, SegMismatch::kDropQuestion);
  if (file_.entries.empty()) fail(path.string(), ": no usable entries");
}

std::optional<Sample> MmrTrainDataset::get(int64_t index, Rng& rng) const {
  const MmrEntry& entry = file_.entries.at(static_cast<std::size_t>(index));
  const int64_t q = static_cast<int64_t>(entry.questions.size());
  std::vector<std::size_t> ids;
  if (q >= options_.num_questions_per_sample) {
    for (int64_t i : sample_without_replacement(rng, q, options_.num_questions_per_sample)) ids.push_back(static_cast<std::size_t>(i));
  } else {
    for (int64_t i = 0; i < q; ++i) ids.push_back(static_cast<std::size_t>(i));
  }
  return make_sample(image_root_, entry, name_, file_.path.string(), ids, /*eval=*/false, &lists_, &rng);
}

MmrEvalDataset::MmrEvalDataset(const fs::path& dataset_dir, const std::string& json_name, bool skip_bad,
                               SkipReport* report)
    : image_root_(dataset_dir / "refer_seg" / "images" / "mscoco" / "images") {
  const fs::path path = dataset_dir / "MMR" / json_name;
  name_ = path.stem().string();
  file_ = read_file(path, skip_bad, report, name_, SegMismatch::kScoreAsReference);
}

Sample MmrEvalDataset::get(int64_t index) const {
  M2SA_CHECK(index >= 0 && index < size(), name_, ": item ", index, " out of range (", size(), " items)");
  const MmrEntry& entry = file_.entries[static_cast<std::size_t>(index)];
  std::vector<std::size_t> ids;
  for (std::size_t i = 0; i < entry.questions.size(); ++i) ids.push_back(i);
  return make_sample(image_root_, entry, name_, file_.path.string(), ids, /*eval=*/true, nullptr, nullptr);
}

}  // namespace m2sa::data
