#pragma once
// A tiny mask-prediction model and synthetic data that exercise the whole training stack (losses, trainer,
// checkpoints, data parallel) in seconds on a CPU. Header-only so that tests/train, tests/long and bench/ share it.
//
// Sample k (a pure function of k and the seed): an 8x8 N(0,1) image; its mask is (x[i][j] + x[i][j+1 mod 8] > 0);
// every fourth sample has no mask (like a VQA sample). The sampler draws sample indices with replacement from a
// registered std::mt19937_64, one global batch per optimizer step, identically on every rank; each rank takes its
// micro-batches by StepInfo::global_micro_index(), so W ranks x G micro-steps see the data of 1 rank x W*G.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "m2sa/nn/layers.h"
#include "m2sa/train/losses.h"
#include "m2sa/train/trainer.h"

namespace m2sa::test {

struct ToyNetImpl : torch::nn::Module {
  explicit ToyNetImpl(int64_t hidden = 64, double dropout_p = 0.0) : dropout(dropout_p) {
    frozen = register_module("frozen", nn::Conv2d(1, 1, 1));
    conv1 = register_module("conv1", nn::Conv2d(1, 8, 3, 1, 1));
    norm = register_module("norm", nn::LayerNorm2d(8));
    conv2 = register_module("conv2", nn::Conv2d(8, 1, 3, 1, 1));
    fc1 = register_module("fc1", nn::Linear(8 * 8 * 8, hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, 64));
    for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  }
  // [B, 1, 8, 8] -> mask logits [B, 8, 8]
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = at::relu(conv1(frozen(x)));
    h = norm(h);
    if (dropout > 0) h = at::dropout(h, dropout, /*train=*/true);
    at::Tensor local = conv2(h).squeeze(1);
    at::Tensor global = fc2(at::relu(fc1(h.flatten(1)))).view({-1, 8, 8});
    return local + global;
  }
  double dropout;
  nn::Conv2d frozen{nullptr}, conv1{nullptr}, conv2{nullptr};
  nn::LayerNorm2d norm{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ToyNet);

struct ToySample {
  at::Tensor image;  // [1, 8, 8]
  at::Tensor mask;   // [n, 8, 8], n in {0, 1}
};

inline ToySample toy_sample(uint64_t seed, int64_t k) {
  std::mt19937_64 g(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k) * 0xBF58476D1CE4E5B9ull + 1);
  std::normal_distribution<float> normal(0.f, 1.f);
  at::Tensor img = at::empty({1, 8, 8});
  float* p = img.data_ptr<float>();
  for (int i = 0; i < 64; ++i) p[i] = normal(g);
  ToySample s;
  s.image = img;
  if (k % 4 == 3) {
    s.mask = at::zeros({0, 8, 8});
  } else {
    at::Tensor x = img[0];
    s.mask = ((x + x.roll({-1}, {1})) > 0).to(at::kFloat).unsqueeze(0);
  }
  return s;
}

struct ToyOptions {
  int64_t steps = 6;            // optimizer steps (one epoch)
  int64_t epochs = 1;
  int64_t grad_accumulation_steps = 2;
  int64_t micro_batch = 2;      // images per micro-batch
  double lr = 1e-2;
  int64_t warmup = 2;
  double weight_decay = 0.0;
  double dropout = 0.0;
  uint64_t seed = 1234;
  int64_t checkpoint_every = 1;
  int keep_last = 2;
  double timeout_s = 300.0;
  bool validate = false;
  int64_t val_samples = 64;
  int64_t hidden = 64;
  int64_t nan_at_global_micro = -1;  // make that micro-batch's loss NaN
  std::string first_step_lr = "deepspeed-0.15.3";
  bool bf16 = false;  // bf16 model weights and activations, fp32 masters and fp32 mask losses (the CUDA recipe)
  std::function<std::vector<train::PreviewImage>(const train::StepInfo&)> previews;  // TrainTask::previews
  std::function<bool()> stop_requested;  // TrainerOptions::stop_requested
};

