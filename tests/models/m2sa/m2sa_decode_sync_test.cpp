// Issue 15: a decoding step reads nothing back from the device while every row decodes (batch 1 included). The
// ATen ops that make the host wait for a GPU are counted with a RecordFunction observer, whatever code calls them:
// item() (_local_scalar_dense), device-changing to(), ops whose output size depends on values (nonzero, ...). Two
// generations that differ only in their number of steady-state steps must count the same.
#include <ATen/record_function.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <string>

#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::test {
namespace {

std::atomic<int64_t> g_sync_ops{0};

bool may_sync(const at::RecordFunction& fn) {
  static const std::set<std::string> always = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select",
                                               "aten::_unique2", "aten::unique_consecutive", "aten::is_nonzero",
                                               "aten::equal"};
  const std::string name = fn.name();
  if (always.count(name) > 0) return true;
  if (name != "aten::to") return false;
  const std::string overload = fn.overload_name();
  if (overload == "device" || overload == "other") return true;
  // to.dtype_layout(self, dtype, layout, device, pin_memory, ...): only when it names a device.
  return overload == "dtype_layout" && fn.num_inputs() > 3 && !fn.inputs()[3].isNone();
}

std::unique_ptr<at::ObserverContext> count_sync_op(const at::RecordFunction& fn) {
  if (may_sync(fn)) ++g_sync_ops;
  return nullptr;
}

// Counts the ops above run by this thread while it lives.
class SyncOpCounter {
 public:
  SyncOpCounter() : handle_(at::addThreadLocalCallback(at::RecordFunctionCallback(&count_sync_op).needsInputs(true))) {
    g_sync_ops = 0;
  }
  ~SyncOpCounter() { at::removeCallback(handle_); }
  int64_t count() const { return g_sync_ops; }

 private:
  at::CallbackHandle handle_;
};

struct Run {
  int64_t sync_ops = 0, steps = 0;
  std::vector<std::vector<int64_t>> outputs;
};

Run generate_counted(const m2sa_model::M2SAForCausalLM& model, const m2sa_model::GenerationRequest& req,
                     int64_t max_new_tokens, int64_t eos) {
  m2sa_model::GenerationOptions go;
  go.max_new_tokens = max_new_tokens;
  go.eos_token_id = eos;
  go.compute_masks = false;
  Run run;
  SyncOpCounter counter;
  const m2sa_model::GenerationOutput out = model->generate(req, go);
  run.sync_ops = counter.count();
  run.steps = out.timings.decode_steps;
  for (const auto& r : out.results) run.outputs.push_back(r.output_ids);
  return run;
}

void expect_no_sync_per_step(int64_t num_prompts) {
  auto model = tiny_model();
  const m2sa_model::M2SAConfig& c = model->config();
  m2sa_model::GenerationRequest req;
  req.images = random_images(c, {{45, 61}});
  for (int64_t k = 0; k < num_prompts; ++k) req.prompts.push_back({prompt_ids(k), 0});
  // An EOS id that none of the answers contains, so every row decodes to max_new_tokens.
  const Run probe = generate_counted(model, req, 12, /*eos=*/2);
  int64_t eos = c.vocab_size() - 1;
  auto used = [&](int64_t id) {
    for (const auto& o : probe.outputs)
      if (std::find(o.begin(), o.end(), id) != o.end()) return true;
    return false;
  };
  while (used(eos)) --eos;

  const Run short_run = generate_counted(model, req, 4, eos);
  const Run long_run = generate_counted(model, req, 12, eos);
  for (const auto& o : long_run.outputs) ASSERT_EQ(o.size(), 12u);
  ASSERT_GT(long_run.steps, short_run.steps + 5) << "the runs must differ in decoding steps";
  EXPECT_GT(short_run.sync_ops, 0) << "prefill checks the prompt ids on the host; the counter must see that";
  EXPECT_EQ(long_run.sync_ops, short_run.sync_ops)
      << (long_run.sync_ops - short_run.sync_ops) << " ops that may sync in " << (long_run.steps - short_run.steps)
      << " more decoding steps of " << num_prompts << " prompt(s)";
  for (std::size_t k = 0; k < long_run.outputs.size(); ++k)
    EXPECT_TRUE(std::equal(short_run.outputs[k].begin(), short_run.outputs[k].end(), long_run.outputs[k].begin()));
}

TEST(M2SADecodeSync, CounterSeesASync) {
  SyncOpCounter counter;
  (void)at::ones({1}).item<double>();
  (void)at::ones({2}).to(c10::Device(at::kCPU));
  EXPECT_EQ(counter.count(), 2);
}

TEST(M2SADecodeSync, NoHostSyncPerStepAtBatchOne) { expect_no_sync_per_step(1); }

TEST(M2SADecodeSync, NoHostSyncPerStepWhileEveryRowDecodes) { expect_no_sync_per_step(3); }

}  // namespace
}  // namespace m2sa::test
