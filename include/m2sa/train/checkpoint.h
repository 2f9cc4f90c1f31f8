#pragma once
// Training checkpoints (M2SA.md Decisions: "safetensors of trainable weights + optimizer, schedule, sampler and
// RNG state, written atomically, resumable bit-for-bit").
//
// Layout under runs/<exp>/checkpoints/:
//   step-000123/trainable.safetensors   fp32 master weights of the trainable parameters (state_dict names)
//   step-000123/optimizer.safetensors   AdamW state ("exp_avg/<name>", "exp_avg_sq/<name>", step in metadata)
//   step-000123/state.json              step, micro-step, schedule, per-rank sampler and RNG state, config hash
//   latest                              "step-000123": the newest complete checkpoint
//   best.json                           {"dir", "step", "metric", "value"}: the best one by the validation metric
//
// Atomicity: a checkpoint is written into a hidden temp directory (every file fsync'ed), which is then renamed
// to step-NNNNNN (the commit point), and only then is `latest` replaced atomically. A crash at any point leaves
// either the old or the new checkpoint, never half of one: every step-* directory on disk is complete. Old
// checkpoints beyond the last K (and not the best) are renamed to a hidden trash name before being deleted, and
// hidden leftovers are removed by clean_leftovers() when the next run starts. Pruning after a save only looks at
// checkpoints older than the one just saved: a newer step directory (left by a run this one did not resume
// from) was not superseded and is never deleted.
//
// Resuming starts from resume_point(): `latest`, or when that pointer is missing or names no complete
// checkpoint, the newest complete step directory. Step directories without a complete one are an error, never a
// reason to start again from step 0 over a run's checkpoints and metrics.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/safetensors.h"

namespace m2sa::train {

struct CheckpointOptions {
  std::filesystem::path dir;  // runs/<exp>/checkpoints
  int keep_last = 2;          // newest step directories kept (the best one is kept in addition)
  // Called after every stage of save() ("weights", "optimizer", "state", "renamed", "latest", "best",
  // "pruned"): lets tests kill the process at exact points of a save.
  std::function<void(const std::string& stage)> fault_hook;
};

struct CheckpointData {
  int64_t step = 0;
  NamedTensors weights;    // fp32 masters
  NamedTensors optimizer;  // optimizer state tensors
  std::map<std::string, std::string> optimizer_metadata;
  json state;              // written as state.json (format/version fields are added)
};

struct BestCheckpoint {
  int64_t step = 0;
  std::string metric;
  double value = 0.0;
};

class CheckpointManager {
 public:
  explicit CheckpointManager(CheckpointOptions options);

  // Deletes hidden leftovers of interrupted saves/prunes (call once, on the writing rank, before saving).
  void clean_leftovers() const;
  // Writes a checkpoint atomically, points `latest` at it, optionally records it as the best, prunes old ones.
  // Returns its directory.
  std::filesystem::path save(const CheckpointData& data, const std::optional<BestCheckpoint>& best = std::nullopt);
  // Points best.json at an existing step directory.
  void set_best(const BestCheckpoint& best);

  std::optional<std::filesystem::path> latest() const;  // the directory `latest` names (must exist)
  // Where --resume continues: see the top of this file. nullopt when there is no step directory at all.
  std::optional<std::filesystem::path> resume_point() const;
  // Whether `dir` holds the three files of a checkpoint.
  static bool is_complete(const std::filesystem::path& dir);
  std::optional<BestCheckpoint> best() const;
  std::vector<std::filesystem::path> step_dirs() const;  // complete checkpoints, by step
  const std::filesystem::path& dir() const { return options_.dir; }

  static std::string dir_name(int64_t step);  // "step-000123"

 private:
  void hook(const std::string& stage) const {
    if (options_.fault_hook) options_.fault_hook(stage);
  }
  void prune(int64_t saved_step) const;

  CheckpointOptions options_;
};

struct LoadedCheckpoint {
  std::filesystem::path dir;
  json state;  // state.json
  std::unique_ptr<SafetensorsReader> weights;
  std::unique_ptr<SafetensorsReader> optimizer;
};

// Opens a checkpoint directory and validates that its files are there and state.json is ours.
LoadedCheckpoint load_checkpoint(const std::filesystem::path& dir);

}  // namespace m2sa::train
