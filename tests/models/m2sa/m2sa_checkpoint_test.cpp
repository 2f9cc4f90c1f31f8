// Checkpoints of the tiny M2SA: our export (merged HF layout) reloads with identical outputs, a PEFT state dict
// loads to the same model as its merged export, the training start (SAM + LLaVA + CLIP) resizes the vocabulary,
// trained weights go over a model, and bad checkpoints give clear errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/nn/lora.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::m2sa_model {
namespace {

namespace fs = std::filesystem;
using infer::ModelSource;

using test::kSeg;

using test::error_of;

fs::path tokenizer_model() { return test::repo_root() / "configs" / "tokenizer" / "tokenizer.model"; }
Tokenizer tiny_tokenizer() { return Tokenizer::load(tokenizer_model()); }

M2SABatch fixed_batch(const M2SAConfig& c) {
  M2SABatch b;
  b.images = test::random_images(c, {{40, 60}, {50, 35}}, 7);
  const std::vector<int64_t> a0{739, 338, kSeg, 322, kSeg, 29889, 2}, a1{kSeg, 29889, 2};
  test::Rows t = test::pad_rows({test::concat(test::prompt_ids(0), a0), test::concat(test::prompt_ids(3), a1)},
                                {static_cast<int64_t>(test::prompt_ids(0).size()),
                                 static_cast<int64_t>(test::prompt_ids(3).size())});
  b.input_ids = t.ids;
  b.labels = t.labels;
  b.attention_mask = t.mask;
  b.offset = {0, 1, 2};
  return b;
}

struct Outputs {
  at::Tensor logits;
  std::vector<at::Tensor> masks;
};

Outputs run(const M2SAForCausalLM& model) {
  const ForwardOutput out = model->forward(fixed_batch(model->config()));
  return {out.lm_logits.to(at::kFloat), out.pred_masks};
}

void expect_same_outputs(const Outputs& a, const Outputs& b, double atol, const std::string& what) {
  EXPECT_TRUE(test::AllClose(a.logits, b.logits, atol, what + ": supervised logits"));
  ASSERT_EQ(a.masks.size(), b.masks.size());
  for (size_t i = 0; i < a.masks.size(); ++i)
    EXPECT_TRUE(test::AllClose(a.masks[i], b.masks[i], atol, what + ": masks of image " + std::to_string(i)));
}

// Exact reloads compare with the unfused model that was exported; the inference default fuses q/k/v and gate/up
// (one matmul each), which changes rounding, not values (LlamaParity.FusedProjectionsFullAndIncremental).
infer::LoadedModel load_unfused(const ModelSource& s, infer::LoadModelOptions o = {}) {
  o.fuse_projections = false;
  return infer::load_model(s, o);
}

infer::ExportOptions fp32_export() {
  infer::ExportOptions o;
  o.dtype = at::kFloat;
  return o;
}

void randomize_lora(M2SAForCausalLMImpl& model) {
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters())
    if (item.key().find("lora_B") != std::string::npos) item.value().normal_(0.0, 0.05);
}

