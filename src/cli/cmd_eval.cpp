// m2sa eval [--config TRAIN_CONFIG] [--model DIR | --peft FILE | --sam PTH --llava DIR] [--clip DIR]
//           [--model-config C] [--trainable FILE] [--tokenizer PATH] [--dataset-dir DIR] --split S [--split S ...]
//           [--mode teacher-forced|generate] [--batch N] [--limit N] [--max-new-tokens N] [--precision auto|fp32|bf16]
//           [--device auto|cpu|cuda|cuda:N] [--nproc N] [--out FILE.json|DIR] [--skip-bad] [--top-k K]
//           [--tensorboard DIR [--tb-step N] [--previews N]]
// Scores a model on one or more evaluation splits (eval/evaluator.h; docs/EVAL.md) with one model load: a table per
// split on stdout and a JSON report per split (eval/report.h), written atomically. Distributed like `m2sa train`:
// `--nproc N` starts N local ranks through the built-in launcher, a torchrun-style environment is used as it is;
// every item is scored exactly once (no sampler padding) and only rank 0 prints and writes.
#include <ATen/Context.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "command.h"
#include "local_ranks.h"
#include "model_source_options.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/core/runtime.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/eval/preview.h"
#include "m2sa/eval/report.h"
#include "m2sa/io/tensorboard_events.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/dist/launcher.h"
#include "m2sa/train/m2sa_training.h"

