#include "m2sa/eval/evaluator.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/core/stopwatch.h"
#include "m2sa/data/collate.h"
#include "m2sa/eval/iou.h"
#include "m2sa/text/conversation.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::eval {

namespace {

constexpr const char* kSegText = "[SEG]";
constexpr const char* kImagePrefix = "<image>\n";

// The outcome of one dataset item on the rank that evaluated it.
struct Entry {
  int64_t index = -1;
  bool bad = false;         // left out with skip_bad
  std::string bad_dataset;  // for the SkipReport
  std::string bad_message;
  ImageScore score;
  std::vector<Target> targets;  // category / is_part per GT mask (empty: uncategorised scoring)
};

// A loaded item, ready to collate.
struct Item {
  int64_t index = -1;
  Sample sample;
  at::Tensor image;  // uint8 [H, W, 3]
};

// ---- exact (bit-pattern) serialisation of entries for the cross-rank gather ----

uint64_t bits_of(double v) {
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

double double_of(uint64_t u) {
  double v = 0;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

json entry_to_json(const Entry& e) {
  json j = {{"i", e.index}};
  if (e.bad) {
    j["bad"] = {e.bad_dataset, e.bad_message};
    return j;
  }
  const ImageScore& s = e.score;
  json masks = json::array();
  for (const MaskScore& m : s.masks) masks.push_back({m.pred_index, m.intersection, m.union_, bits_of(m.iou)});
  json targets = json::array();
  for (const Target& t : e.targets) targets.push_back({t.category, t.is_part});
  j["g"] = s.num_gt;
  j["p"] = s.num_pred;
  j["s"] = s.skipped;
  j["m"] = std::move(masks);
  j["x"] = s.extra_predictions;
  j["t"] = std::move(targets);
  return j;
}

Entry entry_from_json(const json& j, EvalMode mode) {
  Entry e;
  // Written by score_to_json on another rank; read as strictly as any input all the same.
  const std::string where = "evaluation shard entry";
  e.index = json_int(j.at("i"), where + ": i", 0);
  if (j.contains("bad")) {
    e.bad = true;
    e.bad_dataset = j.at("bad").at(0).get<std::string>();
    e.bad_message = j.at("bad").at(1).get<std::string>();
    return e;
  }
  ImageScore& s = e.score;
  s.mode = mode;
  s.num_gt = json_int(j.at("g"), where + ": g", 0);
  s.num_pred = json_int(j.at("p"), where + ": p", 0);
  s.skipped = j.at("s").get<bool>();
  for (const json& m : j.at("m")) {
    MaskScore ms;
    ms.pred_index = json_int(m.at(0), where + ": m[0]", -1);
    ms.intersection = json_int(m.at(1), where + ": m[1]", 0);
    ms.union_ = json_int(m.at(2), where + ": m[2]", 0);
    ms.iou = double_of(json_uint(m.at(3), where + ": m[3]"));
    s.masks.push_back(ms);
  }
  s.extra_predictions = j.at("x").get<std::vector<int64_t>>();
  for (const json& t : j.at("t")) {
    Target target;
    target.category = t.at(0).get<std::string>();
    target.is_part = t.at(1).get<bool>();
    e.targets.push_back(std::move(target));
  }
  return e;
}

std::vector<double> stats_vector(const GenerationStats& g) {
  return {static_cast<double>(g.questions),        static_cast<double>(g.seg_exact),
          static_cast<double>(g.seg_too_few),      static_cast<double>(g.seg_too_many),
          static_cast<double>(g.no_seg),           static_cast<double>(g.predicted_masks),
          static_cast<double>(g.gt_masks),         static_cast<double>(g.generated_tokens),
          static_cast<double>(g.finished_eos),     static_cast<double>(g.finished_max_new_tokens),
          static_cast<double>(g.finished_context_full)};
}

GenerationStats stats_from_vector(const std::vector<double>& v) {
  M2SA_CHECK(v.size() == 11, "generation stats: expected 11 values, got ", v.size());
  auto at = [&](size_t i) { return static_cast<int64_t>(std::llround(v[i])); };
  GenerationStats g;
  g.questions = at(0);
  g.seg_exact = at(1);
  g.seg_too_few = at(2);
  g.seg_too_many = at(3);
  g.no_seg = at(4);
  g.predicted_masks = at(5);
  g.gt_masks = at(6);
  g.generated_tokens = at(7);
  g.finished_eos = at(8);
  g.finished_max_new_tokens = at(9);
  g.finished_context_full = at(10);
  return g;
}

int64_t count_seg(const std::string& text) {
  int64_t n = 0;
  for (std::size_t p = text.find(kSegText); p != std::string::npos; p = text.find(kSegText, p + 1)) ++n;
  return n;
}

// GT masks of a sample (uint8 [N, H, W]; an empty [0, H, W] when it has none).
at::Tensor gt_masks_of(const Sample& s) {
  if (s.masks.defined()) return s.masks;
  return at::zeros({0, s.height, s.width}, at::kByte);
}

std::vector<Target> targets_of(const Sample& s) {
  const int64_t n = gt_masks_of(s).size(0);
  if (static_cast<int64_t>(s.targets.size()) == n) return s.targets;
  return {};  // no (or inconsistent) target list: scored, but not per category
}

std::string item_name(const data::EvalDataset& dataset, int64_t index, const Sample* s) {
  std::string name = dataset.name() + " item " + std::to_string(index);
  if (s != nullptr && !s->source.empty()) name += " (" + s->source + ")";
  return name;
}

class Evaluator {
 public:
  Evaluator(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer, const data::EvalDataset& dataset,
            const EvaluateOptions& options)
      : model_(model),
        tokenizer_(tokenizer),
        dataset_(dataset),
        opt_(options),
        collate_(data::CollateConfig::for_model(model->config(), /*training=*/false)) {}

  // Evaluates `indices` (this rank's shard) in batches; returns one entry per index, in order.
  std::vector<Entry> run(const std::vector<int64_t>& indices, bool log, int world_size, int64_t total) {
    std::vector<Entry> entries;
    entries.reserve(indices.size());
    const auto t0 = Clock::now();
    auto last_log = t0;
    const int64_t per_batch = opt_.images_per_batch;
    const auto n = static_cast<int64_t>(indices.size());
    if (log)
      spdlog::info("eval {} ({}): {} items{}, {} image(s) per {}", dataset_.name(), to_string(opt_.mode), total,
                   world_size > 1 ? fmt::format(" over {} ranks ({} on rank 0)", world_size, n) : std::string(),
                   per_batch, opt_.mode == EvalMode::kGenerate ? "generation batch" : "forward");
    for (int64_t b = 0; b < n; b += per_batch) {
      const int64_t e = std::min(n, b + per_batch);
      std::vector<Item> items;
      for (int64_t k = b; k < e; ++k) {
        std::optional<Item> item = load(indices[static_cast<std::size_t>(k)], entries);
        if (item) items.push_back(std::move(*item));
      }
      score_batch(items, entries);
      const double dt = seconds_since(last_log);
      if (log && (e == n || b == 0 || dt >= opt_.progress_interval_s)) {
        last_log = Clock::now();
        const double el = seconds_since(t0);
        const double rate = el > 0 ? static_cast<double>(e) / el : 0.0;
        spdlog::info("eval {}: {}/{} images{} | {:.2f} images/s | elapsed {:.0f} s | eta {:.0f} s", dataset_.name(), e,
                     n, world_size > 1 ? " (rank 0)" : "", rate, el,
                     rate > 0 ? static_cast<double>(n - e) / rate : 0.0);
      }
    }
    // Within a batch, bad items are recorded when found; put everything back in index order.
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.index < b.index; });
    return entries;
  }

  const GenerationStats& stats() const { return stats_; }

 private:
  void record_bad(int64_t index, const std::string& dataset, const std::string& message,
                  std::vector<Entry>& entries) {
    Entry bad;
    bad.index = index;
    bad.bad = true;
    bad.bad_dataset = dataset;
    bad.bad_message = message;
    entries.push_back(std::move(bad));
  }

  // dataset.get + image decoding; a failure is an error, or (skip_bad) a bad entry.
  std::optional<Item> load(int64_t index, std::vector<Entry>& entries) {
    Item item;
    item.index = index;
    bool have_sample = false;
    try {
      item.sample = dataset_.get(index);
      have_sample = true;
      M2SA_CHECK(!item.sample.image_path.empty(), "the sample has no image path");
      item.image = read_image_rgb(item.sample.image_path);
      if (item.sample.height <= 0 || item.sample.width <= 0) {
        item.sample.height = item.image.size(0);
        item.sample.width = item.image.size(1);
      }
      return item;
    } catch (const std::exception& ex) {
      const std::string msg = "evaluating " + item_name(dataset_, index, have_sample ? &item.sample : nullptr) + ": " +
                              ex.what();
      if (!opt_.skip_bad) throw Error(msg);
      record_bad(index, dataset_.name(), msg, entries);
      return std::nullopt;
    }
  }

  // Collates the items; with skip_bad, items that do not collate on their own are recorded as bad and dropped.
  std::optional<data::M2SATrainBatch> collate(std::vector<Item>& items, std::vector<Entry>& entries) {
    auto collate_all = [&](const std::vector<Item>& its) {
      std::vector<Sample> samples;
      std::vector<at::Tensor> images;
      for (const Item& it : its) {
        samples.push_back(it.sample);
        images.push_back(it.image);
      }
      return data::collate_samples(samples, images, tokenizer_, collate_);
    };
    try {
      return collate_all(items);
    } catch (const std::exception& ex) {
      if (!opt_.skip_bad) throw Error("evaluating " + dataset_.name() + ": " + ex.what());
    }
    std::vector<Item> good;
    for (Item& it : items) {
      try {
        collate_all({it});
        good.push_back(std::move(it));
      } catch (const std::exception& ex) {
        record_bad(it.index, dataset_.name(),
                   "evaluating " + item_name(dataset_, it.index, &it.sample) + ": " + ex.what(), entries);
      }
    }
    items = std::move(good);
    if (items.empty()) return std::nullopt;
    return collate_all(items);
  }

  void add_entry(const Item& it, ImageScore score, std::vector<Entry>& entries) {
    if (opt_.on_image) opt_.on_image(it.sample, score);
    Entry e;
    e.index = it.index;
    e.score = std::move(score);
    e.targets = targets_of(it.sample);
    entries.push_back(std::move(e));
  }

  // Scores a batch of loaded items and appends one entry per item (run() restores the index order).
  void score_batch(std::vector<Item>& items, std::vector<Entry>& entries) {
    // Items without questions are scored without the model (no prediction).
    std::vector<Item> asked;
    std::vector<std::pair<Item, ImageScore>> unasked;
    for (Item& it : items) {
      if (it.sample.conversations.empty()) {
        const at::Tensor gt = gt_masks_of(it.sample);
        const at::Tensor none = at::zeros({0, gt.size(1), gt.size(2)}, at::kByte);
        ImageScore s = opt_.mode == EvalMode::kGenerate ? score_generate(none, gt, it.sample.ignore)
                                                        : score_teacher_forced(none, gt, it.sample.ignore);
        unasked.emplace_back(std::move(it), std::move(s));
      } else {
        asked.push_back(std::move(it));
      }
    }
    for (auto& [it, s] : unasked) add_entry(it, std::move(s), entries);
    if (asked.empty()) return;
    std::optional<data::M2SATrainBatch> batch = collate(asked, entries);
    if (!batch) return;
    if (opt_.mode == EvalMode::kGenerate)
      score_generated(asked, *batch, entries);
    else
      score_teacher_forced_batch(asked, *batch, entries);
  }

  void score_teacher_forced_batch(const std::vector<Item>& items, data::M2SATrainBatch& batch,
                                  std::vector<Entry>& entries) {
    const m2sa_model::ForwardOutput out = with_context(
        "evaluating " + dataset_.name() + " (teacher-forced forward of " + std::to_string(items.size()) + " images, " +
            items.front().sample.source + " ...)",
        [&] { return teacher_forced_forward(*model_, batch.inputs); });
    M2SA_CHECK(out.pred_masks.size() == items.size(), "evaluator: the forward returned ", out.pred_masks.size(),
               " mask sets for ", items.size(), " images");
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      ImageScore s = with_context("scoring " + item_name(dataset_, it.index, &it.sample), [&] {
        return score_teacher_forced(threshold_logits(out.pred_masks[i]), gt_masks_of(it.sample), it.sample.ignore);
      });
      add_entry(it, std::move(s), entries);
    }
  }

