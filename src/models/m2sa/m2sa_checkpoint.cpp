#include "m2sa/models/m2sa/m2sa_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstdio>
#include <map>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/nn/lora.h"

namespace m2sa::m2sa_model {

namespace fs = std::filesystem;

namespace {

// Every part of the model except the CLIP tower, as state-name prefixes.
const std::vector<std::string>& non_clip_prefixes() {
  static const std::vector<std::string> p{"model.embed_tokens.", "model.layers.",      "model.norm.",
                                          "lm_head.",            "model.mm_projector.", std::string(key_rules::kSam),
                                          "model.text_hidden_fcs."};
  return p;
}

std::string hf_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: fail("export: unsupported dtype ", dtype, " (use fp32, bf16 or fp16)");
  }
}

// embed_tokens / lm_head of a LLaVA checkpoint: [n, H] with n <= vocab_size (LLaMA's 32000 before the three
// added tokens). Returns n.
int64_t check_vocab_rows(const at::Tensor& param, const WeightStore& store, const std::string& name) {
  M2SA_CHECK(store.contains(name), store.description(), ": the LLaVA checkpoint has no '", name, "'");
  const TensorInfo& info = store.info(name);
  const int64_t rows = param.size(0), width = param.size(1);
  M2SA_CHECK(info.shape.size() == 2 && info.shape[1] == width && info.shape[0] >= 1 && info.shape[0] <= rows,
             store.source_of(name), ": '", name, "' is ", shape_string(info.shape), ", expected [n, ", width,
             "] with n <= vocab_size ", rows, " (the model's hidden size and vocabulary)");
  M2SA_CHECK(!param.is_meta(), "cannot load '", name, "' into a shape-only model");
  return info.shape[0];
}

// The checkpoint's rows go first; the rows it lacks are drawn from N(0, 0.02) as HF's resize_token_embeddings does
// (`_init_weights`, initializer_range 0.02).
void load_vocab_rows(at::Tensor& param, const WeightStore& store, const std::string& name, int64_t n) {
  at::NoGradGuard no_grad;
  param.slice(0, 0, n).copy_(store.load(name));
  store.release(name);
  if (n < param.size(0))
    param.slice(0, n).copy_(at::empty({param.size(0) - n, param.size(1)}, at::kFloat).normal_(0.0, 0.02));
}

}  // namespace

LoadReport load_merged_weights(M2SAForCausalLMImpl& model, const WeightStore& store) {
  LoadOptions o;
  o.rules = key_rules::hf_m2sa();
  o.expect_prefixes = non_clip_prefixes();
  o.alias_stored = true;
  return with_context("loading the M2SA weights from " + store.description(),
                      [&] { return load_weights(model, store, o); });
}

LoadReport load_clip_weights(M2SAForCausalLMImpl& model, const WeightStore& store) {
  LoadOptions o;
  o.rules = key_rules::clip_vision(/*into_m2sa=*/true);
  o.expect_prefixes = {key_rules::kClip};
  o.alias_stored = true;
  return with_context("loading the CLIP vision tower from " + store.description(),
                      [&] { return load_weights(model, store, o); });
}

LoadReport load_peft_weights(M2SAForCausalLMImpl& model, const WeightStore& store, bool includes_vision_tower) {
  return with_context("loading PEFT (un-merged LoRA) weights from " + store.description(), [&] {
    if (nn::lora_layer_names(model).empty()) {
      nn::apply_lora(model, model.config().m2sa.lora);
    } else {
      for (auto& item : model.named_modules("", false))
        if (auto* lin = dynamic_cast<nn::LinearImpl*>(item.value().get()))
          M2SA_CHECK(!lin->lora_merged(), "the model's LoRA adapter at '", item.key(),
                     "' is merged already; load PEFT weights into a model with unmerged (or no) adapters");
    }
    LoadOptions o;
    o.rules = key_rules::peft_m2sa();
    o.alias_stored = true;
    if (!includes_vision_tower) {
      o.rules.ignore.push_back(key_rules::kClip);
      o.expect_prefixes = non_clip_prefixes();
    }
    LoadReport report = load_weights(model, store, o);
    nn::merge_all_lora(model);
    return report;
  });
}