namespace m2sa::cli {
namespace {
namespace fs = std::filesystem;

struct EvalArgs {
  std::string config;  // training config: defaults for --model and --dataset-dir (and --precision / --device)
  ModelSourceArgs model;  // --model-config is its config (--config is the training config)
  std::string dataset_dir, json_name;
  std::vector<std::string> splits;
  std::string mode = "teacher-forced";
  int64_t batch = 4;
  int64_t limit = -1;
  int64_t max_new_tokens = 0;  // not given (0): the reference's value for the weights (2048 M2SA, 512 LISA layout)
  const CLI::Option* max_new_tokens_option = nullptr;
  std::string precision = "auto";
  std::string device = "auto";
  int nproc = 1;
  std::string out;
  bool skip_bad = false;
  int64_t top_k = 10;
  double timeout_s = 3600.0;
  std::string tensorboard;  // event-file folder for the scores and previews ("" = none)
  int64_t tb_step = 0;
  int64_t previews = 4;
};

// Everything the ranks need, resolved and checked once.
struct Plan {
  infer::ModelSource source;
  std::optional<nn::AttentionMode> attention;
  std::string model_name;  // for the report
  fs::path dataset_dir;
  std::vector<std::string> splits;
  std::vector<fs::path> outputs;  // one per split
  eval::EvalMode mode = eval::EvalMode::kTeacherForced;
  std::string precision = "auto";  // auto | fp32 | bf16
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
};

bool is_cuda_device_name(const std::string& d) {
  if (d == "cuda") return true;
  if (d.rfind("cuda:", 0) != 0 || d.size() == 5) return false;
  return std::all_of(d.begin() + 5, d.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "test/obj" -> "test_obj", "refcoco|unc|val" -> "refcoco_unc_val": a file-name-safe form of a split name.
std::string split_file_stem(const std::string& split) {
  std::string s = split;
  for (char& c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
          c == '+'))
      c = '_';
  return s;
}

// --split may be repeated and each value may hold several comma-separated names.
std::vector<std::string> parse_splits(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& v : values) {
    std::size_t p = 0;
    while (p <= v.size()) {
      std::size_t q = v.find(',', p);
      if (q == std::string::npos) q = v.size();
      std::string name = v.substr(p, q - p);
      const auto b = name.find_first_not_of(" \t"), e = name.find_last_not_of(" \t");
      name = b == std::string::npos ? "" : name.substr(b, e - b + 1);
      M2SA_CHECK(!name.empty(), "--split \"", v, "\": empty split name; accepted:\n", data::eval_split_help());
      M2SA_CHECK(seen.insert(name).second, "--split: \"", name, "\" is given more than once");
      out.push_back(name);
      p = q + 1;
    }
  }
  M2SA_CHECK(!out.empty(), "--split: required (e.g. --split val or --split test/obj,test/part); accepted:\n",
             data::eval_split_help());
  return out;
}

Plan make_plan(const EvalArgs& a) {
  M2SA_CHECK(a.nproc >= 1, "--nproc: must be >= 1, got ", a.nproc);
  M2SA_CHECK(a.batch >= 1, "--batch: images per forward must be >= 1, got ", a.batch);
  M2SA_CHECK(a.limit >= -1, "--limit: must be -1 (all items) or >= 0, got ", a.limit);
  M2SA_CHECK(a.max_new_tokens >= 1 || !a.max_new_tokens_option || a.max_new_tokens_option->count() == 0,
             "--max-new-tokens: must be >= 1, got ", a.max_new_tokens);
  M2SA_CHECK(a.top_k >= 0, "--top-k: must be >= 0, got ", a.top_k);
  M2SA_CHECK(a.timeout_s > 0, "--timeout-s: must be positive, got ", a.timeout_s);
  Plan p;
  p.mode = with_context("--mode", [&] { return eval::parse_eval_mode(a.mode); });
  p.precision = a.precision;
  p.device = a.device;
  M2SA_CHECK(p.precision == "auto" || p.precision == "fp32" || p.precision == "bf16", "--precision: expected auto, "
             "fp32 or bf16, got \"", p.precision, "\"");
  M2SA_CHECK(p.device == "auto" || p.device == "cpu" || is_cuda_device_name(p.device),
             "--device: expected auto, cpu, cuda or cuda:N, got \"", p.device, "\"");
  p.splits = parse_splits(a.splits);

  p.source = a.model.source();
  p.attention = a.model.attention_mode();
  p.dataset_dir = a.dataset_dir;
  const bool has_model = !a.model.model.empty() || !a.model.peft.empty() || !a.model.sam.empty() ||
                         !a.model.llava.empty();
  bool model_from_config = false;

  if (!a.config.empty()) {
    M2SA_CHECK(fs::is_regular_file(a.config), "--config ", a.config, ": no such file (expected a training config "
               "JSON such as configs/train/tiny-synth.json)");
    const train::TrainingRunConfig tc =
        with_context("--config " + a.config, [&] { return train::TrainingRunConfig::read(a.config); });
    if (!has_model) {
      p.source.model_dir = tc.run_dir / "model";
      model_from_config = true;
    }
    if (p.dataset_dir.empty())
      p.dataset_dir = tc.validation.dataset_dir.empty() ? tc.data.dataset_dir : tc.validation.dataset_dir;
    if (p.precision == "auto") p.precision = tc.precision;
    if (p.device == "auto") p.device = tc.device;
  }
  M2SA_CHECK(!p.source.model_dir.empty() || !p.source.peft.empty() || !p.source.sam.empty() ||
                 !p.source.llava_dir.empty(),
             "no model: pass --model DIR (a merged model folder, e.g. from m2sa export or a training run's "
             "<run_dir>/model), --peft FILE --model-config C, or --sam PTH --llava DIR --model-config C; or --config "
             "TRAIN_CONFIG to evaluate that run's <run_dir>/model");
  if (!p.source.model_dir.empty())
    M2SA_CHECK(fs::is_directory(p.source.model_dir), "--model ", p.source.model_dir.string(),
               model_from_config ? " (<run_dir>/model of --config " + a.config + ")" : std::string(),
               ": no such directory",
               model_from_config ? "; the training run has not exported its model yet (export \"best\" or \"last\" "
                                   "at the end of training), or pass --model"
                                 : std::string(" (expected a merged model folder with config.json)"));
  M2SA_CHECK(!p.dataset_dir.empty(), "no dataset: pass --dataset-dir DIR (the folder holding MMR/, refer_seg/, "
             "reason_seg/) or --config TRAIN_CONFIG to use its data.dataset_dir");
  M2SA_CHECK(fs::is_directory(p.dataset_dir), "--dataset-dir ", p.dataset_dir.string(),
             !a.config.empty() && a.dataset_dir.empty() ? " (from --config " + a.config + ")" : std::string(),
             ": no such directory");
  p.model_name = !p.source.model_dir.empty() ? p.source.model_dir.string()
                 : !p.source.peft.empty()     ? p.source.peft.string()
                                              : p.source.sam.string() + " + " + p.source.llava_dir.string();

  // Reports: <name>_<mode>.json with name = the split with every character outside [A-Za-z0-9.+-] as '_'.
  const std::string mode_name = eval::to_string(p.mode);
  auto file_name = [&](const std::string& split) { return split_file_stem(split) + "_" + mode_name + ".json"; };
  const fs::path out = a.out;
  const bool out_is_dir = !a.out.empty() && (p.splits.size() > 1 || fs::is_directory(out) || a.out.back() == '/');
  if (p.splits.size() > 1 && !a.out.empty())
    M2SA_CHECK(!fs::exists(out) || fs::is_directory(out), "--out ", a.out, ": with several splits --out is a "
               "directory (one <split>_<mode>.json each), but it is an existing file");
  for (const std::string& split : p.splits) {
    if (a.out.empty()) {
      M2SA_CHECK(!p.source.model_dir.empty(), "--out: required when the model is not a folder (--peft / --sam); "
                 "the default is <model>/eval/<split>_<mode>.json");
      p.outputs.push_back(p.source.model_dir / "eval" / file_name(split));
    } else {
      p.outputs.push_back(out_is_dir ? out / file_name(split) : out);
    }
  }
  return p;
}

c10::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "auto")
    return at::hasCUDA() ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank)) : c10::Device(c10::kCPU);
  M2SA_CHECK(at::hasCUDA(), "--device ", name, ": this LibTorch build (or this machine) has no CUDA; use cpu");
  if (name == "cuda") return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(name.substr(5))));
}

