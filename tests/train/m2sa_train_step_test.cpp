// One training step of the tiny M2SA model (configs/tiny.json) on test::device(): what `m2sa train` does per step
// (the LoRA selection, train::micro_batch_objective, backward, fp32 masters, AdamW), on seeded random weights and a
// hand-built batch of two images and three conversations with [SEG] answers. Core tier (no data layer), so
// scripts/gpu-check.sh runs it on CUDA, in fp32 and in bf16 with fp32 masters; here it runs on the CPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/train/adamw.h"
#include "m2sa/train/m2sa_objective.h"
#include "m2sa/train/trainable_params.h"
#include "test_util.h"

namespace m2sa::train {
namespace {

using m2sa_model::M2SABatch;
using m2sa_model::M2SAConfig;

// Two images at the SAM input size (no padding), conversations 2 + 1, each answer naming targets with [SEG].
struct StepBatch {
  M2SABatch inputs;
  std::vector<at::Tensor> gt_masks;
};

StepBatch make_batch(const M2SAConfig& c, const c10::Device& device, at::ScalarType dtype) {
  at::manual_seed(7);
  const int64_t s = c.sam.image_encoder.img_size, cs = c.clip.image_size;
  const int64_t seg = c.m2sa.seg_token_id, im_start = c.m2sa.im_start_token_id, im_end = c.m2sa.im_end_token_id;
  StepBatch b;
  M2SABatch& x = b.inputs;
  x.images.sam_images = at::randn({2, 3, s, s}).to(device, dtype);
  x.images.clip_images = at::randn({2, 3, cs, cs}).to(device, dtype);
  x.images.resized_hw = {{s, s}, {s, s}};
  x.images.original_hw = {{s, s}, {s, s}};
  x.offset = {0, 2, 3};
  // "<s> USER: <im_start><image><im_end> q ASSISTANT:" then the answer; labels on the answer only.
  const std::vector<int64_t> prompt{1, 3148, 1001, 29901, im_start, -200, im_end, 1724, 338, 29973, 319, 29901};
  const std::vector<std::vector<int64_t>> answers{{739, 338, seg, 2}, {450, seg, 322, seg, 2}, {seg, 2}};
  const int64_t len = static_cast<int64_t>(prompt.size()) + 5;
  x.input_ids = at::zeros({3, len}, at::kLong);
  x.labels = at::full({3, len}, -100, at::kLong);
  x.attention_mask = at::zeros({3, len}, at::kBool);
  std::vector<int64_t> segs_per_image{0, 0};
  for (int64_t r = 0; r < 3; ++r) {
    std::vector<int64_t> row = prompt;
    row.insert(row.end(), answers[r].begin(), answers[r].end());
    for (int64_t i = 0; i < static_cast<int64_t>(row.size()); ++i) {
      x.input_ids[r][i] = row[i];
      x.attention_mask[r][i] = true;
      if (i >= static_cast<int64_t>(prompt.size())) x.labels[r][i] = row[i];
      if (row[i] == seg) ++segs_per_image[r < 2 ? 0 : 1];
    }
  }
  x.input_ids = x.input_ids.to(device);
  x.labels = x.labels.to(device);
  x.attention_mask = x.attention_mask.to(device);
  for (int64_t i = 0; i < 2; ++i) b.gt_masks.push_back((at::rand({segs_per_image[i], s, s}) > 0.7).to(at::kFloat));
  return b;
}

double step_loss(const m2sa_model::M2SAForCausalLMImpl& model, const StepBatch& b) {
  return micro_batch_objective(model, b.inputs, b.gt_masks, LossWeights{}, test::device()).losses.loss.item<double>();
}

void one_step(at::ScalarType dtype, double lr) {
  const c10::Device device = test::device();
  at::manual_seed(0);
  const M2SAConfig config = m2sa_model::read_model_config(test::repo_root() / "configs" / "tiny.json");
  m2sa_model::M2SAForCausalLM model(config);
  m2sa_model::set_trainable(*model, m2sa_model::TrainMode::kLora);
  model->to(device, dtype);
  model->llm->set_gradient_checkpointing(true);
  // eval(): LoRA dropout off, so that the losses before and after the step are of the same function.
  model->eval();
  TrainableParams params = TrainableParams::from_module(*model);
  ASSERT_GT(params.size(), 0u);
  EXPECT_EQ(params.has_separate_masters(), dtype != at::kFloat) << "fp32 masters for reduced-precision weights";
  AdamWConfig ac;
  ac.lr = lr;
  AdamW optimizer(params.names(), params.masters(), ac);
  const std::vector<at::Tensor> before = [&] {
    std::vector<at::Tensor> v;
    for (const at::Tensor& m : params.masters()) v.push_back(m.detach().clone());
    return v;
  }();

  const StepBatch batch = make_batch(config, device, dtype);
  const MicroBatchResult r = micro_batch_objective(*model, batch.inputs, batch.gt_masks, LossWeights{}, device);
  const double loss0 = r.losses.loss.item<double>();
  ASSERT_TRUE(std::isfinite(loss0)) << loss0;
  ASSERT_EQ(r.output.pred_masks.size(), 2u);
  EXPECT_EQ(r.output.pred_masks[0].size(0), batch.gt_masks[0].size(0));
  EXPECT_EQ(r.output.pred_masks[0].device().type(), device.type());
  r.losses.loss.backward();
  params.accumulate_grads();
  const double norm = params.clip_grad_norm(1.0);
  ASSERT_TRUE(std::isfinite(norm) && norm > 0) << "grad norm " << norm;
  optimizer.step(lr, params.grads());
  params.copy_masters_to_params();
  params.zero_grads();

  double moved = 0;
  for (size_t i = 0; i < before.size(); ++i)
    moved = std::max(moved, test::max_abs_diff(params.masters()[i], before[i]));
  EXPECT_GT(moved, 0.5 * lr) << "AdamW moved no weight";
  // The loss on the same batch goes down after one step.
  const double loss1 = step_loss(*model, batch);
  std::cout << "  " << test::device() << " " << c10::toString(dtype) << ": loss " << loss0 << " -> " << loss1
            << " after one step (grad norm " << norm << ")\n";
  EXPECT_LT(loss1, loss0);
}

TEST(M2SATrainStep, TinyModelFp32) { one_step(at::kFloat, 1e-3); }

// bf16 weights with fp32 masters, as `precision: "bf16"` trains on CUDA.
TEST(M2SATrainStep, TinyModelBf16WithFp32Masters) { one_step(at::kBFloat16, 1e-3); }

}  // namespace
}  // namespace m2sa::train