TrainingStartReport load_training_start(M2SAForCausalLMImpl& model, const WeightStore& sam, const WeightStore& llava,
                                        const WeightStore& clip) {
  LoadOptions sam_o;
  sam_o.rules = key_rules::sam_into_m2sa();
  sam_o.expect_prefixes = {key_rules::kSam};
  sam_o.allow_missing = {std::string(key_rules::kSam) + "mask_decoder.compress_vit."};
  sam_o.alias_stored = true;
  LoadOptions llava_o;
  llava_o.rules = key_rules::hf_m2sa();
  llava_o.rules.name = "LLaVA checkpoint";
  llava_o.rules.ignore.push_back("model.embed_tokens.");  // resized below
  llava_o.rules.ignore.push_back("lm_head.");
  llava_o.expect_prefixes = {"model.layers.", "model.norm.", "model.mm_projector."};
  llava_o.alias_stored = true;
  LoadOptions clip_o;
  clip_o.rules = key_rules::clip_vision(/*into_m2sa=*/true);
  clip_o.expect_prefixes = {key_rules::kClip};
  clip_o.alias_stored = true;

  // Check all three checkpoints before changing anything.
  at::Tensor& embed = model.llm->model->embed_tokens->weight;
  at::Tensor& head = model.llm->lm_head->weight;
  const std::string sam_what = "loading SAM from " + sam.description();
  const std::string llava_what = "loading the LLaVA weights from " + llava.description();
  const std::string clip_what = "loading the CLIP vision tower from " + clip.description();
  with_context(sam_what, [&] { return check_weights(model, sam, sam_o); });
  const int64_t rows = with_context(llava_what, [&] {
    const int64_t embed_rows = check_vocab_rows(embed, llava, "model.embed_tokens.weight");
    const int64_t head_rows = check_vocab_rows(head, llava, "lm_head.weight");
    M2SA_CHECK(head_rows == embed_rows, llava.description(), ": embed_tokens has ", embed_rows, " rows but lm_head ",
               head_rows);
    check_weights(model, llava, llava_o);
    return embed_rows;
  });
  with_context(clip_what, [&] { return check_weights(model, clip, clip_o); });

  TrainingStartReport r;
  r.sam = with_context(sam_what, [&] { return load_weights(model, sam, sam_o); });
  r.llava = with_context(llava_what, [&] {
    LoadReport rep = load_weights(model, llava, llava_o);
    load_vocab_rows(embed, llava, "model.embed_tokens.weight", rows);
    load_vocab_rows(head, llava, "lm_head.weight", rows);
    rep.loaded.push_back("model.embed_tokens.weight");
    rep.loaded.push_back("lm_head.weight");
    return rep;
  });
  r.clip = with_context(clip_what, [&] { return load_weights(model, clip, clip_o); });
  r.vocab_rows_loaded = rows;
  r.vocab_rows_added = model.config().vocab_size() - rows;
  return r;
}

std::vector<std::string> init_parts_not_in_start_checkpoints(M2SAForCausalLMImpl& model) {
  at::NoGradGuard no_grad;
  const M2SAConfig& c = model.config();
  std::vector<std::string> done;
  auto copy_into = [&](const torch::nn::Module& fresh, const torch::nn::Module& target, const std::string& prefix,
                       const std::string& only) {
    std::map<std::string, at::Tensor> src;
    for (auto& [name, t] : module_state(fresh)) src[name] = t;
    for (auto& [name, t] : module_state(target)) {
      if (name.compare(0, only.size(), only) != 0) continue;
      auto it = src.find(name);
      M2SA_CHECK(it != src.end() && it->second.sizes() == t.sizes(), "initialising '", prefix, name,
                 "': the freshly built module has no tensor of that name and shape");
      M2SA_CHECK(!t.is_meta(), "initialising '", prefix, name, "': the model is shape-only (allocate it first)");
      at::Tensor target_t = t;
      target_t.copy_(it->second);
      done.push_back(prefix + name);
    }
  };
  {
    TextHiddenFcs fresh(c.hidden_size(), c.m2sa.out_dim);
    copy_into(*fresh, *model.text_hidden_fcs, "model.text_hidden_fcs.", "");
  }
  if (c.sam.mask_decoder.compress_vit) {
    sam::MaskDecoder fresh(c.sam.mask_decoder, c.sam.prompt_embed_dim(), c.sam.image_encoder.embed_dim);
    copy_into(*fresh, *model.visual_model->mask_decoder, std::string(key_rules::kSam) + "mask_decoder.",
              "compress_vit.");
  }
  return done;
}