TEST(M2SACheckpoint, ExportReloadsWithIdenticalOutputs) {
  test::TempDir tmp;
  auto model = test::tiny_model(11);
  const Outputs ref = run(model);
  infer::ExportOptions eo = fp32_export();
  eo.max_shard_bytes = 20 * 1000 * 1000;  // several shards
  infer::export_model(*model, tiny_tokenizer(), tmp / "m", eo);

  const fs::path dir = tmp / "m";
  for (const char* f : {"config.json", "m2sa_config.json", "model.safetensors.index.json", "tokenizer.model",
                        "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json",
                        "vision_tower/config.json", "vision_tower/model.safetensors.index.json",
                        "vision_tower/preprocessor_config.json"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  const json index = read_json_file(dir / "model.safetensors.index.json");
  std::set<std::string> shards;
  for (auto it = index.at("weight_map").begin(); it != index.at("weight_map").end(); ++it) shards.insert(it.value());
  EXPECT_GT(shards.size(), 1u);
  EXPECT_TRUE(shards.count("model-00001-of-0000" + std::to_string(shards.size()) + ".safetensors"));
  const NamedTensors merged = merged_hf_state(*model);
  EXPECT_EQ(index.at("weight_map").size(), merged.size());
  for (const auto& [name, t] : merged) {
    EXPECT_TRUE(index.at("weight_map").contains(name)) << name;
    EXPECT_EQ(name.find("vision_tower"), std::string::npos) << name;
  }
  const json cfg = read_json_file(dir / "config.json");
  EXPECT_EQ(cfg.at("model_type"), "llava");
  EXPECT_EQ(cfg.at("out_dim"), 64);
  EXPECT_EQ(cfg.at("train_mask_decoder"), true);
  EXPECT_EQ(cfg.at("torch_dtype"), "float32");
  EXPECT_EQ(cfg.at("vocab_size"), 32003);
  const json added = read_json_file(dir / "added_tokens.json");
  EXPECT_EQ(added.at("[SEG]"), 32000);

  ModelSource src;
  src.model_dir = dir;
  infer::LoadedModel loaded = load_unfused(src);
  EXPECT_EQ(loaded.tokenizer.seg_token_id(), 32000);
  EXPECT_EQ(loaded.log.size(), 2u);
  expect_same_outputs(run(loaded.model), ref, 0.0, "reloaded export");
  // A fused load (the default on a GPU) fuses every layer's projections and says so.
  infer::LoadModelOptions fuse;
  fuse.fuse_projections = true;
  const infer::LoadedModel fused = infer::load_model(src, fuse);
  ASSERT_EQ(fused.log.size(), 3u);
  EXPECT_NE(fused.log.back().find("fused projections: 8 of 8"), std::string::npos) << fused.log.back();
  expect_same_outputs(run(fused.model), ref, 1e-5, "reloaded export, fused projections");

  // A second export into the same directory needs --overwrite; an unrelated directory is never replaced.
  EXPECT_NE(error_of([&] { infer::export_model(*model, tiny_tokenizer(), dir, fp32_export()); })
                .find("exists and is not empty"),
            std::string::npos);
  fs::create_directories(tmp / "other");
  test::write_bytes(tmp / "other" / "notes.txt", "keep me");
  infer::ExportOptions ow = fp32_export();
  ow.overwrite = true;
  EXPECT_NE(error_of([&] { infer::export_model(*model, tiny_tokenizer(), tmp / "other", ow); })
                .find("does not look like a model directory"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(tmp / "other" / "notes.txt"));
  infer::export_model(*model, tiny_tokenizer(), dir, ow);
  // No temporary directories left behind.
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".m.tmp"), std::string::npos) << e.path();
}

TEST(M2SACheckpoint, Bfloat16ExportLoadsAsBfloat16) {
  test::TempDir tmp;
  auto model = test::tiny_model(12);
  infer::export_model(*model, tiny_tokenizer(), tmp / "m");  // default: bf16, as the reference merge script
  const WeightStore store = WeightStore::open(tmp / "m");
  EXPECT_EQ(store.info("model.embed_tokens.weight").dtype, at::kBFloat16);
  EXPECT_EQ(read_json_file(tmp / "m" / "config.json").at("torch_dtype"), "bfloat16");
  ModelSource src;
  src.model_dir = tmp / "m";
  infer::LoadModelOptions lo;
  lo.dtype = at::kBFloat16;
  infer::LoadedModel loaded = load_unfused(src, lo);
  EXPECT_EQ(loaded.model->dtype(), at::kBFloat16);
  model->to(at::kBFloat16);
  expect_same_outputs(run(loaded.model), run(model), 0.0, "bf16 export");
}

TEST(M2SACheckpoint, PeftLoadEqualsMergedLoad) {
  test::TempDir tmp;
  auto model = test::tiny_model(13);
  set_trainable(*model, TrainMode::kLora);
  randomize_lora(*model);
  model->eval();
  const Outputs with_adapters = run(model);
  write_safetensors(tmp / "peft.safetensors", nn::peft_state(*model));
  infer::export_model(*model, tiny_tokenizer(), tmp / "merged", fp32_export());

  ModelSource peft;
  peft.peft = tmp / "peft.safetensors";
  peft.config = tmp / "merged" / "m2sa_config.json";
  peft.tokenizer = tmp / "merged";
  const infer::LoadedModel a = infer::load_model(peft);
  ModelSource merged;
  merged.model_dir = tmp / "merged";
  const infer::LoadedModel b = infer::load_model(merged);
  const Outputs oa = run(a.model), ob = run(b.model);
  expect_same_outputs(oa, ob, 0.0, "PEFT vs merged");
  expect_same_outputs(oa, with_adapters, 2e-5, "merged vs live adapters");
  // The PEFT file must match the model: a foreign key is named.
  NamedTensors bad = nn::peft_state(*model);
  bad.emplace_back("base_model.model.model.layers.0.self_attn.k_proj.lora_A.default.weight", at::zeros({8, 256}));
  write_safetensors(tmp / "bad_peft.safetensors", bad);
  peft.peft = tmp / "bad_peft.safetensors";
  const std::string e = error_of([&] { infer::load_model(peft); });
  EXPECT_NE(e.find("unexpected in the checkpoint"), std::string::npos) << e;
  EXPECT_NE(e.find("k_proj.lora_A.default.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("bad_peft.safetensors"), std::string::npos) << e;
}

// Rewrites the weights of an exported directory from `state` (same config, tokenizer and CLIP).
void rewrite_weights(const fs::path& dir, const NamedTensors& state) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
      fs::remove(e.path());
  write_safetensors_shards(dir, state, at::kFloat, int64_t{1} << 40);
}

TEST(M2SACheckpoint, BadCheckpointsGiveClearErrors) {
  test::TempDir tmp;
  auto model = test::tiny_model(14);
  const fs::path dir = tmp / "m";
  infer::export_model(*model, tiny_tokenizer(), dir, fp32_export());
  ModelSource src;
  src.model_dir = dir;

  // A missing tensor.
  NamedTensors state = merged_hf_state(*model);
  NamedTensors missing;
  for (const auto& [n, t] : state)
    if (n != "model.text_hidden_fcs.0.2.bias") missing.emplace_back(n, t);
  rewrite_weights(dir, missing);
  std::string e = error_of([&] { infer::load_model(src); });
  EXPECT_NE(e.find("missing from the checkpoint"), std::string::npos) << e;
  EXPECT_NE(e.find("model.text_hidden_fcs.0.2.bias"), std::string::npos) << e;
  EXPECT_NE(e.find(dir.string()), std::string::npos) << e;

  // A mis-shaped tensor.
  NamedTensors misshaped;
  for (const auto& [n, t] : state) misshaped.emplace_back(n, n == "model.mm_projector.bias" ? at::zeros({7}) : t);
  rewrite_weights(dir, misshaped);
  e = error_of([&] { infer::load_model(src); });
  EXPECT_NE(e.find("shape mismatches"), std::string::npos) << e;
  EXPECT_NE(e.find("model.mm_projector.bias: checkpoint [7] vs model [256]"), std::string::npos) << e;
  rewrite_weights(dir, state);
  EXPECT_NO_THROW(infer::load_model(src));

  // A tokenizer whose [SEG] is not the model's 32000 (LISA #55).
  Tokenizer wrong = Tokenizer::load_plain(tokenizer_model());
  wrong.add_tokens({"<im_start>", "<im_end>"}, /*special=*/true);
  wrong.add_tokens({"[SEG]"}, /*special=*/false);
  wrong.save(dir);
  e = error_of([&] { infer::load_model(src); });
  EXPECT_NE(e.find("\"[SEG]\" encodes to 32002 but the model expects id 32000"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { infer::export_model(*model, wrong, tmp / "x", fp32_export()); }).find("[SEG]"),
            std::string::npos);
  tiny_tokenizer().save(dir);

  // Without the CLIP tower (a reference merged checkpoint): the CLIP folder must be given.
  fs::remove_all(dir / "vision_tower");
  e = error_of([&] { infer::load_model(src); });
  EXPECT_NE(e.find("does not contain the CLIP vision tower"), std::string::npos) << e;
  // Without m2sa_config.json the sizes come from config.json + CLIP: ViT-H SAM does not fit these tiny weights.
  fs::remove(dir / "m2sa_config.json");
  e = error_of([&] { infer::load_model(src); });
  EXPECT_NE(e.find("does not contain the CLIP vision tower"), std::string::npos) << e;
  // Not a model directory / no source.
  fs::create_directories(tmp / "empty");
  src.model_dir = tmp / "empty";
  EXPECT_NE(error_of([&] { infer::load_model(src); }).find("neither m2sa_config.json nor config.json"), std::string::npos);
  EXPECT_NE(error_of([&] { infer::load_model(ModelSource{}); }).find("give exactly one weight source"), std::string::npos);
}

TEST(M2SACheckpoint, HfConfigWithClipFolderRebuildsTheSizes) {
  // config.json (+ the CLIP folder's config.json) alone determine LLaMA / CLIP sizes; SAM is ViT-H (spec 1.7).
  test::TempDir tmp;
  auto model = test::tiny_model(15);
  infer::export_model(*model, tiny_tokenizer(), tmp / "m", fp32_export());
  const M2SAConfig c = model_dir_config(tmp / "m", "");  // m2sa_config.json present
  EXPECT_EQ(c.to_json(), model->config().to_json());
  fs::remove(tmp / "m" / "m2sa_config.json");
  // The reference builds SAM ViT-H (prompt width 256), so a config.json with out_dim 64 is refused clearly...
  const std::string e = error_of([&] { model_dir_config(tmp / "m", tmp / "m" / "vision_tower"); });
  EXPECT_NE(e.find("config.json: m2sa.out_dim 64 must equal the SAM prompt embedding width"), std::string::npos) << e;
  // ... and with out_dim 256 the LLaMA and CLIP sizes come from the two config.json files.
  json cfg = read_json_file(tmp / "m" / "config.json");
  cfg["out_dim"] = 256;
  write_json_file(tmp / "m" / "config.json", cfg);
  const M2SAConfig hf = model_dir_config(tmp / "m", tmp / "m" / "vision_tower");
  EXPECT_EQ(hf.llama.to_json(), model->config().llama.to_json());
  EXPECT_EQ(hf.clip.to_json(), model->config().clip.to_json());
  EXPECT_EQ(hf.sam.to_json(), sam::SamConfig::m2sa_vit_h().to_json());
  EXPECT_EQ(hf.m2sa.out_dim, 256);
  EXPECT_NE(error_of([&] { model_dir_config(tmp / "m", ""); }).find("does not contain the CLIP vision tower"),
            std::string::npos);
}

TEST(M2SACheckpoint, TrainingStartFromSamLlavaAndClip) {
  test::TempDir tmp;
  auto src = test::tiny_model(16);
  // SAM checkpoint: the Sam state_dict names, without M2SA's compress_vit (stock SAM).
  NamedTensors sam_state;
  for (const auto& [n, t] : module_state(*src->visual_model))
    if (n.find("compress_vit") == std::string::npos) sam_state.emplace_back(n, t);
  write_safetensors(tmp / "sam_tiny.safetensors", sam_state);
  // LLaVA folder: LLaMA with LLaMA's 32000-row vocabulary, mm_projector, the plain tokenizer.
  fs::create_directories(tmp / "llava");
  NamedTensors llava;
  for (const auto& [n, t] : merged_hf_state(*src)) {
    if (n.rfind("model.visual_model.", 0) == 0 || n.rfind("model.text_hidden_fcs.", 0) == 0) continue;
    llava.emplace_back(n, (n == "model.embed_tokens.weight" || n == "lm_head.weight") ? t.slice(0, 0, 32000) : t);
  }
  write_safetensors(tmp / "llava" / "model.safetensors", llava);
  fs::copy_file(tokenizer_model(), tmp / "llava" / "tokenizer.model");
  // CLIP folder.
  fs::create_directories(tmp / "clip");
  write_safetensors(tmp / "clip" / "model.safetensors", clip_state(*src));
  write_json_file(tmp / "clip" / "config.json", clip_hf_config_json(src->config().clip, at::kFloat));

  ModelSource s;
  s.sam = tmp / "sam_tiny.safetensors";
  s.llava_dir = tmp / "llava";
  s.clip_dir = tmp / "clip";
  s.config = test::repo_root() / "configs" / "tiny.json";
  at::manual_seed(99);
  const infer::LoadedModel loaded = infer::load_model(s);
  const auto& m = loaded.model;
  EXPECT_EQ(loaded.tokenizer.seg_token_id(), 32000);  // added to the LLaVA tokenizer, as train_ds.py does
  const at::Tensor e0 = src->llm->model->embed_tokens->weight, e1 = m->llm->model->embed_tokens->weight;
  EXPECT_TRUE(e1.slice(0, 0, 32000).equal(e0.slice(0, 0, 32000)));
  const at::Tensor added = e1.slice(0, 32000);
  EXPECT_FALSE(added.equal(e0.slice(0, 32000)));
  EXPECT_LT(added.std().item<double>(), 0.05);  // N(0, 0.02)
  EXPECT_TRUE(m->llm->lm_head->weight.slice(0, 0, 32000).equal(src->llm->lm_head->weight.slice(0, 0, 32000)));
  EXPECT_TRUE(m->visual_model->mask_decoder->iou_token->weight.equal(src->visual_model->mask_decoder->iou_token->weight));
  EXPECT_FALSE(m->visual_model->mask_decoder->compress_conv1->weight.equal(
      src->visual_model->mask_decoder->compress_conv1->weight));  // not in stock SAM: keeps its init
  EXPECT_TRUE(m->mm_projector->weight.equal(src->mm_projector->weight));
  EXPECT_TRUE(m->vision_tower->vision_tower->vision_model->post_layernorm->weight.equal(
      src->vision_tower->vision_tower->vision_model->post_layernorm->weight));
  EXPECT_TRUE(m->llm->model->layers[1]->self_attn->q_proj->weight.equal(src->llm->model->layers[1]->self_attn->q_proj->weight));

  // A LLaVA vocabulary larger than the model's is refused before anything is loaded.
  NamedTensors big = llava;
  for (auto& [n, t] : big)
    if (n == "lm_head.weight" || n == "model.embed_tokens.weight") t = at::zeros({32005, 256});
  write_safetensors(tmp / "llava" / "model.safetensors", big);
  const std::string e = error_of([&] { infer::load_model(s); });
  EXPECT_NE(e.find("is [32005, 256], expected [n, 256] with n <= vocab_size 32003"), std::string::npos) << e;
}

TEST(M2SACheckpoint, TrainedWeightsGoOverTheModel) {
  test::TempDir tmp;
  auto base = test::tiny_model(17);
  infer::export_model(*base, tiny_tokenizer(), tmp / "base", fp32_export());
  // "Training": LoRA + changes to trainable weights; the trainer saves the trainable parameters by state name.
  auto trained = test::tiny_model(17);
  const auto names = set_trainable(*trained, TrainMode::kLora);
  randomize_lora(*trained);
  {
    at::NoGradGuard no_grad;
    trained->text_hidden_fcs->fc2->bias.add_(0.5);
  }
  trained->eval();
  NamedTensors saved;
  for (const auto& [n, t] : module_state(*trained))
    if (std::find(names.begin(), names.end(), n) != names.end()) saved.emplace_back(n, t);
  write_safetensors(tmp / "trainable.safetensors", saved);
  ModelSource s;
  s.model_dir = tmp / "base";
  s.trainable = tmp / "trainable.safetensors";
  const infer::LoadedModel loaded = infer::load_model(s);
  expect_same_outputs(run(loaded.model), run(trained), 2e-5, "base + trained weights");
  saved.emplace_back("model.not_a_module.weight", at::zeros({2}));
  write_safetensors(tmp / "trainable.safetensors", saved);
  const std::string e = error_of([&] { infer::load_model(s); });
  EXPECT_NE(e.find("model.not_a_module.weight"), std::string::npos) << e;
}

TEST(M2SACheckpoint, ExportCli) {
  test::TempDir tmp;
  auto model = test::tiny_model(18);
  infer::export_model(*model, tiny_tokenizer(), tmp / "m", fp32_export());
  auto r = test::run_cli({"export", "--model", (tmp / "m").string(), "--out", (tmp / "m2").string(), "--dtype", "fp32",
                          "--max-shard-size-mb", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ModelSource s;
  s.model_dir = tmp / "m2";
  expect_same_outputs(run(load_unfused(s).model), run(model), 0.0, "CLI export");  // exported from a fused load
  r = test::run_cli({"export", "--out", (tmp / "m3").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("give exactly one weight source"), std::string::npos) << r.output;
  r = test::run_cli({"export", "--model", (tmp / "nope").string(), "--out", (tmp / "m3").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model directory not found"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "m3"));
}

}  // namespace
}  // namespace m2sa::m2sa_model