// The command line of one rank: the resolved plan, without --nproc.
std::vector<std::string> rank_args(const EvalArgs& a, const Plan& p) {
  std::vector<std::string> args = {"eval"};
  auto opt = [&](const char* flag, const std::string& v) {
    if (!v.empty()) args.insert(args.end(), {flag, v});
  };
  opt("--config", a.config);  // for the report (the model and dataset below are already resolved from it)
  opt("--model", p.source.model_dir.string());
  opt("--peft", p.source.peft.string());
  opt("--sam", p.source.sam.string());
  opt("--llava", p.source.llava_dir.string());
  opt("--clip", p.source.clip_dir.string());
  opt("--model-config", p.source.config.string());
  opt("--trainable", p.source.trainable.string());
  opt("--tokenizer", p.source.tokenizer.string());
  opt("--dataset-dir", p.dataset_dir.string());
  opt("--json-name", a.json_name);
  for (const std::string& s : p.splits) opt("--split", s);
  opt("--mode", eval::to_string(p.mode));
  opt("--batch", std::to_string(a.batch));
  opt("--limit", std::to_string(a.limit));
  if (a.max_new_tokens > 0) opt("--max-new-tokens", std::to_string(a.max_new_tokens));
  opt("--precision", p.precision);
  opt("--device", p.device);
  opt("--top-k", std::to_string(a.top_k));
  opt("--timeout-s", std::to_string(a.timeout_s));
  if (a.skip_bad) args.push_back("--skip-bad");
  opt("--out", a.out);  // every rank resolves it the same way (only rank 0 writes)
  return args;
}

// The report folders exist and are writable, checked before the (long) evaluation rather than after it.
void check_outputs(const Plan& p) {
  for (const fs::path& file : p.outputs) {
    const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    std::error_code ec;
    fs::create_directories(dir, ec);
    M2SA_CHECK(fs::is_directory(dir), "report ", file.string(), ": cannot create the folder ", dir.string(),
               ec ? ": " + ec.message() : std::string(), " (choose another place with --out)");
    M2SA_CHECK(::access(dir.c_str(), W_OK) == 0, "report ", file.string(), ": the folder ", dir.string(),
               " is not writable (choose another place with --out)");
    M2SA_CHECK(!fs::is_directory(file), "report ", file.string(), ": is a directory");
  }
}

std::unique_ptr<data::EvalDataset> open_split(const Plan& p, const EvalArgs& a, const std::string& split,
                                              data::SkipReport* report) {
  data::EvalOptions eo;
  eo.skip_bad = a.skip_bad;
  eo.report = report;
  eo.json_name = a.json_name;
  return with_context("evaluation split \"" + split + "\" in " + p.dataset_dir.string(),
                      [&] { return data::make_eval_dataset(split, p.dataset_dir, eo); });
}