// The model, its sampler and the TrainTask that plugs it into the Trainer.
class ToyTask {
 public:
  explicit ToyTask(const ToyOptions& o) : o_(o), sampler_(o.seed + 17) {
    at::manual_seed(o.seed);  // same initial weights on every rank (rank 0's are broadcast anyway)
    net_ = ToyNet(o.hidden, o.dropout);
    if (o.bf16) net_->to(at::kBFloat16);
  }

  train::TrainerConfig config() const {
    train::TrainerConfig c;
    c.epochs = o_.epochs;
    c.steps_per_epoch = o_.steps;
    c.grad_accumulation_steps = o_.grad_accumulation_steps;
    c.lr = o_.lr;
    c.weight_decay = o_.weight_decay;
    c.warmup_num_steps = o_.warmup;
    c.first_step_lr = o_.first_step_lr;
    c.checkpoint_every = o_.checkpoint_every;
    c.keep_last_checkpoints = o_.keep_last;
    c.collective_timeout_s = o_.timeout_s;
    c.best_metric = "giou";
    return c;
  }

  ToyNet& net() { return net_; }
  std::mt19937_64& sampler_rng() { return sampler_; }

  train::TrainTask task(int world_size) {
    train::TrainTask t;
    t.next_batch = [this, world_size](const train::StepInfo& info) {
      // One global draw per optimizer step (identical on all ranks), taken at its first micro-batch.
      if (drawn_for_step_ != info.step) {
        const int64_t global = world_size * info.micro_steps * o_.micro_batch;
        std::uniform_int_distribution<int64_t> pick(0, 999);
        drawn_.clear();
        for (int64_t i = 0; i < global; ++i) drawn_.push_back(pick(sampler_));
        drawn_for_step_ = info.step;
        ++draws_;
      }
      const int64_t local = info.global_micro_index() - info.step * world_size * info.micro_steps;
      train::Batch b;
      std::vector<int64_t> ids(drawn_.begin() + local * o_.micro_batch,
                               drawn_.begin() + (local + 1) * o_.micro_batch);
      for (int64_t id : ids) b.sources.push_back("toy:" + std::to_string(id));
      b.samples = static_cast<int64_t>(ids.size());
      b.data = std::make_pair(ids, info.global_micro_index());
      return b;
    };
    t.forward = [this](const train::Batch& b, const train::StepInfo&) {
      const auto& [ids, gmi] = std::any_cast<const std::pair<std::vector<int64_t>, int64_t>&>(b.data);
      std::vector<at::Tensor> images, gts;
      for (int64_t id : ids) {
        ToySample s = toy_sample(o_.seed, id);
        images.push_back(s.image);
        gts.push_back(s.mask);
      }
      at::Tensor input = at::stack(images);
      if (o_.bf16) input = input.to(at::kBFloat16);
      at::Tensor logits = net_->forward(input).to(at::kFloat);  // [B, 8, 8], losses in fp32
      std::vector<at::Tensor> preds;
      for (size_t i = 0; i < ids.size(); ++i) preds.push_back(logits[i].unsqueeze(0).slice(0, 0, gts[i].size(0)));
      train::MaskLossResult m = train::mask_losses(preds, gts, 1.0, 1.0);
      at::Tensor loss = m.bce + m.dice;
      if (gmi == o_.nan_at_global_micro) loss = loss * std::numeric_limits<double>::quiet_NaN();
      train::ForwardResult r;
      r.loss = loss;
      r.parts = {{"mask_bce", m.bce}, {"mask_dice", m.dice}};
      return r;
    };
    t.previews = o_.previews;
    t.data_state = [this] { return json{{"draws", draws_}, {"drawn_for_step", drawn_for_step_}}; };
    t.restore_data_state = [this](const json& j) {
      draws_ = j.at("draws").get<int64_t>();
      drawn_for_step_ = -1;  // the next step draws afresh from the restored generator
    };
    if (o_.validate) {
      t.validate = [this](const train::StepInfo& info, dist::Communicator& comm) {
        std::map<std::string, double> sums{{"inter", 0}, {"union", 0}, {"iou_sum", 0}, {"count", 0}};
        for (int64_t k : dist::shard_indices(o_.val_samples, info.rank, info.world_size)) {
          ToySample s = toy_sample(o_.seed + 1, 100000 + k);
          if (s.mask.size(0) == 0) continue;
          at::Tensor image = s.image.unsqueeze(0);
          if (o_.bf16) image = image.to(at::kBFloat16);
          at::Tensor pred = (net_->forward(image) > 0).to(at::kFloat);
          const double inter = (pred * s.mask).sum().item<double>();
          const double uni = ((pred + s.mask) > 0).sum().item<double>();
          sums["inter"] += inter;
          sums["union"] += uni;
          sums["iou_sum"] += uni > 0 ? inter / uni : 1.0;
          sums["count"] += 1;
        }
        sums = comm.all_reduce_sum(sums);
        return std::map<std::string, double>{{"giou", sums["iou_sum"] / sums["count"]},
                                             {"ciou", sums["inter"] / sums["union"]}};
      };
    }
    return t;
  }

