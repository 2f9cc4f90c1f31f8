#pragma once
// Building an M2SA model with its weights and its tokenizer from any supported source, in one call
// (../shared/spec/M2SA.md section 1.9; the weight rules are in m2sa/models/m2sa/m2sa_checkpoint.h):
//  - model_dir: a merged Hugging Face folder (released M2SA / LISA weights, or `m2sa export` output). Sizes come
//    from its m2sa_config.json when present, else from config.json + the CLIP folder's config.json (SAM ViT-H);
//    the CLIP tower comes from clip_dir, or from <model_dir>/vision_tower (our exports). A checkpoint without
//    mask_decoder.compress_vit (LISA) gets stock SAM ViT-H without the early-layer fusion;
//  - peft: an un-merged PEFT state dict (reference training output) + config (+ clip_dir when the file lacks CLIP);
//  - sam + llava_dir + clip_dir + config: the start of a training run;
// optionally followed by trained weights (the trainer's trainable.safetensors, LoRA keys allowed).
// The tokenizer must give [SEG], <im_start>, <im_end> the config's ids (a wrong [SEG] id silently doubles or
// misplaces masks in the reference, LISA #55); a training start and a PEFT state dict (whose tokenizer is the LLaVA
// one) get the missing tokens added, as train_ds.py and the reference merge script do.
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/io/weight_store.h"
#include "m2sa/nn/attention.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa::infer {

struct ModelSource {
  std::filesystem::path model_dir;  // merged HF folder
  std::filesystem::path peft;       // un-merged PEFT state dict (e.g. pytorch_model.bin from zero_to_fp32.py)
  std::filesystem::path sam;        // SAM checkpoint (sam_vit_h_4b8939.pth), with llava_dir
  std::filesystem::path llava_dir;  // LLaVA folder, with sam
  std::filesystem::path clip_dir;   // HF CLIP folder (openai/clip-vit-large-patch14)
  std::filesystem::path config;     // M2SA config JSON: required with peft / sam; overrides a model_dir's sizes
  std::filesystem::path trainable;  // trained weights put over the model (safetensors / .bin with state names)
  std::filesystem::path tokenizer;  // tokenizer folder or tokenizer.model; default: model_dir, else llava_dir
};

struct LoadModelOptions {
  c10::ScalarType dtype = c10::kFloat;           // fp32 or bf16 (fp16 is for CUDA)
  c10::Device device = c10::Device(c10::kCPU);
  bool eval = true;                              // eval() mode (no LoRA dropout)
  std::optional<nn::AttentionMode> attention;    // overrides the config's m2sa.attention (`--attention`)
  // With eval: freeze every weight and compute LLaMA's q/k/v and gate/up as one matmul each (the inference fast
  // path; checkpoint names and export unchanged, nn/fused_linears.h). Default: on a GPU only. On the CPU the
  // weights stay views of the mapped checkpoint files (shared page cache, docs/FULL_SIZE.md), which fusing would
  // copy into private memory (8.8 GB at 7B).
  std::optional<bool> fuse_projections;
};

struct LoadedModel {
  m2sa_model::M2SAForCausalLM model;
  Tokenizer tokenizer;
  std::vector<std::string> log;  // one line per checkpoint read ("<what>: <report summary>")
};

// Errors name the source that failed and why (missing files, missing / unexpected / mis-shaped keys, a tokenizer
// that does not fit the model).
LoadedModel load_model(const ModelSource& source, const LoadModelOptions& options = {});

// The weights step of load_model for a merged folder: a shape-only model of `config` (options.attention applied)
// allocated in options.dtype on options.device, filled strictly from `weights` (the merged M2SA names,
// load_merged_weights) and `clip` (an HF CLIP folder, load_clip_weights), in eval() / train() mode as options.eval
// says. One line per store goes to `log`. load_model calls it after opening the folders and checking the tokenizer.
m2sa_model::M2SAForCausalLM load_merged_model(m2sa_model::M2SAConfig config, const WeightStore& weights,
                                              const WeightStore& clip, const LoadModelOptions& options,
                                              std::vector<std::string>& log);

// The tokenizer checks alone: [SEG] / <im_start> / <im_end> ids equal the config's and the tokenizer fits the
// vocabulary. `where` names the tokenizer in messages.
void check_tokenizer(const Tokenizer& tokenizer, const m2sa_model::M2SAConfig& config, const std::string& where);

}  // namespace m2sa::infer
