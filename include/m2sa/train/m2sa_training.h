#pragma once
// `m2sa train --config C`: M2SA training runs (../shared/spec/M2SA.md section 4 and the Decisions table) on the
// generic Trainer (train/trainer.h). This file holds the training-config file and the wiring:
//   model + tokenizer (from scratch, from SAM + LLaVA + CLIP weights, or from a merged model folder)
//   -> set_trainable (lora | full), precision, gradient checkpointing
//   -> TrainTask: next_batch = this rank's samples of the TrainingMix + collate_samples,
//                 forward = the teacher-forced model forward + m2sa_objective,
//                 validate = eval::evaluate in teacher-forced mode (gIoU / cIoU reduced over the ranks)
//   -> Trainer (AdamW with fp32 masters, WarmupDecayLR, gradient accumulation, data parallel, checkpoints).
//
// Training config (JSON, strict: unknown fields are errors naming the field and the file):
//   {
//     "model": "../tiny.json",          // model config file (relative to this file) or the config object inline
//     "init": {"from": "scratch", "seed": 0},                 // PyTorch default init with this torch seed
//          | {"from": "weights", "sam": "weights/sam_vit_h_4b8939.pth", "llava_dir": "weights/LLaVA-...",
//             "clip_dir": "weights/clip-vit-large-patch14"}   // the reference's training start
//          | {"from": "merged", "model_dir": "...", "clip_dir": "..."}  // a merged HF folder (m2sa export)
//     "tokenizer": "../tokenizer",       // relative to this file; default: configs/tokenizer (working directory)
//                                        // from scratch, the LLaVA / model folder otherwise
//     "train_mode": "lora",              // "lora" (the reference's selection) | "full" (every parameter)
//     "precision": "auto",               // "auto" (bf16 on CUDA, fp32 on CPU) | "fp32" | "bf16"
//     "device": "auto",                  // "auto" | "cpu" | "cuda" (cuda:LOCAL_RANK) | "cuda:N"
//     "images_per_micro_batch": 2,       // --batch_size of MMR:train_ds.py
//     "gradient_checkpointing": true,    // recompute LLM decoder layers in backward
//     "data": {...DataConfig...},        // data/data_config.h; its seed defaults to the run seed
//     "train": {...TrainerConfig...},    // train/trainer.h
//     "loss": {"ce_loss_weight": 1.0, "bce_loss_weight": 2.0, "dice_loss_weight": 0.5},
//     "validation": {"split": "val", "dataset_dir": null, "limit": -1, "images_per_batch": 4, "every_steps": 0},
//     "run_dir": "runs/<config name>",
//     "export": "best",                  // at the end, rank 0 writes <run_dir>/model (merged HF layout, m2sa export)
//                                        // from the "best" checkpoint (else the last weights) | "last" | "none"
//     "seed": 0
//   }
// Paths that ship with the repository (model config, tokenizer) are relative to the config file; user data
// (weights, dataset_dir, run_dir) is relative to the working directory, like the reference's command-line flags.
//
// Data parallel: every rank draws from the same sample stream (TrainingMix of rank 0) and takes the samples of its
// micro-batches by StepInfo::global_micro_index(), so W ranks with G accumulation steps see exactly the data of one
// rank with W*G steps. The stream is counter-based: a checkpoint stores its position (and the mix's identity, which
// a resume checks) and a resumed run draws exactly the same samples.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/data_config.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/train/losses.h"
#include "m2sa/train/trainer.h"

namespace m2sa::train {

// How the model's weights start.
struct ModelInitConfig {
  std::string from = "scratch";  // "scratch" | "weights" | "merged"
  uint64_t seed = 0;             // scratch: torch seed of the initial weights (default: the run seed)
  std::filesystem::path sam;        // weights: SAM checkpoint (.pth)
  std::filesystem::path llava_dir;  // weights: LLaVA folder
  std::filesystem::path clip_dir;   // weights (required), merged (optional: else <model_dir>/vision_tower)
  std::filesystem::path model_dir;  // merged: merged HF folder

  json to_json() const;
};

struct ValidationConfig {
  std::string split = "val";          // an eval split (data/eval_datasets.h); "" or "none": no validation
  std::filesystem::path dataset_dir;  // default: data.dataset_dir
  int64_t limit = -1;                 // first N items only (-1: all)
  int64_t images_per_batch = 4;
  int64_t every_steps = 0;            // also every N optimizer steps (0: at epoch ends and the last step only)
  int64_t previews = 4;               // GT | prediction pictures of the first N items at every validation (0: none)