LoadReport load_trainable_weights(M2SAForCausalLMImpl& model, const WeightStore& store) {
  LoadOptions o;
  o.rules = key_rules::identity("trained weights");
  for (const TensorInfo& t : store.tensors()) o.expect_prefixes.push_back(t.name);
  M2SA_CHECK(!o.expect_prefixes.empty(), store.description(), ": holds no tensors");
  return with_context("loading trained weights from " + store.description(),
                      [&] { return load_weights(model, store, o); });
}

void allocate_shape_only(torch::nn::Module& module, at::ScalarType dtype, const c10::Device& device) {
  at::NoGradGuard no_grad;
  auto give = [&](const std::string& name, at::Tensor& t) {
    if (!t.is_meta()) return;
    const at::ScalarType d = !t.is_floating_point() ? t.scalar_type() : nn::is_lora_key(name) ? at::kFloat : dtype;
    const at::Tensor fresh = at::empty(t.sizes(), at::TensorOptions().dtype(d).device(device));
    // What Variable::set_data does after its type check, which refuses meta -> CPU/CUDA in LibTorch (Python's
    // Module.to_empty replaces the Parameter object instead; C++ modules hold their tensors by handle, so the
    // handle's implementation takes the new storage, dtype, device and dispatch keys in place).
    t.unsafeGetTensorImpl()->shallow_copy_from(fresh.getIntrusivePtr());
  };
  for (auto& item : module.named_parameters(/*recurse=*/true)) give(item.key(), item.value());
  for (auto& item : module.named_buffers(/*recurse=*/true)) give(item.key(), item.value());
}

NamedTensors merged_hf_state(const M2SAForCausalLMImpl& model, bool include_vision_tower) {
  NamedTensors out;
  const std::string clip = key_rules::kClip;
  for (auto& [name, t] : nn::merged_state(model)) {
    if (!include_vision_tower && name.compare(0, clip.size(), clip) == 0) continue;
    out.emplace_back(name, t);
  }
  return out;
}

NamedTensors clip_state(const M2SAForCausalLMImpl& model) { return module_state(*model.vision_tower->vision_tower); }

json hf_config_json(const M2SAConfig& c, at::ScalarType dtype, const std::string& vision_tower_name) {
  const auto& l = c.llama;
  return json{
      {"architectures", {"M2SAForCausalLM"}},
      {"model_type", "llava"},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"pad_token_id", 0},
      {"hidden_act", "silu"},
      {"hidden_size", l.hidden_size},
      {"intermediate_size", l.intermediate_size},
      {"num_hidden_layers", l.num_hidden_layers},
      {"num_attention_heads", l.num_attention_heads},
      {"num_key_value_heads", l.num_attention_heads},
      {"rms_norm_eps", l.rms_norm_eps},
      {"max_position_embeddings", l.max_position_embeddings},
      {"max_sequence_length", l.max_position_embeddings},
      {"rope_theta", l.rope_theta},
      {"rope_scaling", nullptr},
      {"vocab_size", l.vocab_size},
      {"initializer_range", 0.02},
      {"pretraining_tp", 1},
      {"tie_word_embeddings", false},
      {"use_cache", false},
      {"torch_dtype", hf_dtype_name(dtype)},
      {"transformers_version", "4.31.0"},
      // LLaVA / LISA fields (spec 1.7).
      {"train_mask_decoder", true},
      {"out_dim", c.m2sa.out_dim},
      {"mm_use_im_start_end", c.m2sa.use_mm_start_end},
      {"mm_use_im_patch_token", false},
      {"mm_vision_select_layer", c.clip.select_layer},
      {"mm_vision_select_feature", c.clip.select_feature},
      {"mm_hidden_size", c.mm_hidden_size()},
      {"vision_tower", vision_tower_name},
      {"mm_vision_tower", vision_tower_name},
      {"image_aspect_ratio", "square"},
      {"image_grid_pinpoints", nullptr},
      {"tune_mm_mlp_adapter", false},
      {"freeze_mm_mlp_adapter", true},
      {"pretrain_mm_mlp_adapter", nullptr},
      {"use_mm_proj", true},
  };
}

