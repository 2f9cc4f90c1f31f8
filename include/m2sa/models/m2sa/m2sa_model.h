#pragma once
// M2SAForCausalLM (MMR:model/M2SA.py; ../shared/spec/M2SA.md sections 0, 1.4-1.10, 5.3, 5.4): LLaVA (CLIP ViT-L/14
// -> mm_projector -> LLaMA) writes an answer with [SEG] tokens; the final post-norm hidden state just before each
// [SEG] goes through text_hidden_fcs into SAM's prompt encoder; SAM ViT-H (with M2SA's block-7 tap fused by
// compress_vit) decodes one mask per [SEG] at the original image size.
//
// State names are those of the merged Hugging Face checkpoint (m2sa_{7b,13b}_keys.json) plus the CLIP tower under
// its LLaVA name:
//   model.embed_tokens.*, model.layers.{i}.*, model.norm.*, lm_head.*           (LLaMA, HF LlamaForCausalLM)
//   model.mm_projector.{weight,bias}                                              (Linear(mm_hidden, H))
//   model.visual_model.{image_encoder,prompt_encoder,mask_decoder}.*             (SAM + compress_vit)
//   model.text_hidden_fcs.0.{0,2}.{weight,bias}                                  (Linear(H,H), ReLU, Linear(H,out))
//   model.vision_tower.vision_tower.vision_model.*                               (HF CLIPVisionModel)
// The LLaMA code is used unchanged: the model holds a llama::LlamaForCausalLM (`llm`) and registers its `model`
// and `lm_head` submodules on the root; the M2SA parts are registered inside that `model` module.
//
// Everything here works on tensors: prompts are token ids (text/ makes them), images are preprocessed tensors
// (vision/ makes them). Precision: cast the whole model with `.to(dtype)` (fp32, bf16; CPU or CUDA); mask logits
// are always fp32 (LISA's postprocess_masks). The SAM image encoder and CLIP run without autograd unless their
// parameters require grad (only in the "train everything" mode for a model trained from scratch).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <vector>

#include "m2sa/models/clip/clip_vision.h"
#include "m2sa/models/llama/greedy_decode.h"
#include "m2sa/models/llama/llama_model.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/multimodal.h"
#include "m2sa/models/sam/sam.h"
#include "m2sa/nn/layers.h"

namespace m2sa::m2sa_model {

using ImageSize = std::array<int64_t, 2>;  // (height, width)

// LISA's [SEG] projector: ModuleList([Sequential(Linear(H, H), ReLU, Linear(H, out_dim), Dropout(0))]), keys
// `0.0.*` and `0.2.*`.
class TextHiddenFcsImpl : public torch::nn::Module {
 public:
  TextHiddenFcsImpl(int64_t hidden_size, int64_t out_dim);
  at::Tensor forward(const at::Tensor& hidden) const;  // [..., H] -> [..., out_dim]
  nn::Linear fc1{nullptr}, fc2{nullptr};               // "0.0", "0.2"
};
TORCH_MODULE(TextHiddenFcs);

// LLaVA's CLIPVisionTower: the HF CLIPVisionModel as its child `vision_tower`.
class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const clip::ClipVisionConfig& config);
  clip::ClipVisionModel vision_tower{nullptr};
};
TORCH_MODULE(VisionTower);

// Preprocessed images of a batch (vision/sam_preprocess.h and vision/clip_preprocess.h make them).
struct ImageBatch {
  at::Tensor sam_images;               // float [B, 3, S, S]: normalised, zero-padded (S = sam img_size)
  at::Tensor clip_images;              // float [B, 3, s, s]: CLIP-normalised centre crops (s = clip image_size)
  std::vector<ImageSize> resized_hw;   // per image: size after ResizeLongestSide(S), before padding
  std::vector<ImageSize> original_hw;  // per image: the decoded image's size = the size of the output masks
  int64_t size() const { return sam_images.defined() ? sam_images.size(0) : 0; }
};

// SAM image-encoder outputs of a batch (sam_features makes them; keep them to decode more [SEG]s of the same
// images: chat rounds, a server session).
struct SamFeatures {
  at::Tensor neck;   // [B, C, g, g] image embeddings
  at::Tensor early;  // [B, E, g, g] NCHW output of block early_layer (undefined without compress_vit)
  // What the mask decoder reads, per image: neck + compress_vit(early) with compress_vit, else the neck. Computed
  // once per image by sam_features (the reference recomputes it for every mask decoder call); decode_masks
  // fuses neck and early itself when this is undefined (features put together by hand).
  at::Tensor image;  // [B, C, g, g]
  int64_t size() const { return neck.defined() ? neck.size(0) : 0; }
  // Images [begin, end) of the batch (views sharing the memory).
  SamFeatures slice(int64_t begin, int64_t end) const;
};