 private:
  ToyOptions o_;
  ToyNet net_{nullptr};
  std::mt19937_64 sampler_;
  std::vector<int64_t> drawn_;
  int64_t drawn_for_step_ = -1;
  int64_t draws_ = 0;
};

struct ToyRun {
  train::TrainSummary summary;
  NamedTensors masters;  // final trainable weights (copies of the fp32 masters)
  NamedTensors params;   // final model tensors (copies, model dtype)
  std::vector<train::StepReport> reports;
};

// Trains the toy model in `run_dir` with `comm`; `resume` continues from its latest checkpoint.
inline ToyRun run_toy(const ToyOptions& o, dist::Communicator& comm, const std::filesystem::path& run_dir,
                      bool resume = false, std::function<void(const std::string&)> fault_hook = {},
                      std::function<void(const train::StepReport&)> on_step = {}) {
  ToyTask toy(o);
  train::TrainableParams params = train::TrainableParams::from_module(*toy.net());
  train::TrainerOptions opts;
  opts.run_dir = run_dir;
  opts.resume = resume;
  opts.config_hash = "toy";
  opts.checkpoint_fault_hook = std::move(fault_hook);
  opts.stop_requested = o.stop_requested;
  ToyRun out;
  train::TrainTask task = toy.task(comm.world_size());
  task.on_step = [&](const train::StepReport& r) {
    out.reports.push_back(r);
    if (on_step) on_step(r);
  };
  train::Trainer trainer(toy.config(), params, comm, std::move(task), opts);
  trainer.register_rng("sampler", &toy.sampler_rng());
  out.summary = trainer.run();
  for (auto& [name, t] : params.named_masters()) out.masters.emplace_back(name, t.clone());
  for (size_t i = 0; i < params.size(); ++i) out.params.emplace_back(params.names()[i], params.params()[i].detach().clone());
  return out;
}

// Runs the toy until step `at_step` has logged its metrics, then stops it as a kill would (an exception out of
// on_step, before that step's checkpoint): with checkpoint_every 1 the latest checkpoint is the previous step's.
// False when the run was not stopped that way (it ended first, or failed otherwise).
inline bool run_toy_until_killed(const ToyOptions& o, dist::Communicator& comm, const std::filesystem::path& run_dir,
                                 int64_t at_step) {
  struct Killed {};
  try {
    run_toy(o, comm, run_dir, false, {}, [at_step](const train::StepReport& r) {
      if (r.step == at_step) throw Killed{};
    });
  } catch (const Killed&) {
    return true;
  }
  return false;
}

}  // namespace m2sa::test
