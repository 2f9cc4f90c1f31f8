#include "m2sa/infer/model_loading.h"

#include <ATen/ATen.h>

#include <optional>
#include <set>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/module_weights.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/nn/init.h"
#include "m2sa/nn/lora.h"

namespace m2sa::infer {

namespace fs = std::filesystem;
using m2sa_model::M2SAConfig;
using m2sa_model::M2SAForCausalLM;

namespace {

WeightStore open_store(const fs::path& path, const char* what) {
  M2SA_CHECK(fs::exists(path), path.string(), ": ", what, " not found");
  return with_context(std::string("opening the ") + what + " " + path.string(), [&] { return WeightStore::open(path); });
}

bool has_lora_keys(const WeightStore& store) {
  for (const auto& t : store.tensors())
    if (nn::is_lora_key(t.name)) return true;
  return false;
}

}  // namespace

void check_tokenizer(const Tokenizer& tok, const M2SAConfig& c, const std::string& where) {
  const std::pair<const char*, std::pair<int64_t, int64_t>> ids[] = {
      {"[SEG]", {tok.seg_token_id(), c.m2sa.seg_token_id}},
      {"<im_start>", {tok.im_start_id(), c.m2sa.im_start_token_id}},
      {"<im_end>", {tok.im_end_id(), c.m2sa.im_end_token_id}}};
  for (const auto& [name, pair] : ids)
    M2SA_CHECK(pair.first == pair.second, where, ": the tokenizer gives ", name, " the id ", pair.first,
               " but the model expects ", pair.second, " (m2sa.", name == std::string("[SEG]") ? "seg_token_id" : name == std::string("<im_start>") ? "im_start_token_id" : "im_end_token_id",
               "); a tokenizer with other added tokens does not fit these weights");
  M2SA_CHECK(tok.size() <= c.vocab_size(), where, ": the tokenizer has ", tok.size(),
             " tokens, more than the model's vocab_size ", c.vocab_size());
}

M2SAForCausalLM load_merged_model(M2SAConfig config, const WeightStore& weights, const WeightStore& clip,
                                  const LoadModelOptions& options, std::vector<std::string>& log) {
  if (options.attention) config.m2sa.attention = *options.attention;
  M2SAForCausalLM model{nullptr};
  {
    nn::ShapeOnlyScope shape_only;
    model = M2SAForCausalLM(config);
  }
  m2sa_model::allocate_shape_only(*model, options.dtype, options.device);
  log.push_back("weights " + weights.description() + ": " + m2sa_model::load_merged_weights(*model, weights).summary());
  log.push_back("CLIP " + clip.description() + ": " + m2sa_model::load_clip_weights(*model, clip).summary());
  model->to(options.device, options.dtype);
  model->train(!options.eval);
  return model;
}

LoadedModel load_model(const ModelSource& src, const LoadModelOptions& options) {
  const bool from_dir = !src.model_dir.empty(), from_peft = !src.peft.empty();
  const bool from_start = !src.sam.empty() || !src.llava_dir.empty();
  M2SA_CHECK(from_dir + from_peft + from_start == 1,
             "load model: give exactly one weight source: a model directory (merged HF folder), a PEFT state dict "
             "(with a config), or a SAM checkpoint + a LLaVA folder (with a config and a CLIP folder)");
  M2SA_CHECK(options.dtype == at::kFloat || options.dtype == at::kBFloat16 || options.dtype == at::kHalf,
             "load model: unsupported precision ", precision_name(options.dtype), " (fp32, bf16 or fp16)");
  std::vector<std::string> log;

  // 1. The config.
  fs::path clip_dir;
  M2SAConfig config;
  if (from_dir) {
    clip_dir = m2sa_model::find_clip_dir(src.model_dir, src.clip_dir);
    config = src.config.empty() ? m2sa_model::model_dir_config(src.model_dir, clip_dir)
                                : m2sa_model::read_model_config(src.config);
    M2SA_CHECK(!clip_dir.empty(), src.model_dir.string(), ": the checkpoint does not contain the CLIP vision tower "
               "(merged checkpoints never do); pass the CLIP folder (e.g. a download of openai/clip-vit-large-patch14)");
  } else {
    M2SA_CHECK(!src.config.empty(), "load model: a ", from_peft ? "PEFT state dict" : "SAM + LLaVA start",
               " needs the model config (--config, e.g. configs/m2sa-7b.json)");
    config = m2sa_model::read_model_config(src.config);
    clip_dir = src.clip_dir;
    if (from_start) {
      M2SA_CHECK(!src.sam.empty() && !src.llava_dir.empty(), "load model: the training start needs both the SAM "
                 "checkpoint and the LLaVA folder");
      M2SA_CHECK(!clip_dir.empty(), "load model: the training start needs the CLIP folder");
    }
  }

  if (options.attention) config.m2sa.attention = *options.attention;

  // A reference LISA checkpoint has no compress_vit: when the sizes come from config.json alone, build stock SAM
  // ViT-H (no early-layer tap), so LISA weights load too.
  bool lisa_layout = false;
  if (from_dir && src.config.empty() && !fs::exists(src.model_dir / m2sa_model::kM2SAConfigFile)) {
    const WeightStore probe = open_store(src.model_dir, "model directory");
    if (!probe.contains(std::string(key_rules::kSam) + "mask_decoder.compress_vit.0.weight")) {
      config.sam = sam::SamConfig::vit_h();
      config.validate(src.model_dir.string());
      lisa_layout = true;
    }
  }

  // 2. The tokenizer (checked before any weight is read).
  fs::path tok_path = src.tokenizer;
  if (tok_path.empty()) tok_path = from_dir ? src.model_dir : from_start ? src.llava_dir : fs::path();
  M2SA_CHECK(!tok_path.empty(), "load model: give the tokenizer (a folder with tokenizer.model and added_tokens.json, "
             "as saved with the checkpoint)");
  TokenizerOptions to;
  to.expected_seg_token_id = config.m2sa.seg_token_id;
  // train_ds.py adds [SEG], <im_start>, <im_end> to the LLaVA tokenizer, and so does the reference merge script
  // (merge_lora_weights_and_save_hf_model.py) before it loads an un-merged PEFT state dict.
  to.add_missing_tokens = from_start || from_peft;
  to.model_max_length = config.m2sa.model_max_length;
  Tokenizer tokenizer = with_context("loading the tokenizer from " + tok_path.string(),
                                     [&] { return Tokenizer::load(tok_path, to); });
  check_tokenizer(tokenizer, config, tok_path.string());

  // 3. The weights. Complete (strict) loads go straight into the target dtype/device from a shape-only model;
  //    the training start builds with its initialisation (compress_vit, new vocabulary rows, ...).
  std::optional<WeightStore> trainable;
  if (!src.trainable.empty()) trainable = open_store(src.trainable, "trained weights");
  M2SAForCausalLM model{nullptr};
  if (from_start) {
    // Every file is opened (and its index validated) before the model is allocated. The model is allocated in the
    // target dtype directly (a 7B model would take 31 GB in fp32); only what the checkpoints lack is drawn
    // (text_hidden_fcs, compress_vit, new vocabulary rows), and tensors stored in the target dtype view the files.
    const WeightStore sam = open_store(src.sam, "SAM checkpoint");
    const WeightStore llava = open_store(src.llava_dir, "LLaVA folder");
    const WeightStore clip = open_store(clip_dir, "CLIP folder");
    {
      nn::ShapeOnlyScope shape_only;
      model = M2SAForCausalLM(config);
    }
    m2sa_model::allocate_shape_only(*model, options.dtype, options.device);
    const std::vector<std::string> drawn = m2sa_model::init_parts_not_in_start_checkpoints(*model);
    const auto r = m2sa_model::load_training_start(*model, sam, llava, clip);
    // Every tensor of the model must now hold loaded or drawn values (allocate_shape_only leaves them
    // uninitialised).
    std::set<std::string> covered(drawn.begin(), drawn.end());
    for (const auto* rep : {&r.sam, &r.llava, &r.clip}) covered.insert(rep->loaded.begin(), rep->loaded.end());
    for (const auto& [name, t] : module_state(*model))
      M2SA_CHECK(covered.count(name), "the training start from ", src.sam.string(), " + ", src.llava_dir.string(),
                 " + ", clip_dir.string(), " leaves '", name, "' uninitialised (no checkpoint holds it and nothing "
                 "draws it)");
    log.push_back("SAM " + src.sam.string() + ": " + r.sam.summary());
    log.push_back("LLaVA " + src.llava_dir.string() + ": " + r.llava.summary() + " (" +
                  std::to_string(r.vocab_rows_added) + " new vocabulary rows)");
    log.push_back("CLIP " + clip_dir.string() + ": " + r.clip.summary());
    model->to(options.device, options.dtype);
  } else if (from_dir) {
    const WeightStore store = open_store(src.model_dir, "model directory");
    if (lisa_layout) log.push_back(src.model_dir.string() + ": no mask_decoder.compress_vit in the checkpoint: "
                                   "LISA layout (SAM ViT-H without M2SA's early-layer fusion)");
    const WeightStore clip = open_store(clip_dir, "CLIP folder");
    model = load_merged_model(config, store, clip, options, log);
  } else {
    {
      nn::ShapeOnlyScope shape_only;
      model = M2SAForCausalLM(config);
      nn::apply_lora(*model, config.m2sa.lora);
    }
    m2sa_model::allocate_shape_only(*model, options.dtype, options.device);
    const WeightStore store = open_store(src.peft, "PEFT state dict");
    const bool separate_clip = !clip_dir.empty();
    log.push_back("PEFT " + src.peft.string() + ": " +
                  m2sa_model::load_peft_weights(*model, store, /*includes_vision_tower=*/!separate_clip).summary());
    if (separate_clip) {
      const WeightStore clip = open_store(clip_dir, "CLIP folder");
      log.push_back("CLIP " + clip_dir.string() + ": " + m2sa_model::load_clip_weights(*model, clip).summary());
    }
  }
  if (trainable) {
    // Trained LoRA factors go in unmerged, then are folded in.
    if (has_lora_keys(*trainable)) {
      if (nn::lora_layer_names(*model).empty()) nn::apply_lora(*model, config.m2sa.lora);
      nn::unmerge_all_lora(*model);
    }
    log.push_back("trained weights " + src.trainable.string() + ": " +
                  m2sa_model::load_trainable_weights(*model, *trainable).summary());
    nn::merge_all_lora(*model);
  }
  model->to(options.device, options.dtype);
  model->train(!options.eval);
  if (options.eval && options.fuse_projections.value_or(!options.device.is_cpu())) {
    for (auto& p : model->parameters()) p.set_requires_grad(false);
    const int64_t fused = model->llm->fuse_projections();
    log.push_back("fused projections: " + std::to_string(fused) + " of " +
                  std::to_string(2 * model->config().llama.num_hidden_layers) + " q/k/v and gate/up groups");
  }
  return LoadedModel{model, tokenizer, log};
}

}  // namespace m2sa::infer
