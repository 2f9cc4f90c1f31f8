#include "m2sa/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/core/stop_request.h"
#include "m2sa/core/strings.h"

namespace m2sa::train {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------- config

AdamWConfig TrainerConfig::adamw() const {
  AdamWConfig c;
  c.lr = lr;
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.eps = eps;
  c.weight_decay = weight_decay;
  c.no_decay_1d = no_decay_1d;
  return c;
}

LrScheduleConfig TrainerConfig::schedule() const {
  LrScheduleConfig c;
  c.warmup_min_lr = 0.0;
  c.warmup_max_lr = lr;
  c.warmup_num_steps = warmup_num_steps;
  c.total_num_steps = total_steps();
  c.warmup_type = warmup_type;
  c.first_step = first_step_lr;
  return c;
}

TrainerConfig TrainerConfig::from_json(const JsonReader& r) {
  TrainerConfig c;
  c.epochs = r.get_or("epochs", c.epochs);
  c.steps_per_epoch = r.get_or("steps_per_epoch", c.steps_per_epoch);
  c.grad_accumulation_steps = r.get_or("grad_accumulation_steps", c.grad_accumulation_steps);
  c.lr = r.get_or("lr", c.lr);
  c.beta1 = r.get_or("beta1", c.beta1);
  c.beta2 = r.get_or("beta2", c.beta2);
  c.eps = r.get_or("eps", c.eps);
  c.weight_decay = r.get_or("weight_decay", c.weight_decay);
  c.no_decay_1d = r.get_or("no_decay_1d", c.no_decay_1d);
  c.warmup_num_steps = r.get_or("warmup_num_steps", c.warmup_num_steps);
  c.warmup_type = r.get_or("warmup_type", c.warmup_type);
  c.first_step_lr = r.get_or("first_step_lr", c.first_step_lr);
  c.gradient_clipping = r.get_or("gradient_clipping", c.gradient_clipping);
  c.print_freq = r.get_or("print_freq", c.print_freq);
  c.checkpoint_every = r.get_or("checkpoint_every", c.checkpoint_every);
  c.keep_last_checkpoints = r.get_or("keep_last_checkpoints", c.keep_last_checkpoints);
  c.best_metric = r.get_or("best_metric", c.best_metric);
  c.best_mode = r.get_or("best_mode", c.best_mode);
  c.collective_timeout_s = r.get_or("collective_timeout_s", c.collective_timeout_s);
  c.bucket_mb = r.get_or("bucket_mb", c.bucket_mb);
  r.finish();
  auto positive = [&](const char* key, double v) {
    if (!(v > 0)) fail(r.location(key), ": must be positive, got ", v);
  };
  positive("epochs", static_cast<double>(c.epochs));
  positive("steps_per_epoch", static_cast<double>(c.steps_per_epoch));
  positive("grad_accumulation_steps", static_cast<double>(c.grad_accumulation_steps));
  positive("print_freq", static_cast<double>(c.print_freq));
  positive("keep_last_checkpoints", c.keep_last_checkpoints);
  positive("collective_timeout_s", c.collective_timeout_s);
  positive("bucket_mb", static_cast<double>(c.bucket_mb));
  if (c.checkpoint_every < 0) fail(r.location("checkpoint_every"), ": must be >= 0, got ", c.checkpoint_every);
  if (c.gradient_clipping < 0) fail(r.location("gradient_clipping"), ": must be >= 0, got ", c.gradient_clipping);
  if (c.best_mode != "max" && c.best_mode != "min")
    fail(r.location("best_mode"), ": must be \"max\" or \"min\", got \"", c.best_mode, "\"");
  with_context(r.file(), [&] { WarmupDecayLR check(c.schedule()); });
  return c;
}

json TrainerConfig::to_json() const {
  return json{{"epochs", epochs},
              {"steps_per_epoch", steps_per_epoch},
              {"grad_accumulation_steps", grad_accumulation_steps},
              {"lr", lr},
              {"beta1", beta1},
              {"beta2", beta2},
              {"eps", eps},
              {"weight_decay", weight_decay},
              {"no_decay_1d", no_decay_1d},
              {"warmup_num_steps", warmup_num_steps},
              {"warmup_type", warmup_type},
              {"first_step_lr", first_step_lr},
              {"gradient_clipping", gradient_clipping},
              {"print_freq", print_freq},
              {"checkpoint_every", checkpoint_every},
              {"keep_last_checkpoints", keep_last_checkpoints},
              {"best_metric", best_metric},
              {"best_mode", best_mode},
              {"collective_timeout_s", collective_timeout_s},
              {"bucket_mb", bucket_mb}};
}

// ---------------------------------------------------------------------------------------------- trainer

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t total = static_cast<int64_t>(s + 0.5);
  char buf[64];
  if (total >= 3600)
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(total / 3600),
                  static_cast<long long>(total % 3600 / 60));
  else if (total >= 60)
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  else
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(total));
  return buf;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string format_double(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}
}  // namespace

