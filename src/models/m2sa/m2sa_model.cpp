#include "m2sa/models/m2sa/m2sa_model.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/models/m2sa/sam_encoding.h"
#include "m2sa/nn/attention.h"

namespace m2sa::m2sa_model {

namespace {

bool any_requires_grad(const torch::nn::Module& m) {
  for (const auto& p : m.parameters(/*recurse=*/true))
    if (p.requires_grad()) return true;
  return false;
}

std::string shape_of(const at::Tensor& t) { return t.defined() ? c10::str(t.sizes()) : std::string("undefined"); }

// Waits for the device so that stage timings mean something on CUDA (a tiny copy to the host).
void sync_device(const at::Tensor& t) {
  if (t.defined() && t.numel() > 0 && !t.is_cpu()) (void)t.reshape({-1}).slice(0, 0, 1).to(at::kCPU);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int64_t reference_max_new_tokens(const M2SAConfig& config) {
  return config.sam.mask_decoder.compress_vit ? kM2SAMaxNewTokens : kLisaMaxNewTokens;
}

// ---- parts ----

TextHiddenFcsImpl::TextHiddenFcsImpl(int64_t hidden_size, int64_t out_dim) {
  auto list = std::make_shared<torch::nn::Module>("ModuleList");
  register_module("0", list);
  // Sequential indices: 0 Linear, 1 ReLU, 2 Linear, 3 Dropout(0.0) (no parameters at 1 and 3).
  fc1 = list->register_module("0", nn::Linear(hidden_size, hidden_size));
  fc2 = list->register_module("2", nn::Linear(hidden_size, out_dim));
}

at::Tensor TextHiddenFcsImpl::forward(const at::Tensor& hidden) const {
  return fc2->forward(at::relu(fc1->forward(hidden)));
}

VisionTowerImpl::VisionTowerImpl(const clip::ClipVisionConfig& config) {
  vision_tower = register_module("vision_tower", clip::ClipVisionModel(config));
}

// ---- model ----

M2SAForCausalLMImpl::M2SAForCausalLMImpl(const M2SAConfig& config) : config_(config) {
  config_.validate();
  const M2SAConfig& c = config_;
  llm = llama::LlamaForCausalLM(c.llama);
  // The LLaMA body is this module's "model"; M2SA's parts live inside it, as in M2SAModel (LlavaLlamaModel).
  auto body = register_module("model", llm->model);
  mm_projector = body->register_module("mm_projector", nn::Linear(c.mm_hidden_size(), c.hidden_size()));
  visual_model = body->register_module("visual_model", sam::Sam(c.sam));
  text_hidden_fcs = body->register_module("text_hidden_fcs", TextHiddenFcs(c.hidden_size(), c.m2sa.out_dim));
  vision_tower = body->register_module("vision_tower", VisionTower(c.clip));
  register_module("lm_head", llm->lm_head);
}

void M2SAForCausalLMImpl::train(bool on) {
  torch::nn::Module::train(on);
  llm->train(on);
}

c10::Device M2SAForCausalLMImpl::device() const { return llm->model->norm->weight.device(); }
at::ScalarType M2SAForCausalLMImpl::dtype() const { return llm->model->norm->weight.scalar_type(); }

at::Tensor M2SAForCausalLMImpl::image_features(const at::Tensor& clip_images) const {
  nn::AttentionModeGuard attention_mode(config_.m2sa.attention);
  const clip::ClipVisionModel& tower = vision_tower->vision_tower;
  const int64_t s = config_.clip.image_size;
  M2SA_CHECK(clip_images.defined() && clip_images.dim() == 4 && clip_images.size(1) == 3 && clip_images.size(2) == s &&
                 clip_images.size(3) == s && clip_images.size(0) >= 1,
             "M2SA: CLIP images must be [B, 3, ", s, ", ", s, "] (clip_preprocess output), got ", shape_of(clip_images));
  const at::Tensor& w = mm_projector->weight;
  at::Tensor px = clip_images.to(w.device());
  at::Tensor feats;
  {
    // LLaVA's vision tower runs under no_grad (frozen); only a tower being trained from scratch records a graph.
    std::optional<at::NoGradGuard> no_grad;
    if (!any_requires_grad(*tower)) no_grad.emplace();
    feats = tower->image_features(px);  // [B, N, W]
  }
  return mm_projector->forward(feats.to(w.scalar_type()));  // [B, N, H]
}

SamFeatures SamFeatures::slice(int64_t begin, int64_t end) const {
  SamFeatures f;
  if (neck.defined()) f.neck = neck.slice(0, begin, end);
  if (early.defined()) f.early = early.slice(0, begin, end);
  if (image.defined()) f.image = image.slice(0, begin, end);
  return f;
}

SamFeatures M2SAForCausalLMImpl::sam_features(const at::Tensor& sam_images, int64_t max_batch) const {
  nn::AttentionModeGuard attention_mode(config_.m2sa.attention);
  const auto& encoder = visual_model->image_encoder;
  const auto& decoder = visual_model->mask_decoder;
  const int64_t s = config_.sam.image_encoder.img_size;
  M2SA_CHECK(sam_images.defined() && sam_images.dim() == 4 && sam_images.size(1) == 3 && sam_images.size(2) == s &&
                 sam_images.size(3) == s && sam_images.size(0) >= 1,
             "M2SA: SAM images must be [B, 3, ", s, ", ", s, "] (sam_preprocess output: normalised, zero-padded), got ",
             shape_of(sam_images));
  M2SA_CHECK(max_batch >= 1, "M2SA: the SAM encoder batch must be >= 1, got ", max_batch);
  const at::Tensor& w = encoder->patch_embed->proj->weight;
  const bool fuse = decoder->has_compress_vit();
  const int64_t b = sam_images.size(0);
  std::vector<at::Tensor> necks, earlies;
  {
    std::optional<at::NoGradGuard> no_grad;  // get_visual_embs: torch.no_grad() (frozen encoder)
    if (!any_requires_grad(*encoder)) no_grad.emplace();
    for (int64_t i = 0; i < b; i += max_batch) {
      sam::EncoderOutput out =
          encoder->forward(sam_images.slice(0, i, std::min(b, i + max_batch)).to(w.device(), w.scalar_type()));
      necks.push_back(out.neck);
      if (fuse) earlies.push_back(out.early.permute({0, 3, 1, 2}));  // [b, g, g, E] -> [b, E, g, g]
    }
  }
  SamFeatures f;
  f.neck = at::cat(necks, 0);
  if (fuse) f.early = at::cat(earlies, 0);
  // The mask decoder's source, once per image and image by image, exactly as the reference's per-call fusion
  // (MMR:model/segment_anything/modeling/mask_decoder.py:131-177). Outside the encoder's no_grad: compress_vit
  // trains with the decoder.
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < b; ++i) {
    std::optional<at::Tensor> early;
    if (fuse) early = f.early.slice(0, i, i + 1);
    images.push_back(decoder->fuse(f.neck.slice(0, i, i + 1), early));
  }
  f.image = at::cat(images, 0);
  return f;
}

at::Tensor M2SAForCausalLMImpl::multimodal_embeddings(const at::Tensor& input_ids,
                                                      const at::Tensor& image_features) const {
  const std::vector<int64_t> placeholders = image_placeholders(input_ids);
  // The placeholder is not a vocabulary id: embed a valid id there and drop it in the splice.
  at::Tensor ids = input_ids.masked_fill(input_ids == kImageTokenIndex, 0);
  return splice_image_features(llm->embed(ids), image_features, placeholders);
}

at::Tensor M2SAForCausalLMImpl::project_seg(const at::Tensor& hidden) const { return text_hidden_fcs->forward(hidden); }

at::Tensor M2SAForCausalLMImpl::decode_masks(const at::Tensor& prompts, const SamFeatures& features, int64_t index,
                                             ImageSize resized, ImageSize original, at::Tensor* low_res_masks) const {
  nn::AttentionModeGuard attention_mode(config_.m2sa.attention);
  const int64_t out_dim = config_.m2sa.out_dim;
  M2SA_CHECK(prompts.defined() && prompts.dim() == 2 && prompts.size(1) == out_dim,
             "M2SA mask decoding: prompts must be [n, ", out_dim, "], got ", shape_of(prompts));
  M2SA_CHECK(features.neck.defined() && index >= 0 && index < features.neck.size(0),
             "M2SA mask decoding: image ", index, " is not among the ", features.neck.defined() ? features.neck.size(0) : 0,
             " encoded images");
  M2SA_CHECK(original[0] > 0 && original[1] > 0, "M2SA mask decoding: original size (", original[0], ", ",
             original[1], ") must be positive");
  const int64_t n = prompts.size(0);
  if (n == 0) {
    if (low_res_masks != nullptr) {
      const int64_t side = config_.sam.low_res_size();
      *low_res_masks = at::zeros({0, 1, side, side}, features.neck.options());
    }
    return at::zeros({0, original[0], original[1]}, at::TensorOptions().dtype(at::kFloat).device(features.neck.device()));
  }
  const auto& pe = visual_model->prompt_encoder;
  sam::PromptEmbeddings p = pe->text_prompt(prompts.unsqueeze(1));  // sparse [n, 1, C], dense [n, C, g, g]
  at::Tensor image;  // [1, C, g, g]
  if (features.image.defined()) {
    image = features.image.slice(0, index, index + 1);
  } else {
    std::optional<at::Tensor> early;
    if (features.early.defined()) early = features.early.slice(0, index, index + 1);
    image = visual_model->mask_decoder->fuse(features.neck.slice(0, index, index + 1), early);
  }
  sam::DecoderOutput d = visual_model->mask_decoder->forward_fused(image, pe->get_dense_pe(),
                                                                   p.sparse.to(prompts.scalar_type()), p.dense,
                                                                   /*multimask_output=*/false);
  if (low_res_masks != nullptr) *low_res_masks = d.masks;  // [n, 1, 4g, 4g]
  at::Tensor masks = visual_model->postprocess_masks(d.masks, {resized[0], resized[1]}, {original[0], original[1]});
  return masks.select(1, 0);  // [n, H, W] fp32
}

void M2SAForCausalLMImpl::check_images(const ImageBatch& images, const char* who) const {
  M2SA_CHECK(images.sam_images.defined() && images.clip_images.defined(), who,
             ": the batch needs both SAM images and CLIP images");
  const int64_t b = images.sam_images.dim() == 4 ? images.sam_images.size(0) : -1;
  M2SA_CHECK(b >= 1, who, ": SAM images must be [B, 3, S, S] with B >= 1, got ", shape_of(images.sam_images));
  M2SA_CHECK(images.clip_images.dim() == 4 && images.clip_images.size(0) == b, who, ": ", b,
             " SAM images but CLIP images ", shape_of(images.clip_images));
  M2SA_CHECK(static_cast<int64_t>(images.resized_hw.size()) == b && static_cast<int64_t>(images.original_hw.size()) == b,
             who, ": ", b, " images but ", images.resized_hw.size(), " resized sizes and ", images.original_hw.size(),
             " original sizes");
  const int64_t s = config_.sam.image_encoder.img_size;
  for (int64_t i = 0; i < b; ++i) {
    const ImageSize r = images.resized_hw[static_cast<std::size_t>(i)];
    const ImageSize o = images.original_hw[static_cast<std::size_t>(i)];
    M2SA_CHECK(r[0] > 0 && r[1] > 0 && r[0] <= s && r[1] <= s, who, ": image ", i, ": resized size (", r[0], ", ",
               r[1], ") must lie inside the ", s, "x", s, " SAM input");
    M2SA_CHECK(o[0] > 0 && o[1] > 0, who, ": image ", i, ": original size (", o[0], ", ", o[1], ") must be positive");
  }
}

// ---- teacher-forced forward ----

ForwardOutput M2SAForCausalLMImpl::forward(const M2SABatch& batch, const ForwardOptions& options) const {
  nn::AttentionModeGuard attention_mode(config_.m2sa.attention);
  const char* who = "M2SA forward";
  check_images(batch.images, who);
  const int64_t b = batch.images.size();
  M2SA_CHECK(batch.input_ids.defined() && batch.input_ids.dim() == 2 && batch.input_ids.size(0) >= 1, who,
             ": input_ids must be int64 [R, L] with R >= 1 conversations, got ", shape_of(batch.input_ids));
  const int64_t rows = batch.input_ids.size(0);
  with_context(who, [&] { check_offset(batch.offset, b, rows); });
  if (batch.attention_mask.defined())
    M2SA_CHECK(batch.attention_mask.sizes() == batch.input_ids.sizes(), who, ": attention_mask ",
               shape_of(batch.attention_mask), " does not match input_ids ", shape_of(batch.input_ids));
  if (batch.labels.defined())
    M2SA_CHECK(batch.labels.sizes() == batch.input_ids.sizes() && batch.labels.scalar_type() == at::kLong, who,
               ": labels must be int64 like input_ids ", shape_of(batch.input_ids), ", got ",
               batch.labels.scalar_type(), " ", shape_of(batch.labels));
  const int64_t n = config_.num_image_tokens();
  const std::vector<int64_t> placeholders = with_context(who, [&] { return image_placeholders(batch.input_ids); });
  const SegPositions seg = with_context(who, [&] {
    return seg_positions(batch.input_ids, config_.m2sa.seg_token_id, n, batch.offset);
  });

  ForwardOutput out;
  out.seg = seg;
  // SAM first, as model_forward does (no autograd unless the encoder itself is being trained).
  SamFeatures sam;
  if (options.compute_masks) sam = sam_features(batch.images.sam_images);

  // CLIP once per image, repeated over the image's conversations.
  const at::Tensor feats = image_features(batch.images.clip_images);  // [B, N, H]
  std::vector<int64_t> row_image(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t r = batch.offset[static_cast<std::size_t>(i)]; r < batch.offset[static_cast<std::size_t>(i) + 1]; ++r)
      row_image[static_cast<std::size_t>(r)] = i;
  const at::Tensor row_feats =
      feats.index_select(0, at::tensor(row_image, at::TensorOptions().dtype(at::kLong)).to(feats.device()));
  const at::Tensor embeds = multimodal_embeddings(batch.input_ids, row_feats);  // [R, T, H]

  llama::ForwardOptions lo;
  if (batch.attention_mask.defined()) {
    out.attention_mask = splice_attention_mask(batch.attention_mask, placeholders, n);
    lo.attention_mask = out.attention_mask;
  }
  lo.last_logits_only = !options.full_logits;  // the logits we need are computed below, where supervised
  llama::LlamaOutput lm = llm->forward(embeds, lo);
  const at::Tensor& hidden = lm.final_hidden;  // [R, T, H]
  const int64_t t = hidden.size(1), h = hidden.size(2), vocab = config_.vocab_size();
  if (options.full_logits) out.logits = lm.logits;
  if (options.keep_hidden) out.final_hidden = hidden;

  if (batch.labels.defined()) {
    out.labels = splice_labels(batch.labels, placeholders, n);
    // HF: logits[:, :-1] predict labels[:, 1:]; only positions with a label count.
    const at::Tensor next = out.labels.slice(1, 1).to(hidden.device());                 // [R, T - 1]
    const at::Tensor idx = next.ne(kIgnoreIndex).reshape({-1}).nonzero().squeeze(1);       // [M]
    out.lm_targets = next.reshape({-1}).index_select(0, idx);
    if (out.lm_targets.numel() > 0) {
      const int64_t lo_id = out.lm_targets.min().item<int64_t>(), hi_id = out.lm_targets.max().item<int64_t>();
      M2SA_CHECK(lo_id >= 0 && hi_id < vocab, who, ": label ", lo_id < 0 ? lo_id : hi_id, " is outside the vocabulary [0, ",
                 vocab, ") and is not the ignore index ", kIgnoreIndex);
    }
    const at::Tensor picked = hidden.slice(1, 0, t - 1).reshape({-1, h}).index_select(0, idx);  // [M, H]
    out.lm_logits = llm->lm_head->forward(picked);                                              // [M, V]
  } else {
    out.lm_logits = at::empty({0, vocab}, hidden.options());
    out.lm_targets = at::empty({0}, at::TensorOptions().dtype(at::kLong).device(hidden.device()));
  }

  const std::vector<at::Tensor> states = gather_seg_states(hidden, seg);
  for (int64_t i = 0; i < b; ++i) {
    const auto k = static_cast<std::size_t>(i);
    at::Tensor prompts = project_seg(states[k]);  // [n_i, out_dim]
    out.seg_embeddings.push_back(prompts);
    if (options.compute_masks) {
      at::Tensor low_res;
      out.pred_masks.push_back(
          decode_masks(prompts, sam, i, batch.images.resized_hw[k], batch.images.original_hw[k], &low_res));
      out.low_res_masks.push_back(low_res);
    }
  }
  return out;
}

// ---- generation ----

GenerationOutput M2SAForCausalLMImpl::generate(const GenerationRequest& request, const GenerationOptions& opt) const {
  nn::AttentionModeGuard attention_mode(config_.m2sa.attention);
  const char* who = "M2SA generate";
  at::NoGradGuard no_grad;
  check_images(request.images, who);
  const int64_t num_images = request.images.size();
  const int64_t k_total = static_cast<int64_t>(request.prompts.size());
  M2SA_CHECK(k_total >= 1, who, ": no prompts");
  M2SA_CHECK(opt.max_new_tokens >= 1, who, ": max_new_tokens must be >= 1, got ", opt.max_new_tokens);
  const int64_t vocab = config_.vocab_size(), max_pos = config_.llama.max_position_embeddings;
  M2SA_CHECK(opt.eos_token_id >= 0 && opt.eos_token_id < vocab, who, ": eos_token_id ", opt.eos_token_id,
             " is outside the vocabulary [0, ", vocab, ")");
  for (int64_t k = 0; k < k_total; ++k) {
    const GenerationPrompt& p = request.prompts[static_cast<std::size_t>(k)];
    M2SA_CHECK(p.image >= 0 && p.image < num_images, who, ": prompt ", k, " refers to image ", p.image, " but the request has ",
               num_images, " image(s)");
    M2SA_CHECK(!p.ids.empty(), who, ": prompt ", k, " has no tokens");
  }
  const int64_t n = config_.num_image_tokens();
  const c10::Device dev = device();
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  GenerationOutput result;
  GenerationTimings& tm = result.timings;

  // 0. On CUDA, the SAM encoder starts now on a side stream and runs while CLIP, prefill and decoding do; on the
  //    CPU it runs in step 5, for the images that need it (sam_encoding.h).
  SamEncoding early_sam;
  if (opt.compute_masks) early_sam = SamEncoding::start(*this, request.images.sam_images);

  // 1. CLIP once per image (unless the caller kept the features).
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor feats;  // [B, N, H]
  if (request.image_features.defined()) {
    const at::Tensor& f = request.image_features;
    M2SA_CHECK(f.dim() == 3 && f.size(0) == num_images && f.size(1) == n && f.size(2) == config_.hidden_size(), who,
               ": image_features must be [", num_images, ", ", n, ", ", config_.hidden_size(),
               "] (image_features() of the request's images), got ", shape_of(f));
    feats = f.to(dev, dtype());
  } else {
    feats = image_features(request.images.clip_images);
    sync_device(feats);
    tm.clip_s = seconds_since(t0);
  }

  // 2. Prefill: every prompt's spliced embeddings, right-padded to the longest.
  t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> embeds;
  std::vector<int64_t> plen;
  for (int64_t k = 0; k < k_total; ++k) {
    const GenerationPrompt& p = request.prompts[static_cast<std::size_t>(k)];
    at::Tensor ids = at::tensor(p.ids, long_cpu).unsqueeze(0);  // [1, L]
    at::Tensor e = with_context(std::string(who) + ": prompt " + std::to_string(k), [&] {
      return multimodal_embeddings(ids, feats.slice(0, p.image, p.image + 1));
    });  // [1, P, H]
    plen.push_back(e.size(1));
    embeds.push_back(e);
  }
  const int64_t pmax = *std::max_element(plen.begin(), plen.end());
  for (int64_t k = 0; k < k_total; ++k)
    M2SA_CHECK(plen[static_cast<std::size_t>(k)] < max_pos, who, ": prompt ", k, " has ", plen[static_cast<std::size_t>(k)],
               " positions after the image splice (", n, " image tokens), which leaves no room to generate within "
               "llama.max_position_embeddings = ", max_pos);
  at::Tensor mask = at::zeros({k_total, pmax}, long_cpu);
  for (int64_t k = 0; k < k_total; ++k) {
    const int64_t pk = plen[static_cast<std::size_t>(k)];
    mask[k].slice(0, 0, pk).fill_(1);
    if (pk < pmax) embeds[static_cast<std::size_t>(k)] = at::cat(
        {embeds[static_cast<std::size_t>(k)], at::zeros({1, pmax - pk, embeds[0].size(2)}, embeds[0].options())}, 1);
  }
  const int64_t capacity = std::min(max_pos, pmax + opt.max_new_tokens);
  llama::KVCache cache = llm->make_cache(k_total, capacity);
  llama::ForwardOptions lo;
  lo.attention_mask = mask;
  lo.cache = &cache;
  lo.last_logits_only = true;
  llama::LlamaOutput pre = llm->forward(at::cat(embeds, 0), lo);
  const at::Tensor prefill_hidden = pre.final_hidden;  // [K, Pmax, H]
  at::Tensor logits = pre.logits;                      // [K, 1, V]
  sync_device(logits);
  tm.prefill_s = seconds_since(t0);
  tm.prefill_tokens = k_total * pmax;

  // 3. Greedy decoding (llama/greedy_decode.h: no host sync per token in the steady state).
  t0 = std::chrono::steady_clock::now();
  llama::GreedyDecodeOptions gdo;
  gdo.max_new_tokens = opt.max_new_tokens;
  gdo.eos_token_id = opt.eos_token_id;
  llama::GreedyDecodeOutput decoded = llama::greedy_decode(llm, cache, logits, gdo);
  const std::vector<at::Tensor>& step_hidden = decoded.step_hidden;
  std::vector<GenerationResult> res(static_cast<std::size_t>(k_total));
  for (int64_t k = 0; k < k_total; ++k) {
    res[static_cast<std::size_t>(k)].output_ids = std::move(decoded.output_ids[static_cast<std::size_t>(k)]);
    res[static_cast<std::size_t>(k)].finish_reason = decoded.finish_reasons[static_cast<std::size_t>(k)];
  }
  tm.decode_steps = decoded.steps;
  tm.decode_s = seconds_since(t0);

  // 4. [SEG] prompts: the state before each generated [SEG] (spec 5.3).
  const int64_t seg_id = config_.m2sa.seg_token_id;
  auto state_at = [&](int64_t k, int64_t pos) -> at::Tensor {  // final hidden state of row k at LLM position pos
    const int64_t pk = plen[static_cast<std::size_t>(k)];
    if (pos < pk) return prefill_hidden[k][pos];
    return step_hidden[static_cast<std::size_t>(pos - pk)][k][0];
  };
  std::vector<bool> image_needed(static_cast<std::size_t>(num_images), false);
  for (int64_t k = 0; k < k_total; ++k) {
    GenerationResult& r = res[static_cast<std::size_t>(k)];
    const int64_t pk = plen[static_cast<std::size_t>(k)];
    r.prompt_length = pk;
    std::vector<at::Tensor> states;
    for (std::size_t j = 0; j < r.output_ids.size(); ++j) {
      if (r.output_ids[j] != seg_id) continue;
      r.seg_indices.push_back(static_cast<int64_t>(j));
      states.push_back(state_at(k, pk + static_cast<int64_t>(j) - 1));
    }
    r.seg_embeddings = states.empty() ? at::empty({0, config_.m2sa.out_dim}, prefill_hidden.options())
                                      : project_seg(at::stack(states, 0));
    if (!states.empty()) image_needed[static_cast<std::size_t>(request.prompts[static_cast<std::size_t>(k)].image)] = true;
    if (opt.keep_hidden) {
      std::vector<at::Tensor> parts{prefill_hidden[k].slice(0, 0, pk)};
      for (std::size_t s = 0; s + 1 < r.output_ids.size(); ++s) parts.push_back(step_hidden[s][k]);
      r.hidden = at::cat(parts, 0);
    }
  }

  // 5. SAM once per image that got a [SEG] (the reference encodes after generation, as evaluate() does), all of
  //    them in one encoder batch, then the masks.
  if (opt.compute_masks) {
    t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> sam_row(static_cast<std::size_t>(num_images), -1);  // image -> row of `sam`
    SamFeatures sam;
    if (early_sam.started()) {
      sam = early_sam.wait();
      for (int64_t i = 0; i < num_images; ++i) sam_row[static_cast<std::size_t>(i)] = i;
    } else {
      std::vector<int64_t> needed;
      for (int64_t i = 0; i < num_images; ++i)
        if (image_needed[static_cast<std::size_t>(i)]) {
          sam_row[static_cast<std::size_t>(i)] = static_cast<int64_t>(needed.size());
          needed.push_back(i);
        }
      if (!needed.empty())
        sam = sam_features(request.images.sam_images.index_select(0, at::tensor(needed, long_cpu).to(
                                                                          request.images.sam_images.device())));
    }
    sync_device(sam.neck);
    tm.sam_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int64_t k = 0; k < k_total; ++k) {
      GenerationResult& r = res[static_cast<std::size_t>(k)];
      const auto img = static_cast<std::size_t>(request.prompts[static_cast<std::size_t>(k)].image);
      const ImageSize original = request.images.original_hw[img];
      if (r.seg_indices.empty()) {
        r.masks = at::zeros({0, original[0], original[1]}, at::TensorOptions().dtype(at::kFloat).device(dev));
        continue;
      }
      r.masks = decode_masks(r.seg_embeddings, sam, sam_row[img], request.images.resized_hw[img], original);
    }
    for (const auto& r : res) sync_device(r.masks);
    tm.masks_s = seconds_since(t0);
  }
  result.results = std::move(res);
  return result;
}

}  // namespace m2sa::m2sa_model