  void score_generated(const std::vector<Item>& items, data::M2SATrainBatch& batch, std::vector<Entry>& entries) {
    const m2sa_model::M2SAConfig& config = model_->config();
    m2sa_model::GenerationRequest request;
    request.images = batch.inputs.images;
    // Per item: the GT mask range of each question.
    std::vector<std::vector<std::pair<int64_t, int64_t>>> ranges(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Sample& s = items[i].sample;
      int64_t offset = 0;
      for (std::size_t c = 0; c < s.conversations.size(); ++c) {
        const Dialog& d = s.conversations[c];
        // Datasets give one question per conversation in the evaluation splits; each question's GT masks are
        // one per [SEG] of its answer, or as masks_per_conversation says (an MMR entry whose counts differ).
        M2SA_CHECK(d.size() == 1, "evaluating ", item_name(dataset_, items[i].index, &s), ": conversation ", c,
                   " has ", d.size(), " rounds; generate mode answers single-question conversations only");
        const int64_t n = s.masks_per_conversation.empty() ? count_seg(d[0].assistant)
                                                           : s.masks_per_conversation.at(c);
        ranges[i].emplace_back(offset, n);
        offset += n;
        m2sa_model::GenerationPrompt p;
        p.ids = generation_prompt_ids(tokenizer_, d[0].user, config);
        p.image = static_cast<int64_t>(i);
        request.prompts.push_back(std::move(p));
      }
    }
    m2sa_model::GenerationOptions go;
    go.max_new_tokens = opt_.max_new_tokens;
    go.eos_token_id = tokenizer_.eos_id();
    go.compute_masks = true;
    const m2sa_model::GenerationOutput out = with_context(
        "evaluating " + dataset_.name() + " (generation for " + std::to_string(items.size()) + " images, " +
            items.front().sample.source + " ...)",
        [&] { return model_->generate(request, go); });
    M2SA_CHECK(out.results.size() == request.prompts.size(), "evaluator: generation returned ", out.results.size(),
               " results for ", request.prompts.size(), " prompts");
    std::size_t k = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Item& it = items[i];
      const at::Tensor gt = gt_masks_of(it.sample);
      ImageScore joined;
      joined.mode = EvalMode::kGenerate;
      int64_t pred_offset = 0;
      for (std::size_t c = 0; c < ranges[i].size(); ++c, ++k) {
        const m2sa_model::GenerationResult& r = out.results[k];
        if (opt_.on_answer) opt_.on_answer(it.sample, static_cast<int64_t>(c), r);
        // Plain variables, not a structured binding: C++17 lambdas may not capture those (clang refuses; the
        // fuzz build uses clang).
        const int64_t first = ranges[i][c].first, count = ranges[i][c].second;
        const ImageScore q = with_context("scoring " + item_name(dataset_, it.index, &it.sample) + " question " +
                                              std::to_string(c),
                                          [&] {
                                            return score_generate(threshold_logits(r.masks),
                                                                  gt.narrow(0, first, count), it.sample.ignore);
                                          });
        joined.num_gt += q.num_gt;
        joined.num_pred += q.num_pred;
        for (MaskScore m : q.masks) {
          if (m.pred_index >= 0) m.pred_index += pred_offset;
          joined.masks.push_back(m);
        }
        for (int64_t x : q.extra_predictions) joined.extra_predictions.push_back(x + pred_offset);
        pred_offset += q.num_pred;
        // Per-question [SEG] statistics.
        stats_.questions += 1;
        stats_.gt_masks += count;
        stats_.predicted_masks += q.num_pred;
        stats_.generated_tokens += static_cast<int64_t>(r.output_ids.size());
        switch (q.count()) {
          case SegCount::kExact: stats_.seg_exact += 1; break;
          case SegCount::kTooFew: stats_.seg_too_few += 1; break;
          case SegCount::kTooMany: stats_.seg_too_many += 1; break;
        }
        if (q.num_pred == 0 && count > 0) stats_.no_seg += 1;
        switch (r.finish_reason) {
          case m2sa_model::FinishReason::kEos: stats_.finished_eos += 1; break;
          case m2sa_model::FinishReason::kMaxNewTokens: stats_.finished_max_new_tokens += 1; break;
          case m2sa_model::FinishReason::kContextFull: stats_.finished_context_full += 1; break;
        }
      }
      M2SA_CHECK(joined.num_gt == gt.size(0), "evaluating ", item_name(dataset_, it.index, &it.sample), ": its questions hold ",
                 joined.num_gt, " [SEG] tokens but the sample has ", gt.size(0), " masks");
      add_entry(it, std::move(joined), entries);
    }
  }

  const m2sa_model::M2SAForCausalLM& model_;
  const Tokenizer& tokenizer_;
  const data::EvalDataset& dataset_;
  const EvaluateOptions& opt_;
  data::CollateConfig collate_;
  GenerationStats stats_;
};

}  // namespace

