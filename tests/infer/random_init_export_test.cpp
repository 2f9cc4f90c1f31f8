// `m2sa export --random-init` (infer/random_init_export.h): the full-size layouts against the released key lists
// (shape-only, nothing allocated), and the tiny config written to disk, read back by the normal loaders (merged
// folder, sharded .bin, training start from SAM .pth + LLaVA folder + CLIP folder) and by torch.load.
#include "m2sa/infer/random_init_export.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/torch_checkpoint.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/train/m2sa_training.h"
#include "m2sa/train/trainable_params.h"
#include "models/model_fixture.h"
#include "test_util.h"

namespace m2sa {
namespace {

namespace fs = std::filesystem;
using Layout = std::map<std::string, std::vector<int64_t>>;

Layout layout_of(const std::vector<TensorInfo>& infos, c10::ScalarType want_dtype, const std::string& what) {
  Layout out;
  for (const TensorInfo& t : infos) {
    EXPECT_EQ(t.dtype, want_dtype) << what << ": " << t.name;
    EXPECT_TRUE(out.emplace(t.name, t.shape).second) << what << ": duplicate " << t.name;
  }
  return out;
}

TEST(RandomInitExport, FullSizeLayoutsEqualTheReleasedKeyLists) {
  const auto config = m2sa_model::read_model_config(test::repo_root() / "configs" / "m2sa-7b.json");
  const infer::RandomInitLayout l = infer::random_init_layout(config, at::kBFloat16);
  EXPECT_EQ(layout_of(l.merged, at::kBFloat16, "merged"), test::key_list("m2sa_7b_keys.json"));
  EXPECT_EQ(layout_of(l.sam, at::kFloat, "sam"), test::key_list("sam_vit_h_keys.json"));
  EXPECT_EQ(layout_of(l.clip, at::kFloat, "clip"), test::key_list("clip_vit_l14_keys.json"));
  const auto c13 = m2sa_model::read_model_config(test::repo_root() / "configs" / "m2sa-13b.json");
  EXPECT_EQ(layout_of(infer::random_init_layout(c13, at::kBFloat16).merged, at::kBFloat16, "merged 13b"),
            test::key_list("m2sa_13b_keys.json"));
}

TEST(RandomInitExport, ValuesDependOnSeedAndNameOnly) {
  const TensorInfo w{"model.layers.0.self_attn.q_proj.weight", at::kBFloat16, {8, 4}};
  const at::Tensor a = infer::random_init_tensor(w, 1);
  EXPECT_EQ(a.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(a, infer::random_init_tensor(w, 1)));
  EXPECT_FALSE(at::equal(a, infer::random_init_tensor(w, 2)));
  TensorInfo other = w;
  other.name = "model.layers.1.self_attn.q_proj.weight";
  EXPECT_FALSE(at::equal(a, infer::random_init_tensor(other, 1)));
  EXPECT_NEAR(a.to(at::kFloat).std().item<double>(), 0.02, 0.01);
  EXPECT_TRUE(at::equal(infer::random_init_tensor({"x.bias", at::kFloat, {5}}, 1), at::zeros({5})));
  EXPECT_TRUE(at::equal(infer::random_init_tensor({"model.norm.weight", at::kFloat, {5}}, 1), at::ones({5})));
}

class RandomInitTiny : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("m2sa_random_init");
    infer::RandomInitOptions o;
    o.seed = 7;
    o.tokenizer = test::repo_root() / "configs" / "tokenizer";
    o.max_shard_bytes = 20 * 1000 * 1000;  // several shards for the tiny model
    infer::write_random_init_model(config(), out(), o);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static m2sa_model::M2SAConfig config() {
    return m2sa_model::read_model_config(test::repo_root() / "configs" / "tiny.json");
  }
  static fs::path out() { return dir_->path() / "tiny-random"; }
  static test::TempDir* dir_;
};
test::TempDir* RandomInitTiny::dir_ = nullptr;

TEST_F(RandomInitTiny, WritesTheReleasedFolderLayouts) {
  for (const char* f : {"model/config.json", "model/model.safetensors.index.json", "model/tokenizer.model",
                        "model-bin/pytorch_model.bin.index.json", "model-bin/config.json", "sam_vit_h_4b8939.pth",
                        "clip-vit-large-patch14/model.safetensors", "clip-vit-large-patch14/config.json",
                        "clip-vit-large-patch14/preprocessor_config.json", "llava/model.safetensors.index.json"})
    EXPECT_TRUE(fs::exists(out() / f)) << f;
  const json index = read_json_file(out() / "model" / "model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [name, file] : index.at("weight_map").items()) shards.insert(file.get<std::string>());
  EXPECT_GE(shards.size(), 2u);
  EXPECT_TRUE(shards.count("model-00001-of-0000" + std::to_string(shards.size()) + ".safetensors"));
  // Names, shapes and dtypes of every file kind.
  const infer::RandomInitLayout l = infer::random_init_layout(config(), at::kBFloat16);
  const WeightStore merged = WeightStore::open(out() / "model"), bin = WeightStore::open(out() / "model-bin");
  const WeightStore sam = WeightStore::open(out() / "sam_vit_h_4b8939.pth");
  const WeightStore clip = WeightStore::open(out() / "clip-vit-large-patch14");
  auto expect_store = [](const WeightStore& s, const std::vector<TensorInfo>& want, const std::string& what) {
    ASSERT_EQ(s.tensors().size(), want.size()) << what;
    for (const TensorInfo& t : want) {
      ASSERT_TRUE(s.contains(t.name)) << what << ": " << t.name;
      EXPECT_EQ(s.info(t.name).shape, t.shape) << what << ": " << t.name;
      EXPECT_EQ(s.info(t.name).dtype, t.dtype) << what << ": " << t.name;
    }
  };
  expect_store(merged, l.merged, "model/");
  expect_store(bin, l.merged, "model-bin/");
  expect_store(sam, l.sam, "SAM .pth");
  expect_store(clip, l.clip, "CLIP");
  for (const TensorInfo& t : l.sam) EXPECT_EQ(t.name.find("compress_vit"), std::string::npos) << t.name;
  // Same bytes in both formats, and the documented values.
  for (const TensorInfo& t : l.merged) {
    const at::Tensor a = merged.load(t.name);
    ASSERT_TRUE(at::equal(a, bin.load(t.name))) << t.name;
    ASSERT_TRUE(at::equal(a, infer::random_init_tensor(t, 7))) << t.name;
  }
}

TEST_F(RandomInitTiny, LoadsBackWithTheNormalLoaders) {
  infer::ModelSource src;
  src.config = test::repo_root() / "configs" / "tiny.json";  // config.json alone describes SAM ViT-H sizes
  src.clip_dir = out() / "clip-vit-large-patch14";
  infer::LoadModelOptions lo;
  lo.dtype = at::kBFloat16;
  src.model_dir = out() / "model";
  const infer::LoadedModel st = infer::load_model(src, lo);
  src.model_dir = out() / "model-bin";
  const infer::LoadedModel bin = infer::load_model(src, lo);
  const auto a = module_state(*st.model), b = module_state(*bin.model);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].second.scalar_type(), at::kBFloat16) << a[i].first;
    ASSERT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
  // The training start: SAM .pth + the LLaVA folder (hard links to model/'s shards) + CLIP.
  infer::ModelSource start;
  start.config = src.config;
  start.sam = out() / "sam_vit_h_4b8939.pth";
  start.llava_dir = out() / "llava";
  start.clip_dir = src.clip_dir;
  const infer::LoadedModel s = infer::load_model(start, lo);
  const auto c = module_state(*s.model);
  ASSERT_EQ(c.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (c[i].first.find("compress_vit") != std::string::npos || c[i].first.find("text_hidden_fcs") != std::string::npos)
      continue;  // not in the start's checkpoints: initialised by the model
    ASSERT_TRUE(at::equal(a[i].second, c[i].second)) << c[i].first;
  }
}