Trainer::Trainer(TrainerConfig config, TrainableParams& params, dist::Communicator& comm, TrainTask task,
                 TrainerOptions options)
    : config_(std::move(config)),
      params_(params),
      comm_(comm),
      task_(std::move(task)),
      options_(std::move(options)),
      optimizer_(params.names(), params.masters(), config_.adamw()),
      schedule_(config_.schedule()) {
  M2SA_CHECK(task_.next_batch && task_.forward, "Trainer: the task needs next_batch and forward callables");
  M2SA_CHECK(!options_.run_dir.empty(), "Trainer: no run directory");
  rng_.set_device(options_.device);
  metrics_path_ = options_.run_dir / "metrics.jsonl";
  if (comm_.is_main()) {
    CheckpointOptions co;
    co.dir = options_.run_dir / "checkpoints";
    co.keep_last = config_.keep_last_checkpoints;
    co.fault_hook = options_.checkpoint_fault_hook;
    checkpoints_ = std::make_unique<CheckpointManager>(co);
  }
}

Trainer::~Trainer() = default;

void Trainer::register_rng(const std::string& name, std::mt19937_64* generator) { rng_.add(name, generator); }

void Trainer::write_metrics(const json& line) {
  if (!comm_.is_main()) return;
  std::ofstream out(metrics_path_, std::ios::app);
  out << line.dump() << "\n";
  out.flush();
  if (!out) spdlog::warn("cannot append to {}", metrics_path_.string());
  if (!events_) return;
  // Every number of the line, so that TensorBoard and metrics.jsonl never disagree; counters are left out.
  const std::string type = line.at("type").get<std::string>();
  const int64_t step = line.at("step").get<int64_t>();
  try {
    for (const auto& [key, value] : line.items())
      if (value.is_number() && key != "step" && key != "epoch" && key != "samples" && key != "samples_seen")
        events_->add_scalar(type + "/" + key, step, value.get<double>());
  } catch (const std::exception& e) {
    spdlog::warn("TensorBoard logging stops: {}", e.what());
    events_.reset();
  }
}

// Rank 0: a fresh run starts an empty event log and preview folder (as metrics.jsonl starts empty); a resumed run
// drops what the interrupted run logged after its checkpoint, since those steps are replayed.
void Trainer::open_event_log(bool resumed) {
  if (!comm_.is_main()) return;
  const fs::path tb = options_.run_dir / "tb", previews = options_.run_dir / "previews";
  if (resumed) {
    const int64_t removed = io::trim_events_after(tb, step_);
    if (removed > 0) spdlog::info("resume: {} TensorBoard event(s) after step {} dropped from {}", removed, step_,
                                  tb.string());
    if (fs::is_directory(previews))
      for (const auto& e : fs::directory_iterator(previews)) {
        const std::string name = e.path().filename().string();
        if (starts_with(name, "step-") && std::atoll(name.c_str() + 5) > step_) fs::remove_all(e.path());
      }
  } else {
    for (const fs::path& f : io::event_files(tb)) fs::remove(f);
    fs::remove_all(previews);
  }
  events_ = std::make_unique<io::EventWriter>(tb);
}

