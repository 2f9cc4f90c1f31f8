// `m2sa train` with the batch prefetcher on and off (TrainingRunOptions::prefetch): a short tiny-config run makes
// exactly the same steps, bit for bit (losses, their parts, gradient norms, final weights), since the prefetch
// thread only moves the making of each micro-batch, never the sample order.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "m2sa/core/runtime.h"
#include "m2sa/data/synth.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/train/checkpoint.h"
#include "m2sa/train/m2sa_training.h"
#include "test_util.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;

struct RunLog {
  std::vector<StepReport> steps;
  std::map<std::string, at::Tensor> weights;
};

RunLog run_tiny(const fs::path& data, const fs::path& run_dir, int64_t prefetch) {
  TrainingRunConfig c = TrainingRunConfig::read(test::repo_root() / "configs" / "train" / "tiny-synth.json");
  c.data.dataset_dir = data;
  c.run_dir = run_dir;
  c.images_per_micro_batch = 2;
  c.train.epochs = 1;
  c.train.steps_per_epoch = 2;
  c.train.grad_accumulation_steps = 2;
  c.train.warmup_num_steps = 1;
  c.validation.split = "none";
  c.export_model = "none";
  c.device = "cpu";
  c.validate("prefetch test");
  RunLog log;
  TrainingRunOptions o;
  o.prefetch = prefetch;
  o.on_step = [&](const StepReport& r) { log.steps.push_back(r); };
  run_training(c, o);
  CheckpointOptions co;
  co.dir = run_dir / "checkpoints";
  const auto latest = CheckpointManager(co).latest();
  EXPECT_TRUE(latest.has_value()) << run_dir;
  if (latest) {
    const SafetensorsReader reader(*latest / "trainable.safetensors");
    for (const auto& info : reader.tensors()) log.weights.emplace(info.name, reader.load(info.name).clone());
  }
  return log;
}

TEST(TrainM2SAPrefetch, RunsWithAndWithoutPrefetchAreBitIdentical) {
  init_runtime();
  test::TempDir tmp("m2sa_prefetch");
  data::SynthOptions so;
  so.train_images = 12;
  so.val_images = 1;
  so.test_images = 1;
  so.min_size = 64;
  so.max_size = 128;
  data::write_synthetic_dataset(tmp / "data", so);
  const RunLog off = run_tiny(tmp / "data", tmp / "off", 0);
  const RunLog on = run_tiny(tmp / "data", tmp / "on", 3);
  ASSERT_EQ(off.steps.size(), 2u);
  ASSERT_EQ(on.steps.size(), 2u);
  for (std::size_t s = 0; s < 2; ++s) {
    EXPECT_EQ(on.steps[s].loss, off.steps[s].loss) << "step " << s + 1;
    EXPECT_EQ(on.steps[s].grad_norm, off.steps[s].grad_norm) << "step " << s + 1;
    EXPECT_EQ(on.steps[s].parts, off.steps[s].parts) << "step " << s + 1;
    EXPECT_EQ(on.steps[s].samples, off.steps[s].samples);
  }
  ASSERT_EQ(on.weights.size(), off.weights.size());
  ASSERT_FALSE(on.weights.empty());
  for (const auto& [name, w] : off.weights) {
    ASSERT_TRUE(on.weights.count(name)) << name;
    EXPECT_TRUE(at::equal(on.weights.at(name), w)) << name;
  }
}

}  // namespace
}  // namespace m2sa::train