// init.from = "weights" (issue 16): the start is built in the target dtype directly, only the parts no checkpoint
// holds are drawn, and every loaded tensor equals what the old path (a full fp32 model, loaded, then cast) gave.
TEST_F(RandomInitTiny, TrainingStartIsBuiltInTheTargetDtype) {
  const m2sa_model::M2SAConfig c = config();
  const WeightStore sam = WeightStore::open(out() / "sam_vit_h_4b8939.pth");
  const WeightStore llava = WeightStore::open(out() / "llava");
  const WeightStore clip = WeightStore::open(out() / "clip-vit-large-patch14");
  m2sa_model::M2SAForCausalLM old_way(c);  // fp32 with every initialiser, then loaded
  m2sa_model::load_training_start(*old_way, sam, llava, clip);
  old_way->to(at::kBFloat16);

  infer::ModelSource start;
  start.config = test::repo_root() / "configs" / "tiny.json";
  start.sam = out() / "sam_vit_h_4b8939.pth";
  start.llava_dir = out() / "llava";
  start.clip_dir = out() / "clip-vit-large-patch14";
  infer::LoadModelOptions lo;
  lo.dtype = at::kBFloat16;
  lo.eval = false;
  const infer::LoadedModel loaded = infer::load_model(start, lo);
  const auto a = module_state(*old_way), b = module_state(*loaded.model);
  ASSERT_EQ(a.size(), b.size());
  int drawn = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(b[i].second.scalar_type(), at::kBFloat16) << b[i].first;
    const bool is_drawn = a[i].first.find("compress_vit") != std::string::npos ||
                          a[i].first.find("text_hidden_fcs") != std::string::npos;
    if (is_drawn) {
      ++drawn;
      EXPECT_TRUE(at::isfinite(b[i].second).all().item<bool>()) << b[i].first;
      if (a[i].first.find(".weight") != std::string::npos && b[i].second.dim() > 1) {
        EXPECT_GT(b[i].second.to(at::kFloat).abs().max().item<float>(), 0.0f) << b[i].first;
      }
      continue;
    }
    ASSERT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_GE(drawn, 4 + 6);  // text_hidden_fcs 2 x (weight, bias); compress_vit 2 convs + a norm

  // The training model: frozen tensors stay bf16 (no fp32 copy), fp32 masters only for the trainable ones.
  train::TrainingRunConfig tc;
  tc.model = c;
  tc.model_config_file = start.config;
  tc.init.from = "weights";
  tc.init.sam = start.sam;
  tc.init.llava_dir = start.llava_dir;
  tc.init.clip_dir = start.clip_dir;
  tc.precision = "bf16";
  tc.device = "cpu";
  const train::TrainingModel tm = train::build_training_model(tc, c10::Device(c10::kCPU), at::kBFloat16);
  int64_t frozen = 0, trainable = 0;
  for (const auto& item : tm.model->named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) {
      trainable += item.value().numel();
    } else {
      EXPECT_EQ(item.value().scalar_type(), at::kBFloat16) << item.key();
      frozen += item.value().numel();
    }
  }
  EXPECT_GT(frozen, 0);
  EXPECT_GT(trainable, 0);
  const train::TrainableParams params = train::TrainableParams::from_module(*tm.model);
  EXPECT_EQ(params.numel(), trainable);
  int64_t master_numel = 0;
  for (const auto& [name, m] : params.named_masters()) {
    EXPECT_EQ(m.scalar_type(), at::kFloat) << name;
    master_numel += m.numel();
  }
  EXPECT_EQ(master_numel, trainable);
}

// torch.load (the reference's reader) takes the .pth and the .bin shards.
TEST_F(RandomInitTiny, TorchLoadReadsTheBinFiles) {
  const std::string script =
      "import sys, torch\n"
      "for p in sys.argv[1:]:\n"
      "    sd = torch.load(p, map_location='cpu', weights_only=True)\n"
      "    print(p, len(sd), sorted({str(v.dtype) for v in sd.values()}))\n";
  const fs::path shard = out() / "model-bin" / read_json_file(out() / "model-bin" / "pytorch_model.bin.index.json")
                                                   .at("weight_map").begin()->get<std::string>();
  const auto r = test::run_python({"-c", script, (out() / "sam_vit_h_4b8939.pth").string(), shard.string()});
  if (r.exit_code != 0 && r.output.find("No module named 'torch'") != std::string::npos)
    GTEST_SKIP() << "no torch in the test Python: " << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("['torch.float32']"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("torch.bfloat16"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace m2sa