// Images per SAM image-encoder batch by default: ViT-H's global-attention blocks hold a [heads, 4096, 4096] score
// matrix per image (0.5 GiB in bf16), so 8 images stay well inside one GPU.
inline constexpr int64_t kSamEncoderBatch = 8;

// A teacher-forced batch: B images, each with k_i >= 0 conversations (R = sum k_i rows).
struct M2SABatch {
  ImageBatch images;
  at::Tensor input_ids;       // int64 [R, L]: one -200 per row, right-padded (text/prompt_encoding.h: collate)
  at::Tensor attention_mask;  // [R, L] 1 = real token (bool or integer); undefined = no padding
  at::Tensor labels;          // int64 [R, L], -100 = not supervised; undefined for mask-only (validation) forwards
  std::vector<int64_t> offset;  // B + 1 conversation offsets: image i owns rows offset[i] .. offset[i+1] - 1
};

struct ForwardOptions {
  bool full_logits = false;   // also return logits for every position ([R, T, V]; costly with a 32003 vocab)
  bool keep_hidden = false;   // also return the final hidden states [R, T, H]
  bool compute_masks = true;  // run SAM and decode the masks
};

struct ForwardOutput {
  // Next-token logits at the supervised positions only: row-major over (r, t) with labels[r, t + 1] != -100 in
  // the spliced sequence, so that cross_entropy(lm_logits, lm_targets) is exactly HF's shifted mean CE.
  at::Tensor lm_logits;   // [M, V] model dtype (empty [0, V] without labels)
  at::Tensor lm_targets;  // int64 [M]
  at::Tensor labels;          // int64 [R, T] spliced labels (undefined without labels)
  at::Tensor attention_mask;  // [R, T] spliced mask (undefined if none was given)
  at::Tensor logits;          // [R, T, V] only with full_logits
  at::Tensor final_hidden;    // [R, T, H] only with keep_hidden
  SegPositions seg;                        // where the [SEG] prompts were taken
  std::vector<at::Tensor> seg_embeddings;  // per image [n_i, out_dim] (after text_hidden_fcs)
  std::vector<at::Tensor> pred_masks;      // per image fp32 [n_i, H_i, W_i] mask logits at the original size
                                           // (empty vector with compute_masks = false)
  std::vector<at::Tensor> low_res_masks;   // per image [n_i, 1, 4g, 4g] mask decoder output before postprocessing
                                           // (model dtype; empty vector with compute_masks = false)
};

// ---- generation ----

struct GenerationPrompt {
  std::vector<int64_t> ids;  // prompt token ids with exactly one -200 (text/prompt_encoding.h tokenizer_image_token)
  int64_t image = 0;         // which image of the request it is about
};

struct GenerationRequest {
  ImageBatch images;                     // each image is encoded once (CLIP before, SAM after generation)
  std::vector<GenerationPrompt> prompts;  // decoded together as one batch
  // Optional: image_features(images.clip_images) computed earlier ([B, N, H], model dtype and device), e.g. kept by
  // a chat session across rounds; CLIP is then skipped (timings.clip_s = 0). Undefined: CLIP runs here.
  at::Tensor image_features;
};

struct GenerationOptions {
  int64_t max_new_tokens = 512;  // LISA chat.py: 512 (M2SA's deleted chat.py: 2048)
  int64_t eos_token_id = 2;      // </s>
  bool compute_masks = true;     // run SAM for prompts whose answer has [SEG]
  bool keep_hidden = false;      // return every final hidden state (prompt + generated, minus the last token)
};

using llama::FinishReason;  // eos, max_new_tokens, context_full (llama/greedy_decode.h)
using llama::finish_reason_name;

// The reference's answer length for these weights: M2SA's evaluate / chat.py generate up to 2048 new tokens, LISA's
// chat.py 512. A model without M2SA's compress_vit (the LISA layout) gets 512, every other 2048.
inline constexpr int64_t kM2SAMaxNewTokens = 2048;
inline constexpr int64_t kLisaMaxNewTokens = 512;
int64_t reference_max_new_tokens(const M2SAConfig& config);

struct GenerationResult {
  std::vector<int64_t> output_ids;   // generated tokens only (the EOS included when reached)
  FinishReason finish_reason = FinishReason::kEos;
  std::vector<int64_t> seg_indices;  // index into output_ids of every [SEG], in order
  at::Tensor seg_embeddings;         // [n, out_dim] model dtype (n = seg_indices.size())
  at::Tensor masks;                  // fp32 [n, H, W] mask logits at the image's original size (> 0: foreground)
  int64_t prompt_length = 0;         // LLM positions of the prompt after the image splice
  at::Tensor hidden;                 // [prompt_length + output_ids.size() - 1, H] with keep_hidden
};