  bool enabled() const { return !split.empty() && split != "none"; }
  json to_json() const;
};

struct TrainingRunConfig {
  std::filesystem::path config_file;        // the file it was read from ("" when built in code)
  m2sa_model::M2SAConfig model;
  std::filesystem::path model_config_file;  // when "model" named a file (resolved)
  ModelInitConfig init;
  std::filesystem::path tokenizer;          // resolved; empty = the init source's own tokenizer
  m2sa_model::TrainMode train_mode = m2sa_model::TrainMode::kLora;
  std::string precision = "auto";
  std::string device = "auto";
  int64_t images_per_micro_batch = 2;
  bool gradient_checkpointing = true;
  data::DataConfig data;
  TrainerConfig train;
  LossWeights loss;
  ValidationConfig validation;
  std::filesystem::path run_dir;
  std::string export_model = "best";  // "best" | "last" | "none"
  uint64_t seed = 0;

  // Strict parse; `r.file()` is the config file (relative paths, messages).
  static TrainingRunConfig from_json(const JsonReader& r);
  static TrainingRunConfig read(const std::filesystem::path& path);
  // The resolved config (model inline, resolved paths): written to <run_dir>/train_config.json and hashed.
  json to_json() const;
  // Checks the invariants (from_json calls it; call it after editing fields in code). Errors name the field.
  void validate(const std::string& where = "training config") const;

  // "auto" resolved for this process: CUDA (cuda:<local_rank>) when LibTorch has it, else the CPU.
  c10::Device resolved_device(int local_rank = 0) const;
  // "auto": bf16 on CUDA, fp32 on the CPU.
  at::ScalarType resolved_dtype(const c10::Device& device) const;
};

// The model ready for training: weights initialised or loaded, trainable selection applied (LoRA added in lora
// mode), cast to dtype and moved to device, gradient checkpointing set, train() mode.
struct TrainingModel {
  m2sa_model::M2SAForCausalLM model{nullptr};
  Tokenizer tokenizer;
  std::vector<std::string> trainable;  // trainable parameter names
  std::vector<std::string> log;        // what was loaded
};
TrainingModel build_training_model(const TrainingRunConfig& config, const c10::Device& device, at::ScalarType dtype);

struct TrainingRunOptions {
  bool resume = false;                 // continue from <run_dir>/checkpoints/latest when there is one
  dist::Communicator* comm = nullptr;        // nullptr: from the torchrun environment (dist::DistEnv::from_environment)
  std::function<void(const StepReport&)> on_step;                        // every rank, after every step
  std::function<void(const std::string& stage)> checkpoint_fault_hook;  // tests (see CheckpointOptions)
  // Micro-batches a background thread keeps ready (image and mask decoding, resizing, collation), overlapping the
  // step's compute; 0 makes every batch on the training thread. The batches are the same either way, bit for bit
  // (train/batch_prefetcher.h). -1: 2 on a GPU, 0 on the CPU, where the prefetch thread competes with the step's
  // own threads for the cores (bench_train_m2sa, 2 cores: 20-28 ms less waiting for data, 300 ms more per step).
  int64_t prefetch = -1;
};

struct TrainingRunResult {
  TrainSummary summary;
  std::filesystem::path run_dir;
  std::filesystem::path model_dir;  // <run_dir>/model when exported ("" otherwise)
  std::filesystem::path report;     // <run_dir>/report.html (m2sa report), "" if it could not be written
  std::string config_hash;
  std::map<std::string, double> last_validation;
};

// Trains as configured. Rank 0 writes <run_dir>/train_config.json, metrics.jsonl, tb/ (TensorBoard), previews/,
// report.html and the checkpoints and logs;
// the other ranks stay quiet. Throws m2sa::Error naming the problem (config, data, non-finite loss with the
// step and the batch's sources, a failed collective).
TrainingRunResult run_training(const TrainingRunConfig& config, const TrainingRunOptions& options = {});

// The micro-batch of `samples` images whose first sample is `first` in the run's sample stream (what next_batch
// uses): sample indices first .. first + count - 1 of a TrainingMix. Exposed for benchmarks and tests.
std::vector<int64_t> micro_batch_sample_indices(const StepInfo& info, int64_t images_per_micro_batch);

}  // namespace m2sa::train