void Trainer::write_previews(const StepInfo& info) {
  if (!task_.previews || !comm_.is_main()) return;
  // Pictures are for people: a failure to draw or write them is reported and training goes on.
  try {
    const auto t0 = Clock::now();
    const std::vector<PreviewImage> images = task_.previews(info);
    const fs::path dir = options_.run_dir / "previews" / CheckpointManager::dir_name(step_);
    json index = json::array();
    for (const PreviewImage& p : images) {
      const std::string file = p.name + ".png";
      write_file_atomic(dir / file, p.png);
      json entry = p.info;
      entry["name"] = p.name;
      entry["file"] = file;
      index.push_back(entry);
      if (events_) events_->add_image("val_preview/" + p.name, step_, p.png, p.height, p.width, p.channels);
    }
    write_file_atomic(dir / "previews.json", index.dump(2) + "\n");
    spdlog::info("{} validation preview(s) written to {} ({:.1f} s)", images.size(), dir.string(),
                 seconds_since(t0));
  } catch (const std::exception& e) {
    spdlog::warn("validation previews of step {} not written: {}", step_, e.what());
  }
}

void Trainer::start(TrainSummary& summary) {
  // Rank 0 prepares the run directory and decides whether to resume; everybody learns the decision (or the
  // error) from it, so that all ranks stop together with the same message.
  std::string decision;
  if (comm_.is_main()) {
    try {
      fs::create_directories(options_.run_dir);
      checkpoints_->clean_leftovers();
      const auto point = options_.resume ? checkpoints_->resume_point() : std::nullopt;
      if (point) {
        decision = "resume";
      } else if (!options_.resume && !checkpoints_->step_dirs().empty()) {
        decision = "error:" + options_.run_dir.string() +
                   " already holds checkpoints: resume it (--resume) or train into another directory";
      } else {
        if (options_.resume)
          spdlog::info("resume: no checkpoint in {} yet, starting from step 0", checkpoints_->dir().string());
        decision = "fresh";
      }
    } catch (const std::exception& e) {
      decision = std::string("error:") + e.what();
    }
  }
  decision = comm_.broadcast_string(decision, 0);
  if (decision.rfind("error:", 0) == 0) fail(decision.substr(6));

  bool resumed = false;
  if (decision == "resume") resume_from_latest(resumed);
  if (!resumed) {
    // Rank 0's initial trainable weights for everyone (frozen weights come from the same files or seed).
    comm_.broadcast_tensors_(params_.masters(), 0, config_.bucket_mb << 20);
    params_.copy_masters_to_params();
    if (comm_.is_main()) write_file_atomic(metrics_path_, std::string());
  }
  open_event_log(resumed);
  params_.zero_grads();
  summary.start_step = step_;
}

