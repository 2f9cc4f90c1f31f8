// The whole M2SA composition against the m2sa_tiny fixture (tests/fixtures/reference/README.md, "Whole-model
// fixture"): jdg900/MMR model/M2SA.py model_forward, both branches, on tiny random weights. This pins the glue that
// the per-module fixtures do not: the image splice, the [SEG] position rule, text_hidden_fcs, the prompt encoder's
// text path, compress_vit on the early tap, postprocess_masks and the CE + BCE + DICE losses.
//
// Everything goes through production code: the model is built from the sidecar config and loaded by
// infer::load_merged_model from a merged folder and an HF CLIP folder written from the fixture's weights; the
// training branch is train::micro_batch_objective (what `m2sa train` runs per micro-batch), the inference branch
// eval::teacher_forced_forward (what `m2sa eval --mode teacher-forced` runs). Every size, special id and input
// layout comes from the sidecar and the tensor shapes, so other fixture sets of this format work as well.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/data/collate.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/train/m2sa_objective.h"
#include "models/model_fixture.h"
#include "test_util.h"

namespace m2sa {
namespace {

namespace fs = std::filesystem;
using m2sa_model::M2SAConfig;
using m2sa_model::M2SAForCausalLM;

constexpr const char* kName = "m2sa_tiny";
constexpr const char* kSam = "model.visual_model.";
constexpr const char* kClipPrefix = "clip.";  // the fixture's CLIP tower: "clip." + HF CLIPVisionModel names

// The sidecar's `config` -> M2SAConfig (through M2SAConfig::from_json, strict). The sidecar states the sizes the
// reference constructors take; what SAM's builder hard-codes (qkv bias, absolute and relative positions, the
// attention downsampling, the number of mask tokens) is read from the tensors, which must then exist.
M2SAConfig config_from_sidecar(const test::ModelFixture& fx) {
  const json& c = fx.config();
  const json& s = c.at("sam");
  const json& m = c.at("m2sa");
  const std::string where = std::string(kName) + ".json config";
  M2SA_CHECK(m.at("image_token_index").get<int64_t>() == m2sa_model::kImageTokenIndex, where,
             ": image_token_index differs from LLaVA's IMAGE_TOKEN_INDEX");
  // SAM's LayerNorms use 1e-6 in the image encoder and LayerNorm2d, as the reference hard-codes.
  M2SA_CHECK(s.at("layer_norm_eps").get<double>() == 1e-6, where, ": sam.layer_norm_eps is not SAM's 1e-6");
  // MMR's image encoder taps the output of every global block and M2SA.py keeps the first (early_embeddings[0]).
  const auto globals = s.at("global_attn_indexes").get<std::vector<int64_t>>();
  M2SA_CHECK(!globals.empty() && s.at("early_layer").get<int64_t>() == globals.front(), where,
             ": sam.early_layer must be the first global block, the one M2SA.py fuses");
  const std::string dec = std::string(kSam) + "mask_decoder.";
  const int64_t out_chans = s.at("out_chans").get<int64_t>();
  const int64_t cross_dim = fx.shape(dec + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0];
  const std::string block0 = std::string(kSam) + "image_encoder.blocks.0.attn.";
  const json sam = {
      {"image_encoder",
       {{"img_size", s.at("img_size")},
        {"patch_size", s.at("patch_size")},
        {"embed_dim", s.at("embed_dim")},
        {"depth", s.at("depth")},
        {"num_heads", s.at("num_heads")},
        {"mlp_ratio", s.at("mlp_ratio")},
        {"out_chans", out_chans},
        {"qkv_bias", fx.has(block0 + "qkv.bias")},
        {"use_abs_pos", fx.has(std::string(kSam) + "image_encoder.pos_embed")},
        {"use_rel_pos", fx.has(block0 + "rel_pos_h")},
        {"window_size", s.at("window_size")},
        {"global_attn_indexes", s.at("global_attn_indexes")},
        {"early_layer", s.at("early_layer")}}},
      {"prompt_encoder", {{"mask_in_chans", s.at("mask_in_chans")}}},
      {"mask_decoder",
       {{"transformer_depth", s.at("decoder_depth")},
        {"transformer_mlp_dim", s.at("decoder_mlp_dim")},
        {"transformer_num_heads", s.at("decoder_num_heads")},
        {"attention_downsample_rate", out_chans / cross_dim},
        {"num_multimask_outputs", fx.shape(dec + "mask_tokens.weight")[0] - 1},
        {"iou_head_depth", s.at("iou_head_depth")},
        {"iou_head_hidden_dim", s.at("iou_head_hidden_dim")},
        {"compress_vit", fx.has(dec + "compress_vit.0.weight")}}}};
  // HF LlamaConfig names; what the sidecar leaves out (max_position_embeddings) takes HF 4.31's default.
  const llama::LlamaConfig llama = llama::LlamaConfig::from_hf_config(c.at("llama"), where + ".llama");
  const json j = {{"sam", sam},
                  {"clip", c.at("clip")},
                  {"llama", llama.to_json()},
                  {"m2sa",
                   {{"out_dim", m.at("out_dim")},
                    {"seg_token_id", m.at("seg_token_id")},
                    {"im_start_token_id", m.at("im_start_token_id")},
                    {"im_end_token_id", m.at("im_end_token_id")},
                    {"use_mm_start_end", m.at("use_mm_start_end")}}}};
  return M2SAConfig::from_json(JsonReader(j, where + " (adapted)"));
}

train::LossWeights loss_weights(const test::ModelFixture& fx) {
  const json& l = fx.config().at("loss");
  train::LossWeights w;
  w.ce_loss_weight = l.at("ce_weight").get<double>();
  w.bce_loss_weight = l.at("bce_weight").get<double>();
  w.dice_loss_weight = l.at("dice_weight").get<double>();
  return w;
}

// The fixture's weights as a real checkpoint pair: <dir>/model (merged names, model.safetensors) and <dir>/clip (HF
// CLIPVisionModel names), opened with WeightStore::open like any folder.
struct CheckpointFolders {
  test::TempDir dir{"m2sa_parity"};
  WeightStore merged, clip;

