#pragma once
// The generic training loop (M2SA.md section 4.2): gradient accumulation, data-parallel gradient all-reduce,
// clipping, AdamW with the WarmupDecayLR schedule, NaN/Inf detection, progress and JSONL metrics, periodic
// validation, atomic checkpoints and exact resume. It knows nothing about M2SA: the model plugs in through
// three callables (next micro-batch, forward -> loss, validate), so the same loop trains a toy model in tests.
//
// One optimizer step = grad_accumulation_steps micro-batches on every rank. The gradient is the mean over the
// micro-batches of all ranks (DeepSpeed: loss / gradient_accumulation_steps per micro-batch, averaged across the
// data-parallel ranks): each rank sums its micro-batch gradients in fp32, the flat buckets are all-reduced (sum,
// fp32) and scaled by 1 / (grad_accumulation_steps * world_size). Then clip_grad_norm(gradient_clipping), AdamW
// on the fp32 masters with lr = schedule(step), and the masters are copied into the model.
//
// Data parallel contract for callers: on step s, micro-batch m, rank r, next_batch must return that rank's share of
// the global batch. StepInfo::global_micro_index() = (s * world + r) * micro_steps + m numbers the micro-batches of
// the whole run so that W ranks with G micro-steps see the same data as 1 rank with W*G micro-steps.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <any>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/tensorboard_events.h"
#include "m2sa/train/adamw.h"
#include "m2sa/train/checkpoint.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/train/lr_schedule.h"
#include "m2sa/train/rng_state.h"
#include "m2sa/train/trainable_params.h"

namespace m2sa::train {

// The "train" section of a training config. Names follow MMR:train_ds.py's arguments and DeepSpeed's config keys.
struct TrainerConfig {
  int64_t epochs = 10;                  // "epochs" of steps_per_epoch optimizer steps (not data epochs)
  int64_t steps_per_epoch = 500;
  int64_t grad_accumulation_steps = 10;
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool no_decay_1d = false;             // weight decay 0 for biases / norm weights
  int64_t warmup_num_steps = 100;
  std::string warmup_type = "linear";   // MMR's ds_config sets "linear" (DeepSpeed's default is "log")
  std::string first_step_lr = "deepspeed-0.15.3";  // warmup from 0; "deepspeed-0.14": the reference's quirk (lr_schedule.h)
  double gradient_clipping = 1.0;       // 0 disables
  int64_t print_freq = 1;               // progress line every N steps (the JSONL gets every step)
  int64_t checkpoint_every = 0;         // steps; 0: at the end of every epoch only (always at epoch ends)
  int keep_last_checkpoints = 2;
  std::string best_metric = "giou";     // a key of the validate() result
  std::string best_mode = "max";        // "max" | "min"
  double collective_timeout_s = 300.0;
  int64_t bucket_mb = 64;               // gradient all-reduce bucket size

  int64_t total_steps() const { return epochs * steps_per_epoch; }
  AdamWConfig adamw() const;
  LrScheduleConfig schedule() const;
  static TrainerConfig from_json(const JsonReader& r);  // every field optional; strict
  json to_json() const;
};

struct StepInfo {
  int64_t step = 0;         // optimizer steps completed before this one (0-based index of the current step)
  int64_t micro = 0;        // micro-batch index within the step on this rank
  int64_t micro_steps = 1;  // grad_accumulation_steps
  int rank = 0;
  int world_size = 1;
  int64_t steps_per_epoch = 1;