// Wall-clock seconds per stage (the device is synchronised at stage ends), for benchmarks and logs. On CUDA the SAM
// encoder runs on a side stream concurrently with the other stages: sam_s is then what remained to wait for after
// decoding (the encoder's share of the critical path), and the other stages may run slower while it runs.
struct GenerationTimings {
  double clip_s = 0, prefill_s = 0, decode_s = 0, sam_s = 0, masks_s = 0;
  int64_t prefill_tokens = 0;  // positions processed by the prefill (all prompts, padding included)
  int64_t decode_steps = 0;    // batched single-token steps
};

struct GenerationOutput {
  std::vector<GenerationResult> results;  // one per prompt, in request order
  GenerationTimings timings;
};

class M2SAForCausalLMImpl : public torch::nn::Module {
 public:
  // Builds every part with PyTorch/HF default initialisation; inside an nn::ShapeOnlyScope nothing is allocated.
  explicit M2SAForCausalLMImpl(const M2SAConfig& config);

  // ---- the pieces, one call each (spec 5.4) ----
  // CLIP features -> mm_projector: clip_images [B, 3, s, s] -> [B, N, H].
  at::Tensor image_features(const at::Tensor& clip_images) const;
  // SAM image encoder over sam_images [B, 3, S, S], up to max_batch images per encoder call (the reference's
  // get_visual_embs encodes one at a time; batches agree with that up to float rounding), then each image's
  // mask-decoder source SamFeatures::image (neck + compress_vit(early)), computed once here.
  SamFeatures sam_features(const at::Tensor& sam_images, int64_t max_batch = kSamEncoderBatch) const;
  // embed(input_ids) with the image features spliced at the -200 of every row: input_ids [R, L],
  // image_features [R, N, H] -> [R, L + N - 1, H].
  at::Tensor multimodal_embeddings(const at::Tensor& input_ids, const at::Tensor& image_features) const;
  // text_hidden_fcs: [..., H] -> [..., out_dim].
  at::Tensor project_seg(const at::Tensor& hidden) const;
  // One image's masks: prompts [n, out_dim] (n may be 0) and image `index` of `features` -> fp32 [n, H, W] logits
  // (prompt encoder text path, dense = no_mask_embed, multimask_output = false, postprocess to `original`). Reads
  // features.image (no compress_vit here).
  // low_res_masks (optional): receives the decoder output [n, 1, 4g, 4g] before postprocessing.
  at::Tensor decode_masks(const at::Tensor& prompts, const SamFeatures& features, int64_t index, ImageSize resized,
                          ImageSize original, at::Tensor* low_res_masks = nullptr) const;

  // ---- the two paths ----
  // Teacher-forced forward (training, and the reference's validation): logits at the supervised positions,
  // [SEG] prompts and masks per image. The losses are computed by the caller (train/m2sa_objective.h).
  ForwardOutput forward(const M2SABatch& batch, const ForwardOptions& options = {}) const;
  // Greedy decoding with the KV cache (spec 5.3): CLIP once per image, one batched prefill, single-token steps
  // until EOS / max_new_tokens; the hidden state before each generated [SEG] becomes its prompt; the SAM encoder
  // runs once per image, batched: on the CPU after generation, for the images that got a [SEG]; on CUDA for every
  // image, on a side stream started with the request (sam_encoding.h), concurrently with CLIP and decoding. Runs
  // without autograd. Only generated [SEG] tokens get masks (the reference's evaluate() would also pick [SEG]s
  // inside the prompt; chat.py prompts have none, and a chat history that repeats earlier answers must not
  // re-segment them).
  GenerationOutput generate(const GenerationRequest& request, const GenerationOptions& options = {}) const;

  // Also switches the held LlamaForCausalLM (it decides on gradient checkpointing by its own train flag).
  void train(bool on = true) override;

  const M2SAConfig& config() const { return config_; }
  // Every entry point above computes its attention in this mode (config m2sa.attention; `--attention`).
  void set_attention_mode(nn::AttentionMode mode) { config_.m2sa.attention = mode; }
  c10::Device device() const;
  at::ScalarType dtype() const;  // of the LLM weights (the whole model is cast together)

  llama::LlamaForCausalLM llm{nullptr};  // its `model` is this module's "model", its `lm_head` this "lm_head"
  nn::Linear mm_projector{nullptr};      // model.mm_projector
  sam::Sam visual_model{nullptr};        // model.visual_model
  TextHiddenFcs text_hidden_fcs{nullptr};  // model.text_hidden_fcs
  VisionTower vision_tower{nullptr};     // model.vision_tower

 private:
  void check_images(const ImageBatch& images, const char* who) const;
  M2SAConfig config_;
};
TORCH_MODULE(M2SAForCausalLM);

}  // namespace m2sa::m2sa_model