void Trainer::resume_from_latest(bool& resumed) {
  // Rank 0 reads the checkpoint and sends it to the others (no shared filesystem needed).
  std::string state_text, error;
  std::optional<LoadedCheckpoint> ck;
  if (comm_.is_main()) {
    try {
      ck = load_checkpoint(*checkpoints_->resume_point());
      params_.check_layout(*ck->weights);
      const json& s = ck->state;
      const int saved_world = s.value("world_size", 0);
      M2SA_CHECK(saved_world == comm_.world_size(), (ck->dir / "state.json").string(), ": written by ",
                 saved_world, " rank(s), this run has ", comm_.world_size(),
                 ": an exact resume needs the same number of ranks (each has its own sampler and RNG state)");
      state_text = s.dump();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = comm_.broadcast_string(error, 0);
  if (!error.empty()) fail("resume: ", error);
  if (comm_.is_main()) {
    params_.load_masters(*ck->weights);
    optimizer_.load_state(*ck->optimizer);
  }
  state_text = comm_.broadcast_string(state_text, 0);
  const json state = json::parse(state_text);
  comm_.broadcast_tensors_(params_.masters(), 0, config_.bucket_mb << 20);
  comm_.broadcast_tensors_(optimizer_.state_list(), 0, config_.bucket_mb << 20);
  params_.copy_masters_to_params();

  const std::string where = "checkpoint state.json";
  step_ = json_int(state.at("step"), where + ": step", 0);
  optimizer_.set_steps(json_int(state.at("optimizer_steps"), where + ": optimizer_steps", 0));
  samples_seen_ = state.value("samples_seen", int64_t{0});
  elapsed_before_ = state.value("elapsed_s", 0.0);
  if (state.contains("best") && state["best"].is_object()) {
    BestCheckpoint b;
    b.step = json_int(state["best"].at("step"), where + ": best.step", 0);
    b.metric = state["best"].at("metric").get<std::string>();
    b.value = state["best"].at("value").get<double>();
    best_ = b;
  }
  if (state.value("config_hash", std::string()) != options_.config_hash && comm_.is_main())
    spdlog::warn("resume: the configuration differs from the one that wrote the checkpoint (hash {} vs {}); the "
                 "run will not be an exact continuation",
                 state.value("config_hash", std::string("?")), options_.config_hash);
  const json& ranks = state.at("ranks");
  M2SA_CHECK(ranks.is_array() && static_cast<int>(ranks.size()) == comm_.world_size(), where,
             ": \"ranks\" must hold one entry per rank");
  const json& mine = ranks[comm_.rank()];
  rng_.restore(mine.at("rng"), where + ": ranks[" + std::to_string(comm_.rank()) + "].rng");
  if (task_.restore_data_state && mine.contains("data_state")) task_.restore_data_state(mine["data_state"]);
  if (comm_.is_main()) {
    // Drop metric lines of steps after the checkpoint (written by the interrupted run) and any torn last line.
    std::string kept;
    std::ifstream in(metrics_path_);
    for (std::string line; std::getline(in, line);) {
      try {
        const json j = json::parse(line);
        if (j.value("step", int64_t{0}) <= step_) kept += line + "\n";
      } catch (const std::exception&) {
      }
    }
    in.close();
    write_file_atomic(metrics_path_, kept);
    if (best_ && fs::is_directory(checkpoints_->dir() / CheckpointManager::dir_name(best_->step)))
      checkpoints_->set_best(*best_);
    spdlog::info("resumed from {} at step {}/{}", ck->dir.string(), step_, config_.total_steps());
  }
  resumed = true;
}

void Trainer::save_checkpoint(bool new_best) {
  // Every rank's sampler and RNG state goes to rank 0, which writes the checkpoint.
  json mine{{"rank", comm_.rank()}, {"rng", rng_.capture()}};
  if (task_.data_state) mine["data_state"] = task_.data_state();
  const std::vector<std::string> all = with_context(
      "saving the checkpoint of step " + std::to_string(step_), [&] { return comm_.all_gather_bytes(mine.dump()); });
  if (!comm_.is_main()) return;
  json state;
  state["optimizer_steps"] = optimizer_.steps();
  state["micro_step"] = step_ * config_.grad_accumulation_steps;
  state["samples_seen"] = samples_seen_;
  state["world_size"] = comm_.world_size();
  state["elapsed_s"] = elapsed_before_ + run_seconds_;
  state["schedule"] = schedule_.to_json();
  state["schedule"]["next_lr"] = schedule_.lr_for_step(step_);
  state["config_hash"] = options_.config_hash;
  state["config"] = config_.to_json();
  state["best"] = best_ ? json{{"step", best_->step}, {"metric", best_->metric}, {"value", best_->value}} : json();
  state["ranks"] = json::array();
  for (const std::string& s : all) state["ranks"].push_back(json::parse(s));
  CheckpointData data;
  data.step = step_;
  data.weights = params_.named_masters();
  data.optimizer = optimizer_.state_tensors();
  data.optimizer_metadata = optimizer_.state_metadata();
  data.state = std::move(state);
  const auto t0 = Clock::now();
  const fs::path dir = checkpoints_->save(data, new_best ? best_ : std::nullopt);
  spdlog::info("checkpoint {} written in {:.2f} s{}", dir.string(), seconds_since(t0), new_best ? " (best)" : "");
}

std::optional<std::map<std::string, double>> Trainer::maybe_validate() {
  if (!task_.validate) return std::nullopt;
  const bool due = options_.validate_every > 0 && step_ % options_.validate_every == 0;
  if (step_ % config_.steps_per_epoch != 0 && step_ != config_.total_steps() && !due) return std::nullopt;
  StepInfo info;
  info.step = step_;
  info.micro_steps = config_.grad_accumulation_steps;
  info.rank = comm_.rank();
  info.world_size = comm_.world_size();
  info.steps_per_epoch = config_.steps_per_epoch;
  const auto t0 = Clock::now();
  std::map<std::string, double> metrics;
  {
    at::NoGradGuard no_grad;
    metrics = task_.validate(info, comm_);
  }
  if (comm_.is_main()) {
    std::string line;
    json j{{"type", "val"}, {"step", step_}, {"epoch", step_ / config_.steps_per_epoch}};
    for (const auto& [k, v] : metrics) {
      line += " " + k + " " + format_double(v);
      j[k] = v;
    }
    j["time_s"] = seconds_since(t0);
    write_metrics(j);
    spdlog::info("validation at step {}:{} ({:.1f} s)", step_, line, seconds_since(t0));
    write_previews(info);
  }
  return metrics;
}

void Trainer::train_step() {
  const auto t0 = Clock::now();
  const int64_t gas = config_.grad_accumulation_steps;
  StepInfo info;
  info.step = step_;
  info.micro_steps = gas;
  info.rank = comm_.rank();
  info.world_size = comm_.world_size();
  info.steps_per_epoch = config_.steps_per_epoch;

  std::vector<std::string> names;         // part names of this rank's micro-batches
  std::vector<double> part_sums;
  std::vector<std::string> step_sources;  // every source of this step on this rank
  double loss_sum = 0;
  int64_t samples = 0, micros = 0;
  double data_wait_s = 0;
  std::string bad;  // this rank's non-finite report
  for (int64_t m = 0; m < gas; ++m) {
    info.micro = m;
    const auto data_t0 = Clock::now();
    Batch batch = task_.next_batch(info);
    data_wait_s += seconds_since(data_t0);
    step_sources.insert(step_sources.end(), batch.sources.begin(), batch.sources.end());
    ForwardResult out = task_.forward(batch, info);
    M2SA_CHECK(out.loss.defined() && out.loss.numel() == 1, "Trainer: forward() must return a scalar loss");
    std::vector<std::string> these;
    std::vector<double> values;
    for (const auto& [name, t] : out.parts) {
      these.push_back(name);
      values.push_back(t.defined() ? t.detach().to(at::kDouble).item<double>() : 0.0);
    }
    if (names.empty()) {
      names = these;
      part_sums.assign(names.size(), 0.0);
    }
    if (these != names)
      fail("Trainer: forward() returned the loss parts [", join(these, ", "), "] after [", join(names, ", "),
           "]: every micro-batch must report the same parts");
    const double loss = out.loss.detach().to(at::kDouble).item<double>();
    if (!std::isfinite(loss)) {
      std::string parts;
      for (size_t i = 0; i < names.size(); ++i) parts += (i ? ", " : "") + names[i] + " " + format_double(values[i]);
      bad = "rank " + std::to_string(comm_.rank()) + ", micro-batch " + std::to_string(m) + ": loss " +
            format_double(loss) + (parts.empty() ? "" : " (" + parts + ")") + "; batch sources: " +
            (batch.sources.empty() ? std::string("(none given)") : join(batch.sources, ", "));
      break;  // no backward on a non-finite loss; the step is abandoned below, on every rank
    }
    out.loss.backward();
    params_.accumulate_grads();
    loss_sum += loss;
    for (size_t i = 0; i < values.size(); ++i) part_sums[i] += values[i];
    samples += batch.samples;
    ++micros;
  }

  // Part names must agree across ranks (checked once); then one small all-reduce carries the failure flag and
  // the logged sums, so that every rank learns about a non-finite loss anywhere and stops with the same error.
  if (part_names_.empty() && comm_.world_size() > 1) {
    const std::vector<std::string> all = comm_.all_gather_bytes(join(names, ","));
    for (int r = 0; r < comm_.world_size(); ++r)
      if (all[r] != join(names, ","))
        fail("Trainer: rank ", r, " logs the loss parts [", all[r], "] but rank ", comm_.rank(), " logs [",
             join(names, ","), "]");
  }
  if (part_names_.empty()) part_names_ = names;
  if (names != part_names_ && bad.empty())
    fail("Trainer: forward() returned the loss parts [", join(names, ", "), "], earlier steps [",
         join(part_names_, ", "), "]");
  std::vector<double> stats{bad.empty() ? 0.0 : 1.0, static_cast<double>(samples), static_cast<double>(micros),
                            loss_sum};
  for (size_t i = 0; i < part_names_.size(); ++i) stats.push_back(i < part_sums.size() ? part_sums[i] : 0.0);
  // The stop request rides on the same all-reduce: a signal that reached one rank stops all of them at this step.
  const bool stop_here = options_.stop_requested ? options_.stop_requested() : stop_requested();
  stats.push_back(stop_here ? 1.0 : 0.0);
  const std::string where = "step " + std::to_string(step_ + 1) + "/" + std::to_string(config_.total_steps());
  stats = with_context(where + ", reducing the losses", [&] { return comm_.all_reduce_sum(stats); });
  stop_agreed_ = stats.back() > 0;
  if (stats[0] > 0) {
    const std::vector<std::string> reports = comm_.all_gather_bytes(bad);
    std::string msg;
    for (const std::string& r : reports)
      if (!r.empty()) msg += "\n  " + r;
    fail("non-finite loss at step ", step_ + 1, " of ", config_.total_steps(), " (epoch ",
         step_ / config_.steps_per_epoch, "); stopping the run:", msg);
  }

  // Mean gradient over all micro-batches of all ranks, in fp32.
  with_context(where + ", reducing the gradients", [&] {
    for (at::Tensor& bucket : params_.grad_buckets()) comm_.all_reduce_sum_(bucket);
  });
  params_.scale_grads(1.0 / static_cast<double>(gas * comm_.world_size()));
  const double grad_norm = params_.clip_grad_norm(config_.gradient_clipping);
  if (!std::isfinite(grad_norm)) {
    const std::vector<std::string> all = comm_.all_gather_bytes(join(step_sources, ", "));
    std::string msg;
    for (int r = 0; r < comm_.world_size(); ++r)
      msg += "\n  rank " + std::to_string(r) + ": " + (all[r].empty() ? std::string("(no sources given)") : all[r]);
    fail("non-finite gradient norm (", grad_norm, ") at step ", step_ + 1, " of ", config_.total_steps(),
         " although every loss was finite; stopping the run. The step's batches came from:", msg);
  }
  const double lr = schedule_.lr_for_step(step_);
  optimizer_.step(lr, params_.grads());
  params_.copy_masters_to_params();
  params_.zero_grads();
  ++step_;

  const int64_t step_samples = static_cast<int64_t>(stats[1]);
  samples_seen_ += step_samples;
  const double step_time = seconds_since(t0);
  run_seconds_ += step_time;
  run_samples_ += step_samples;
  ++run_steps_;
  StepReport report;
  report.step = step_;
  report.lr = lr;
  report.loss = stats[2] > 0 ? stats[3] / stats[2] : 0.0;
  for (size_t i = 0; i < part_names_.size(); ++i)
    report.parts.emplace_back(part_names_[i], stats[2] > 0 ? stats[4 + i] / stats[2] : 0.0);
  report.grad_norm = grad_norm;
  report.samples = step_samples;
  report.step_time_s = step_time;
  report.data_wait_s = data_wait_s;

  if (comm_.is_main()) {
    const double samples_per_s = step_time > 0 ? step_samples / step_time : 0.0;
    json j{{"type", "train"},
           {"step", step_},
           {"epoch", (step_ - 1) / config_.steps_per_epoch},
           {"lr", lr},
           {"loss", report.loss},
           {"grad_norm", grad_norm},
           {"samples", step_samples},
           {"samples_seen", samples_seen_},
           {"samples_per_s", samples_per_s},
           {"step_time_s", step_time},
           {"elapsed_s", elapsed_before_ + run_seconds_}};
    for (const auto& [k, v] : report.parts) j[k] = v;
    write_metrics(j);
    if (step_ % config_.print_freq == 0 || step_ == config_.total_steps() || step_ == 1) {
      std::string parts;
      for (const auto& [k, v] : report.parts) parts += " " + k + " " + format_double(v);
      const double eta = run_seconds_ / static_cast<double>(run_steps_) *
                         static_cast<double>(config_.total_steps() - step_);
      spdlog::info("step {}/{} | loss {}{} | lr {:.3e} | grad_norm {:.4g} | {:.2f} samples/s | ETA {}", step_,
                   config_.total_steps(), format_double(report.loss), parts, lr, grad_norm,
                   run_seconds_ > 0 ? static_cast<double>(run_samples_) / run_seconds_ : 0.0,
                   format_duration(eta));
    }
  }
  if (task_.on_step) task_.on_step(report);
}

TrainSummary Trainer::run() {
  TrainSummary summary;
  const auto t0 = Clock::now();
  start(summary);
  if (comm_.is_main())
    spdlog::info("training {} trainable parameters ({} tensors) for {} steps of {} x {} micro-batches ({}, world "
                 "size {}), from step {}",
                 params_.numel(), params_.size(), config_.total_steps(), comm_.world_size(),
                 config_.grad_accumulation_steps, comm_.backend(), comm_.world_size(), step_);
  while (step_ < config_.total_steps()) {
    train_step();
    bool new_best = false;
    if (auto metrics = maybe_validate()) {
      last_validation_ = *metrics;
      auto it = metrics->find(config_.best_metric);
      if (it == metrics->end()) {
        std::string keys;
        for (const auto& [k, v] : *metrics) keys += (keys.empty() ? "" : ", ") + k;
        fail("Trainer: validate() returned no \"", config_.best_metric, "\" (best_metric); it returned: ", keys);
      }
      const bool better = !best_ || (config_.best_mode == "max" ? it->second > best_->value
                                                                 : it->second < best_->value);
      if (better) {
        best_ = BestCheckpoint{step_, config_.best_metric, it->second};
        new_best = true;
      }
    }
    const bool epoch_end = step_ % config_.steps_per_epoch == 0;
    const bool due = config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0;
    if (epoch_end || due || step_ == config_.total_steps() || stop_agreed_) save_checkpoint(new_best);
    if (stop_agreed_ && step_ < config_.total_steps()) {
      summary.stopped = true;
      if (comm_.is_main())
        spdlog::warn("stopped on request after step {}/{}; its checkpoint is written: continue with --resume", step_,
                     config_.total_steps());
      break;
    }
  }
  comm_.barrier();
  summary.end_step = step_;
  summary.seconds = seconds_since(t0);
  summary.best = best_;
  summary.last_validation = last_validation_;
  return summary;
}

}  // namespace m2sa::train