void GenerationStats::merge(const GenerationStats& o) {
  std::vector<double> a = stats_vector(*this);
  const std::vector<double> b = stats_vector(o);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  *this = stats_from_vector(a);
}

json GenerationStats::to_json() const {
  return {{"questions", questions},
          {"seg_count", {{"exact", seg_exact}, {"too_few", seg_too_few}, {"too_many", seg_too_many}, {"no_seg", no_seg}}},
          {"predicted_masks", predicted_masks},
          {"gt_masks", gt_masks},
          {"generated_tokens", generated_tokens},
          {"finish_reason",
           {{"eos", finished_eos}, {"max_new_tokens", finished_max_new_tokens}, {"context_full", finished_context_full}}}};
}

std::vector<int64_t> generation_prompt_ids(const Tokenizer& tokenizer, const std::string& user_turn,
                                           const m2sa_model::M2SAConfig& config) {
  std::string question = user_turn;
  const std::size_t p = question.find(kImagePrefix);
  if (p != std::string::npos) question.erase(p, std::strlen(kImagePrefix));
  const std::string prompt = render_generation_prompt(question, ConvTemplate::kLlavaV1, config.m2sa.use_mm_start_end);
  return tokenizer_image_token(tokenizer, prompt);
}

m2sa_model::ForwardOutput teacher_forced_forward(const m2sa_model::M2SAForCausalLMImpl& model,
                                                 const m2sa_model::M2SABatch& batch) {
  at::NoGradGuard no_grad;
  m2sa_model::M2SABatch inputs = batch;
  inputs.labels = at::Tensor();  // validate(): a mask-only forward, no LM loss
  m2sa_model::ForwardOptions fo;
  fo.compute_masks = true;
  return model.forward(inputs, fo);
}