  int64_t epoch() const { return step / steps_per_epoch; }
  int64_t global_micro_index() const { return (step * world_size + rank) * micro_steps + micro; }
};

struct Batch {
  std::any data;                     // whatever forward() needs
  int64_t samples = 1;               // samples (images) in this micro-batch, for samples/s
  std::vector<std::string> sources;  // where its samples came from (named when its loss is not finite)
};

struct ForwardResult {
  at::Tensor loss;                                          // 0-d, backpropagated by the trainer
  std::vector<std::pair<std::string, at::Tensor>> parts;    // logged parts (e.g. ce, mask_bce, mask_dice)
};

struct StepReport {
  int64_t step = 0;  // optimizer steps completed
  double lr = 0;
  double loss = 0;   // mean over the step's micro-batches on all ranks
  std::vector<std::pair<std::string, double>> parts;
  double grad_norm = 0;  // before clipping
  int64_t samples = 0;   // in this step, all ranks
  double step_time_s = 0;
  double data_wait_s = 0;  // of step_time_s, this rank's time in next_batch (waiting for or making its batches)
};

// A picture logged at validation (TensorBoard image and <run_dir>/previews/step-NNNNNN/<name>.png).
struct PreviewImage {
  std::string name;  // file stem and TensorBoard tag suffix: [A-Za-z0-9_-]
  std::string png;   // encoded PNG
  int64_t height = 0, width = 0, channels = 3;
  json info = json::object();  // caption fields for the report (question, answer, iou, ...)
};

struct TrainTask {
  std::function<Batch(const StepInfo&)> next_batch;
  std::function<ForwardResult(const Batch&, const StepInfo&)> forward;
  // Optional: runs under NoGradGuard at the end of every epoch (and every TrainerOptions::validate_every steps);
  // must return the same metrics on every rank
  // (reduce them with Communicator::all_reduce_sum).
  std::function<std::map<std::string, double>(const StepInfo&, dist::Communicator&)> validate;
  // Optional: called on rank 0 only, after every validation: pictures of fixed validation items.
  std::function<std::vector<PreviewImage>(const StepInfo&)> previews;
  // Optional: the sampler's state (opaque JSON, per rank) for exact resume.
  std::function<json()> data_state;
  std::function<void(const json&)> restore_data_state;
  // Optional: called on every rank after every optimizer step.
  std::function<void(const StepReport&)> on_step;
};

// Rank 0 logs every metrics.jsonl scalar to TensorBoard event files in <run_dir>/tb/ too, as "<type>/<key>"
// ("train/loss", "train/lr", "val/giou", ...), and the validation previews as images "val_preview/<name>".
struct TrainerOptions {
  std::filesystem::path run_dir;  // runs/<exp>: checkpoints/, metrics.jsonl, tb/, previews/
  bool resume = false;            // continue from checkpoints/latest when there is one
  std::string config_hash;        // stored in checkpoints; resuming with another hash warns
  c10::Device device = c10::Device(c10::DeviceType::CPU);  // the training device (its RNG is checkpointed)
  std::function<void(const std::string& stage)> checkpoint_fault_hook;  // tests: see CheckpointOptions
  int64_t validate_every = 0;  // also validate every N optimizer steps (0: at epoch ends and the last step only)
  // Polled on every rank once per step (default: m2sa::stop_requested(), set by SIGTERM / SIGINT once
  // install_stop_handlers() ran). When it is true on any rank, every rank finishes the step, the checkpoint of that
  // step is written, and run() returns with TrainSummary::stopped.
  std::function<bool()> stop_requested;
};

struct TrainSummary {
  int64_t start_step = 0;  // where this run started (> 0 after a resume)
  int64_t end_step = 0;
  double seconds = 0;
  std::optional<BestCheckpoint> best;
  std::map<std::string, double> last_validation;
  bool stopped = false;  // ended early on a stop request, after writing the checkpoint of end_step
};

class Trainer {
 public:
  Trainer(TrainerConfig config, TrainableParams& params, dist::Communicator& comm, TrainTask task,
          TrainerOptions options);
  ~Trainer();

  // Registers a generator whose state goes into checkpoints (per rank) and is restored on resume.
  void register_rng(const std::string& name, std::mt19937_64* generator);

  // Trains until total_steps (resuming first when asked). Throws m2sa::Error on a non-finite loss or gradient
  // (on every rank, naming the step and the batches' sources), on a failed collective, or from the callables.
  TrainSummary run();

  int64_t steps_done() const { return step_; }
  const AdamW& optimizer() const { return optimizer_; }
  const WarmupDecayLR& schedule() const { return schedule_; }

 private:
  void start(TrainSummary& summary);
  void resume_from_latest(bool& resumed);
  void save_checkpoint(bool new_best);
  void write_metrics(const json& line);
  void open_event_log(bool resumed);
  void write_previews(const StepInfo& info);
  void train_step();
  std::optional<std::map<std::string, double>> maybe_validate();

  TrainerConfig config_;
  TrainableParams& params_;
  dist::Communicator& comm_;
  TrainTask task_;
  TrainerOptions options_;
  AdamW optimizer_;
  WarmupDecayLR schedule_;
  RngRegistry rng_;
  std::unique_ptr<CheckpointManager> checkpoints_;  // rank 0 only
  std::filesystem::path metrics_path_;
  std::unique_ptr<io::EventWriter> events_;  // rank 0
  std::vector<std::string> part_names_;
  int64_t step_ = 0;
  int64_t samples_seen_ = 0;
  double elapsed_before_ = 0;  // training seconds of earlier runs (resume)
  std::optional<BestCheckpoint> best_;
  std::map<std::string, double> last_validation_;
  bool stop_agreed_ = false;  // some rank asked to stop during the last step
  double run_seconds_ = 0;
  int64_t run_steps_ = 0;
  int64_t run_samples_ = 0;
};

}  // namespace m2sa::train