  explicit CheckpointFolders(const test::ModelFixture& fx) {
    // Sidecar kinds: "weight" = the merged state dict, "clip_weight" = the tower under "clip." + HF names.
    NamedTensors merged_tensors, clip_tensors;
    const std::string clip_prefix = kClipPrefix;
    for (const std::string& name : fx.names("weight")) merged_tensors.emplace_back(name, fx.get(name));
    for (const std::string& name : fx.names("clip_weight")) {
      M2SA_CHECK(name.rfind(clip_prefix, 0) == 0, kName, ": clip_weight '", name, "' lacks the prefix ", clip_prefix);
      clip_tensors.emplace_back(name.substr(clip_prefix.size()), fx.get(name));
    }
    M2SA_CHECK(!merged_tensors.empty() && !clip_tensors.empty(), kName, ": no weight or no clip_weight tensors");
    fs::create_directories(dir / "model");
    fs::create_directories(dir / "clip");
    write_safetensors(dir / "model" / "model.safetensors", merged_tensors, {{"format", "pt"}});
    write_safetensors(dir / "clip" / "model.safetensors", clip_tensors, {{"format", "pt"}});
    merged = WeightStore::open(dir / "model");
    clip = WeightStore::open(dir / "clip");
  }
};

M2SAForCausalLM load(const test::ModelFixture& fx, at::ScalarType dtype, bool eval) {
  CheckpointFolders folders(fx);
  infer::LoadModelOptions options;
  options.dtype = dtype;
  options.eval = eval;
  options.attention = test::attention_mode();
  std::vector<std::string> log;
  M2SAForCausalLM model = infer::load_merged_model(config_from_sidecar(fx), folders.merged, folders.clip, options, log);
  for (const std::string& line : log) std::cout << "  " << line << "\n";
  return model;
}

m2sa_model::ImageSize size_of(const json& v, const std::string& what) {
  M2SA_CHECK(v.is_array() && v.size() == 2, what, ": expected [h, w], got ", v.dump());
  return {v[0].get<int64_t>(), v[1].get<int64_t>()};
}

// One branch's model inputs ("train" or "infer"): input.<set>.* tensors, sizes from the sidecar's input notes.
// Images and CLIP pixels are cast to `dtype` (the reference casts both to bf16 in bf16 runs); masks stay fp32.
data::M2SATrainBatch inputs_of(const test::ModelFixture& fx, const std::string& set, at::ScalarType dtype) {
  const std::string in = "input." + set + ".";
  const json& notes = fx.sidecar().at("inputs").at(set);
  data::M2SATrainBatch b;
  m2sa_model::M2SABatch& x = b.inputs;
  x.images.sam_images = fx.get(in + "images").to(dtype);
  x.images.clip_images = fx.get(in + "images_clip").to(dtype);
  const int64_t images = x.images.sam_images.size(0);
  for (int64_t i = 0; i < images; ++i) {
    const std::string k = "[" + std::to_string(i) + "]";
    x.images.resized_hw.push_back(size_of(notes.at("resize_list").at(i), in + "resize_list" + k));
    x.images.original_hw.push_back(size_of(notes.at("original_sizes").at(i), in + "original_sizes" + k));
  }
  x.input_ids = fx.get(in + "input_ids");
  x.attention_mask = fx.get(in + "attention_masks");
  if (fx.has(in + "labels")) x.labels = fx.get(in + "labels");
  const at::Tensor offset = fx.get(in + "offset").to(at::kLong).contiguous();
  x.offset.assign(offset.data_ptr<int64_t>(), offset.data_ptr<int64_t>() + offset.numel());
  for (int64_t i = 0; i < images; ++i) {
    const std::string name = in + "gt_masks." + std::to_string(i);
    if (!fx.has(name)) continue;
    b.gt_masks.push_back(fx.get(name));
    // The reference postprocesses to label_list[i].shape, the GT masks' size.
    const auto o = x.images.original_hw[static_cast<std::size_t>(i)];
    EXPECT_EQ(b.gt_masks.back().size(1), o[0]) << name;
    EXPECT_EQ(b.gt_masks.back().size(2), o[1]) << name;
  }
  return b;
}

// The training branch's outputs by fixture name (output.train.*), computed as one `m2sa train` micro-batch.
std::map<std::string, at::Tensor> train_outputs(const test::ModelFixture& fx, at::ScalarType dtype) {
  M2SAForCausalLM model = load(fx, dtype, /*eval=*/false);
  // As build_training_model prepares it: the reference's trainable selection (LoRA adapters start as a no-op) and
  // gradient checkpointing, in train() mode with autograd on.
  m2sa_model::set_trainable(*model, m2sa_model::TrainMode::kLora);
  model->to(dtype);
  model->llm->set_gradient_checkpointing(true);
  model->train();
  const data::M2SATrainBatch batch = inputs_of(fx, "train", dtype);
  EXPECT_EQ(static_cast<int64_t>(batch.gt_masks.size()), batch.inputs.images.size()) << "one GT mask set per image";
  const train::MicroBatchResult r =
      train::micro_batch_objective(*model, batch.inputs, batch.gt_masks, loss_weights(fx), c10::Device(c10::kCPU));
  std::map<std::string, at::Tensor> out;
  const std::string o = "output.train.";
  const train::LossParts& l = r.losses;
  for (const auto& [name, t] : std::map<std::string, at::Tensor>{{"loss", l.loss},
                                                                  {"ce_loss", l.ce},
                                                                  {"mask_bce_loss", l.mask_bce},
                                                                  {"mask_dice_loss", l.mask_dice},
                                                                  {"mask_loss", l.mask}})
    out[o + name] = t.detach().reshape({1});
  for (std::size_t i = 0; i < r.output.pred_masks.size(); ++i) {
    const std::string k = "." + std::to_string(i);
    out[o + "seg_embeddings" + k] = r.output.seg_embeddings[i].detach();
    out[o + "low_res_masks" + k] = r.output.low_res_masks[i].detach();
    out[o + "pred_masks" + k] = r.output.pred_masks[i].detach();
  }
  return out;
}

// The inference branch's outputs (output.infer.*), computed as `m2sa eval --mode teacher-forced` does.
std::map<std::string, at::Tensor> infer_outputs(const test::ModelFixture& fx, at::ScalarType dtype) {
  M2SAForCausalLM model = load(fx, dtype, /*eval=*/true);
  const data::M2SATrainBatch batch = inputs_of(fx, "infer", dtype);
  const m2sa_model::ForwardOutput r = eval::teacher_forced_forward(*model, batch.inputs);
  std::map<std::string, at::Tensor> out;
  for (std::size_t i = 0; i < r.pred_masks.size(); ++i) {
    const std::string k = "." + std::to_string(i);
    out["output.infer.seg_embeddings" + k] = r.seg_embeddings[i];
    out["output.infer.low_res_masks" + k] = r.low_res_masks[i];
    out["output.infer.pred_masks" + k] = r.pred_masks[i];
  }
  return out;
}

// Compares every fixture output of the branch (`prefix`) that `select` keeps with `computed`: each one must have been
// computed. bound(name, expected) gives the tolerance. Prints the measured errors.
template <typename Select, typename Bound>
void check_all(const test::ModelFixture& fx, const std::string& prefix, const std::map<std::string, at::Tensor>& computed,
               const std::string& tag, Select select, Bound bound) {
  int checked = 0;
  for (const std::string& name : fx.names("output")) {
    if (name.rfind(prefix, 0) != 0 || !select(name)) continue;
    const auto it = computed.find(name);
    if (it == computed.end()) {
      ADD_FAILURE() << name << ": the fixture has it but the C++ computed no such output";
      continue;
    }
    const at::Tensor expected = fx.get(name);
    const ::testing::AssertionResult r =
        test::AllClose(it->second.to(at::kFloat), expected, bound(name, expected), name + tag);
    EXPECT_TRUE(r);
    if (r) std::cout << "  " << r.message() << "\n";
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no " << prefix << "* outputs in " << kName;
}

bool every(const std::string&) { return true; }

TEST(M2SAParity, ConfigFromSidecarMatchesFixtureShapes) {
  const test::ModelFixture fx(kName);
  const M2SAConfig c = config_from_sidecar(fx);
  EXPECT_EQ(fx.shape("model.text_hidden_fcs.0.2.weight")[0], c.m2sa.out_dim);
  EXPECT_EQ(fx.shape("model.embed_tokens.weight")[0], c.vocab_size());
  EXPECT_EQ(fx.shape("model.mm_projector.weight")[1], c.mm_hidden_size());
  const int64_t patches = fx.shape(std::string(kClipPrefix) + "vision_model.embeddings.position_embedding.weight")[0] - 1;
  EXPECT_EQ(c.num_image_tokens(), patches);  // select_feature "patch": every patch, no CLS
  if (c.sam.mask_decoder.compress_vit) {
    EXPECT_EQ(fx.shape(std::string(kSam) + "mask_decoder.compress_vit.0.weight")[1], c.sam.image_encoder.embed_dim);
  }
  const int64_t low_res = c.sam.low_res_size();
  for (const std::string& name : fx.names("output")) {
    if (name.find("low_res_masks") != std::string::npos) {
      EXPECT_EQ(fx.shape(name).back(), low_res) << name;
    }
  }
}

TEST(M2SAParity, TrainingMicroBatchMatchesModelForward) {
  const test::ModelFixture fx(kName);
  check_all(fx, "output.train.", train_outputs(fx, at::kFloat), "", every,
            [&](const std::string& name, const at::Tensor&) { return fx.atol(name); });
}

TEST(M2SAParity, TeacherForcedEvalMatchesInferenceBranch) {
  const test::ModelFixture fx(kName);
  check_all(fx, "output.infer.", infer_outputs(fx, at::kFloat), "", every,
            [&](const std::string& name, const at::Tensor&) { return fx.atol(name); });
}

// bf16 (the precision M2SA trains and evaluates in): the same inputs stay close to the fp32 fixture, for the losses
// and the mask logits (fp32 after postprocess_masks, as LISA's). bf16 keeps about 3 significant digits through two
// transformers and two bilinear resizes; the bound is relative to the values and far below their size, so a wrong
// op in bf16 fails.
bool losses_and_mask_logits(const std::string& name) {
  return name.find("loss") != std::string::npos || name.find("pred_masks") != std::string::npos;
}

double bf16_bound(const std::string&, const at::Tensor& expected) {
  return 0.05 * std::max(1.0, expected.abs().max().item<double>());
}

void expect_fp32_mask_logits(const std::map<std::string, at::Tensor>& out) {
  for (const auto& [name, t] : out) {
    if (name.find("pred_masks") != std::string::npos) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
    }
  }
}

TEST(M2SAParity, TrainingMicroBatchInBf16StaysClose) {
  const test::ModelFixture fx(kName);
  const std::map<std::string, at::Tensor> out = train_outputs(fx, at::kBFloat16);
  expect_fp32_mask_logits(out);
  check_all(fx, "output.train.", out, " (bf16)", losses_and_mask_logits, bf16_bound);
}

TEST(M2SAParity, TeacherForcedEvalInBf16StaysClose) {
  const test::ModelFixture fx(kName);
  const std::map<std::string, at::Tensor> out = infer_outputs(fx, at::kBFloat16);
  expect_fp32_mask_logits(out);
  check_all(fx, "output.infer.", out, " (bf16)", losses_and_mask_logits, bf16_bound);
}

}  // namespace
}  // namespace m2sa