int run_eval(const EvalArgs& a) {
  const Plan plan = make_plan(a);

  if (should_launch_local_ranks(a.nproc)) {
    // Open every split once here, so that a bad split name or dataset is one clear error, not one per rank.
    for (const std::string& split : plan.splits) {
      data::SkipReport ignored;
      open_split(plan, a, split, &ignored);
    }
    check_outputs(plan);
    return launch_local_ranks(a.nproc, rank_args(a, plan));
  }

  const dist::DistEnv env = dist::DistEnv::from_environment();
  const bool main = env.rank == 0;
  if (!main && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  const c10::Device device = resolve_device(plan.device, env.local_rank);
  const c10::ScalarType dtype = plan.precision == "fp32" ? c10::kFloat
                                : plan.precision == "bf16" ? c10::kBFloat16
                                : device.is_cuda()         ? c10::kBFloat16
                                                           : c10::kFloat;

  // Datasets first (cheap, and the most likely user error), then the rendezvous, then the model.
  std::vector<std::unique_ptr<data::SkipReport>> skips;
  std::vector<std::unique_ptr<data::EvalDataset>> datasets;
  for (const std::string& split : plan.splits) {
    skips.push_back(std::make_unique<data::SkipReport>());
    datasets.push_back(open_split(plan, a, split, skips.back().get()));
  }
  if (main) check_outputs(plan);
  dist::CommOptions co;
  co.timeout_s = a.timeout_s;
  co.device = device;
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator(env, co);

  infer::LoadModelOptions lo;
  lo.dtype = dtype;
  lo.device = device;
  lo.eval = true;
  lo.attention = plan.attention;
  const auto t_load = std::chrono::steady_clock::now();
  infer::LoadedModel loaded = infer::load_model(plan.source, lo);
  if (main) {
    for (const auto& line : loaded.log) spdlog::info("{}", line);
    spdlog::info("m2sa eval: model {} on {} ({}), {} rank(s) ({}), loaded in {:.1f} s", plan.model_name, device.str(),
                 precision_name(dtype), comm->world_size(), comm->backend(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
  }

  const int64_t max_new_tokens =
      a.max_new_tokens > 0 ? a.max_new_tokens : m2sa_model::reference_max_new_tokens(loaded.model->config());
  if (main && plan.mode == eval::EvalMode::kGenerate)
    spdlog::info("m2sa eval: max_new_tokens {}{}", max_new_tokens,
                 a.max_new_tokens > 0 ? "" : " (the reference's value for these weights)");

  std::vector<json> reports;
  std::unique_ptr<io::EventWriter> events;
  if (main && !a.tensorboard.empty()) events = std::make_unique<io::EventWriter>(a.tensorboard);
  for (std::size_t k = 0; k < plan.splits.size(); ++k) {
    const std::string& split = plan.splits[k];
    const data::EvalDataset& ds = *datasets[k];
    data::SkipReport& skip = *skips[k];
    eval::GenerationStats gen;
    eval::EvaluateOptions eo;
    eo.mode = plan.mode;
    eo.images_per_batch = a.batch;
    eo.max_new_tokens = max_new_tokens;
    eo.limit = a.limit;
    eo.log_progress = main;
    eo.skip_bad = a.skip_bad;
    eo.skip_report = &skip;
    eo.generation_stats = &gen;
    if (main)
      spdlog::info("m2sa eval: split {} ({}, {} items{}), mode {}", split, ds.name(), ds.size(),
                   a.limit >= 0 ? ", limit " + std::to_string(a.limit) : std::string(), eval::to_string(plan.mode));
    const auto t0 = std::chrono::steady_clock::now();
    const eval::SegMeter meter = with_context("evaluating split \"" + split + "\"",
                                              [&] { return eval::evaluate(loaded.model, loaded.tokenizer, ds, eo,
                                                                          comm.get()); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!main) continue;

    eval::ReportInfo info;
    info.split = split;
    info.model = plan.model_name;
    info.seconds = seconds;
    info.world_size = comm->world_size();
    info.top_k = static_cast<size_t>(a.top_k);
    json extra = {{"dataset", ds.name()},
                  {"dataset_dir", plan.dataset_dir.string()},
                  {"dataset_items", ds.size()},
                  {"limit", a.limit},
                  {"images_per_batch", a.batch},
                  {"precision", precision_name(dtype)},
                  {"device", device.str()},
                  {"skip_bad", a.skip_bad},
                  {"skipped_items", skip.count()},
                  {"skipped_messages", skip.messages()}};
    if (!a.config.empty()) extra["config"] = a.config;
    if (plan.mode == eval::EvalMode::kGenerate) {
      extra["max_new_tokens"] = max_new_tokens;
      extra["generation"] = gen.to_json();
    }
    info.extra = std::move(extra);
    const json report = eval::make_report(meter, info);
    eval::write_report(plan.outputs[k], report);
    std::cout << eval::format_report_table(report);
    if (plan.mode == eval::EvalMode::kGenerate)
      std::cout << "  answers: " << gen.questions << " questions, [SEG] count per question: " << gen.seg_exact
                << " exact, " << gen.seg_too_few << " too few (" << gen.no_seg << " without any), " << gen.seg_too_many
                << " too many; " << gen.generated_tokens << " tokens; finished: " << gen.finished_eos
                << " eos, " << gen.finished_max_new_tokens << " max-new-tokens, " << gen.finished_context_full
                << " context full\n";
    if (skip.count() > 0) std::cout << "  " << skip.summary() << "\n";
    std::cout << "  report: " << plan.outputs[k].string() << "\n" << std::flush;
    reports.push_back(report);
    if (events) {
      // Tags "eval/<split>/<mode>/giou": the split's own name keeps its '/', which TensorBoard groups by.
      const std::string tag = "eval/" + split + "/" + eval::to_string(plan.mode) + "/";
      events->add_scalar(tag + "giou", a.tb_step, report.at("giou").get<double>());
      events->add_scalar(tag + "ciou", a.tb_step, report.at("ciou").get<double>());
      for (const eval::Preview& p : eval::render_previews(loaded.model, loaded.tokenizer, ds, a.previews))
        events->add_image("eval_preview/" + split + "/" + p.name, a.tb_step, encode_image(p.image, ".png"),
                          p.image.size(0), p.image.size(1), 3);
      std::cout << "  tensorboard: " << events->file().string() << "\n" << std::flush;
    }
  }
  if (main && reports.size() > 1) std::cout << "\n" << eval::format_summary_table(reports) << std::flush;
  return 0;
}

Registrar register_eval({"eval", "Score a model on evaluation splits (gIoU / cIoU, teacher-forced or generate; JSON reports)",
               [](CLI::App& app) {
                 auto a = std::make_shared<EvalArgs>();
                 app.add_option("--config", a->config, "training config: defaults --model to <run_dir>/model and "
                                                       "--dataset-dir to its dataset_dir (and precision / device)");
                 add_model_source_options(app, a->model, "--model-config");
                 app.add_option("--dataset-dir", a->dataset_dir, "dataset folder (MMR/, refer_seg/, reason_seg/)");
                 app.add_option("--split", a->splits, "evaluation split(s): repeat or comma-separate "
                                                      "(val, test/obj, test/part, test/mixed, refcoco/val, "
                                                      "reasonseg/val, ...)");
                 app.add_option("--json-name", a->json_name, "annotation file for the reference forms "
                                                             "MultiPartReasonSeg|val and RefCOCOm|x");
                 app.add_option("--mode", a->mode, "teacher-forced (the published protocol) or generate")
                     ->capture_default_str();
                 app.add_option("--batch", a->batch, "images per forward / per generation request")
                     ->capture_default_str();
                 app.add_option("--limit", a->limit, "evaluate the first N items of each split (-1: all)")
                     ->capture_default_str();
                 a->max_new_tokens_option =
                     app.add_option("--max-new-tokens", a->max_new_tokens,
                                    "generate mode: longest answer (default: 2048 for M2SA weights, 512 for a "
                                    "LISA-layout checkpoint, as the reference scripts)");
                 app.add_option("--precision", a->precision, "auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16")
                     ->capture_default_str();
                 app.add_option("--device", a->device, "auto, cpu, cuda (cuda:LOCAL_RANK) or cuda:N")
                     ->capture_default_str();
                 app.add_option("--nproc", a->nproc, "local ranks to start (each scores a share of the items)")
                     ->capture_default_str();
                 app.add_option("--out", a->out, "report file (one split) or directory (<split>_<mode>.json each); "
                                                 "default <model>/eval/<split>_<mode>.json");
                 app.add_flag("--skip-bad", a->skip_bad, "skip (and count) bad dataset items instead of stopping");
                 app.add_option("--top-k", a->top_k, "categories per most / least frequent table")
                     ->capture_default_str();
                 app.add_option("--timeout-s", a->timeout_s, "distributed: collective / rendezvous timeout")
                     ->capture_default_str();
                 app.add_option("--tensorboard", a->tensorboard,
                                "also write each split's gIoU / cIoU and GT | prediction previews (teacher-forced) "
                                "as TensorBoard events into this folder");
                 app.add_option("--tb-step", a->tb_step, "the step the TensorBoard events carry (e.g. the "
                                                         "checkpoint's)")->capture_default_str();
                 app.add_option("--previews", a->previews, "with --tensorboard: preview images per split")
                     ->capture_default_str()->check(CLI::NonNegativeNumber);
                 return [a]() -> int { return run_eval(*a); };
               }});

}  // namespace
}  // namespace m2sa::cli