SegMeter evaluate(const m2sa_model::M2SAForCausalLM& model, const Tokenizer& tokenizer,
                  const data::EvalDataset& dataset, const EvaluateOptions& options, dist::Communicator* comm) {
  M2SA_CHECK(options.images_per_batch >= 1, "evaluate: images_per_batch must be >= 1, got ", options.images_per_batch);
  M2SA_CHECK(options.mode != EvalMode::kGenerate || options.max_new_tokens >= 1,
             "evaluate: max_new_tokens must be >= 1, got ", options.max_new_tokens);
  M2SA_CHECK(options.limit >= -1, "evaluate: limit must be -1 (all) or >= 0, got ", options.limit);
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int world = comm != nullptr ? comm->world_size() : 1;
  int64_t n = dataset.size();
  if (options.limit >= 0) n = std::min(n, options.limit);
  const std::vector<int64_t> indices = dist::shard_indices(n, rank, world);

  // Evaluate this shard; an error is kept so that every rank learns about it at the gather below.
  std::vector<Entry> entries;
  GenerationStats stats;
  std::string error;
  Evaluator ev(model, tokenizer, dataset, options);
  try {
    at::NoGradGuard no_grad;
    entries = ev.run(indices, options.log_progress && rank == 0, world, n);
    stats = ev.stats();
  } catch (const std::exception& e) {
    if (world == 1) throw;
    error = e.what();
  }

  // Every rank's entries on every rank (world 1: used directly).
  std::vector<std::vector<Entry>> per_rank(static_cast<std::size_t>(world));
  std::vector<GenerationStats> rank_stats(static_cast<std::size_t>(world));
  if (world == 1) {
    per_rank[0] = std::move(entries);
    rank_stats[0] = stats;
  } else {
    json payload;
    if (error.empty()) {
      json list = json::array();
      for (const Entry& e : entries) list.push_back(entry_to_json(e));
      payload = {{"ok", true}, {"entries", std::move(list)}, {"generation", stats_vector(stats)}};
    } else {
      payload = {{"ok", false}, {"error", error}};
    }
    const std::vector<std::string> all = comm->all_gather_bytes(payload.dump());
    M2SA_CHECK(static_cast<int>(all.size()) == world, "evaluate: gathered ", all.size(), " payloads from ", world,
               " ranks");
    for (int r = 0; r < world; ++r) {
      const json j = json::parse(all[static_cast<std::size_t>(r)]);
      if (!j.at("ok").get<bool>())
        fail("evaluation failed on rank ", r, " of ", world, ": ", j.at("error").get<std::string>());
      for (const json& e : j.at("entries")) per_rank[static_cast<std::size_t>(r)].push_back(entry_from_json(e, options.mode));
      rank_stats[static_cast<std::size_t>(r)] = stats_from_vector(j.at("generation").get<std::vector<double>>());
    }
  }

  // Replay in dataset order: index i was evaluated by rank i % world (shard_indices), as its (i / world)-th entry.
  // Entries of a rank are in its index order (bad ones included), so a cursor per rank suffices.
  SegMeter meter(options.mode);
  std::vector<std::size_t> cursor(static_cast<std::size_t>(world), 0);
  for (int64_t i = 0; i < n; ++i) {
    const auto r = static_cast<std::size_t>(i % world);
    M2SA_CHECK(cursor[r] < per_rank[r].size() && per_rank[r][cursor[r]].index == i, "evaluate: rank ", r,
               " has no result for item ", i, " (internal error: shard mismatch)");
    const Entry& e = per_rank[r][cursor[r]++];
    if (e.bad) {
      if (options.skip_report != nullptr) options.skip_report->add(e.bad_dataset, e.bad_message);
      continue;
    }
    meter.add_score(e.score, e.targets);
  }
  if (options.generation_stats != nullptr)
    for (const GenerationStats& s : rank_stats) options.generation_stats->merge(s);
  return meter;
}

}  // namespace m2sa::eval