json clip_hf_config_json(const clip::ClipVisionConfig& c, at::ScalarType dtype) {
  return json{{"architectures", {"CLIPVisionModel"}},
              {"model_type", "clip_vision_model"},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_hidden_layers", c.num_hidden_layers},
              {"num_attention_heads", c.num_attention_heads},
              {"image_size", c.image_size},
              {"patch_size", c.patch_size},
              {"num_channels", 3},
              {"hidden_act", c.hidden_act},
              {"layer_norm_eps", c.layer_norm_eps},
              {"torch_dtype", hf_dtype_name(dtype)},
              {"transformers_version", "4.31.0"}};
}

std::vector<std::string> write_safetensors_shards(const fs::path& dir, const NamedTensors& tensors, at::ScalarType dtype,
                                                  int64_t max_shard_bytes) {
  M2SA_CHECK(fs::is_directory(dir), dir.string(), ": not a directory");
  M2SA_CHECK(max_shard_bytes > 0, "write_safetensors_shards: max_shard_bytes must be positive");
  M2SA_CHECK(!tensors.empty(), "write_safetensors_shards: nothing to write");
  (void)hf_dtype_name(dtype);
  // Group in order into shards.
  std::vector<NamedTensors> shards(1);
  int64_t in_shard = 0, total = 0;
  for (const auto& [name, t] : tensors) {
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.is_floating_point() ? c10::elementSize(dtype) : t.element_size());
    if (in_shard > 0 && in_shard + bytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().emplace_back(name, t);
    in_shard += bytes;
    total += bytes;
  }
  const std::size_t n = shards.size();
  std::vector<std::string> files;
  json weight_map = json::object();
  for (std::size_t i = 0; i < n; ++i) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", i + 1, n);
    NamedTensors cast;
    for (const auto& [name, t] : shards[i]) {
      cast.emplace_back(name, t.is_floating_point() ? t.detach().to(at::kCPU).to(dtype) : t.detach().to(at::kCPU));
      weight_map[name] = file;
    }
    write_safetensors(dir / file, cast, {{"format", "pt"}});
    files.push_back(file);
  }
  write_json_file(dir / "model.safetensors.index.json",
                  json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  files.push_back("model.safetensors.index.json");
  return files;
}

M2SAConfig model_dir_config(const fs::path& dir, const fs::path& clip_dir) {
  M2SA_CHECK(fs::is_directory(dir), dir.string(), ": model directory not found");
  if (fs::exists(dir / kM2SAConfigFile)) return read_model_config(dir / kM2SAConfigFile);
  const fs::path hf = dir / kHfConfigFile;
  M2SA_CHECK(fs::exists(hf), dir.string(), ": not a model directory: it has neither ", kM2SAConfigFile, " nor ",
             kHfConfigFile);
  M2SA_CHECK(!clip_dir.empty(), hf.string(), ": this checkpoint does not contain the CLIP vision tower (the reference "
             "merge script drops it); pass the CLIP folder, e.g. a download of openai/clip-vit-large-patch14");
  const fs::path clip_cfg = clip_dir / kHfConfigFile;
  M2SA_CHECK(fs::exists(clip_cfg), clip_dir.string(), ": not a Hugging Face CLIP folder (no config.json)");
  const clip::ClipVisionConfig clip = clip::ClipVisionConfig::from_hf_config(read_json_file(clip_cfg), clip_cfg.string());
  return M2SAConfig::from_hf_config(read_json_file(hf), hf.string(), clip);
}

fs::path find_clip_dir(const fs::path& dir, const fs::path& explicit_dir) {
  if (!explicit_dir.empty()) {
    M2SA_CHECK(fs::exists(explicit_dir), explicit_dir.string(), ": CLIP folder not found");
    return explicit_dir;
  }
  const fs::path inside = dir / kVisionTowerDir;
  if (fs::exists(inside / kHfConfigFile)) return inside;
  return {};
}

}  // namespace m2sa::m2sa_model
