#include "m2sa/models/llama/llama_model.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <string>

#include "m2sa/core/error.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/nn/checkpoint.h"
#include "m2sa/nn/init.h"

namespace m2sa::llama {

namespace {

at::TensorOptions long_on(const c10::Device& d) { return at::TensorOptions().dtype(at::kLong).device(d); }

// Per-row counts of real tokens from a right-padded 0/1 mask [B, T]; errors explain what is wrong.
std::vector<int64_t> real_token_counts(const at::Tensor& mask, int64_t b, int64_t t) {
  M2SA_CHECK(mask.dim() == 2 && mask.size(0) == b && mask.size(1) == t, "LLaMA forward: attention_mask must be [",
             b, ", ", t, "] like the inputs, got ", mask.sizes());
  M2SA_CHECK(mask.scalar_type() == at::kBool || at::isIntegralType(mask.scalar_type(), /*includeBool=*/false) ||
                 at::isFloatingType(mask.scalar_type()),
             "LLaMA forward: attention_mask has unsupported dtype ", mask.scalar_type());
  // A mask made on the host (as the decoding loops make theirs) is read in place; one on the device is copied once.
  at::Tensor m = (mask.device().is_cpu() ? mask : mask.to(at::kCPU)).to(at::kDouble).contiguous();
  const double* p = m.data_ptr<double>();
  for (int64_t i = 0; i < b * t; ++i)
    M2SA_CHECK(p[i] == 0 || p[i] == 1, "LLaMA forward: attention_mask must hold only 0 and 1, found ", p[i]);
  std::vector<int64_t> counts(b);
  for (int64_t r = 0; r < b; ++r) {
    int64_t n = 0;
    while (n < t && p[r * t + n] == 1) ++n;
    for (int64_t j = n; j < t; ++j)
      M2SA_CHECK(p[r * t + j] == 0, "LLaMA forward: attention_mask row ", r,
                 " is not right-padded (a 1 follows a 0 at position ", j, "); only right padding is supported");
    counts[r] = n;
  }
  return counts;
}

}  // namespace

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) {
  embed_tokens = register_module("embed_tokens", nn::Embedding(c.vocab_size, c.hidden_size));
  nn::normal_(embed_tokens->weight, 0.0, 0.02);  // HF _init_weights (initializer_range)
  auto list = register_module("layers", std::make_shared<torch::nn::Module>("ModuleList"));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers.push_back(list->register_module(std::to_string(i), LlamaDecoderLayer(c, i)));
  norm = register_module("norm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : config_(c) {
  c.validate();
  model = register_module("model", LlamaModel(c));
  lm_head = register_module("lm_head", nn::Linear(c.hidden_size, c.vocab_size, /*bias=*/false));
  nn::normal_(lm_head->weight, 0.0, 0.02);
}

nn::RotaryTables LlamaForCausalLMImpl::rotary(const c10::Device& device) const {
  std::lock_guard<std::mutex> lock(rotary_mutex_);
  if (!rotary_.cos.defined() || rotary_.cos.device() != device)
    rotary_ = nn::rotary_tables(config_.head_dim(), config_.max_position_embeddings, config_.rope_theta, device);
  return rotary_;
}

at::Tensor LlamaForCausalLMImpl::embed(const at::Tensor& ids) const {
  M2SA_CHECK(ids.defined() && ids.dim() == 2, "LLaMA embed: token ids must be [B, T], got ",
             ids.defined() ? c10::str(ids.sizes()) : std::string("an undefined tensor"));
  M2SA_CHECK(at::isIntegralType(ids.scalar_type(), /*includeBool=*/false), "LLaMA embed: token ids must be integers, got ",
             ids.scalar_type());
  const at::Tensor& w = model->embed_tokens->weight;
  M2SA_CHECK(ids.device() == w.device() || ids.device().is_cpu(), "LLaMA embed: token ids on ", ids.device(),
             " but the embeddings are on ", w.device());
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    M2SA_CHECK(lo >= 0 && hi < config_.vocab_size, "LLaMA embed: token id ", lo < 0 ? lo : hi,
               " is outside the vocabulary [0, ", config_.vocab_size, ")");
  }
  return model->embed_tokens->lookup(ids.to(w.device()).to(at::kLong));
}

at::Tensor LlamaForCausalLMImpl::embed_generated(const at::Tensor& ids) const {
  // No range check: an argmax over this model's logits is in the vocabulary by construction, and checking would
  // read the ids back to the host in every decoding step.
  return model->embed_tokens->lookup(ids);
}

int64_t LlamaForCausalLMImpl::fuse_projections() {
  int64_t fused = 0;
  for (auto& layer : model->layers) fused += static_cast<int64_t>(layer->self_attn->fuse_projections()) + static_cast<int64_t>(layer->mlp->fuse_projections());
  return fused;
}

KVCache LlamaForCausalLMImpl::make_cache(int64_t batch_size, int64_t capacity) const {
  const at::Tensor& w = model->norm->weight;
  return KVCache(config_, batch_size, capacity < 0 ? config_.max_position_embeddings : capacity, w.options());
}

LlamaOutput LlamaForCausalLMImpl::forward(const at::Tensor& inputs_embeds, const ForwardOptions& o) const {
  const LlamaConfig& c = config_;
  M2SA_CHECK(inputs_embeds.defined() && inputs_embeds.dim() == 3 && inputs_embeds.size(2) == c.hidden_size,
             "LLaMA forward: inputs_embeds must be [B, T, ", c.hidden_size, "], got ",
             inputs_embeds.defined() ? c10::str(inputs_embeds.sizes()) : std::string("an undefined tensor"));
  const int64_t b = inputs_embeds.size(0), t = inputs_embeds.size(1), d = c.head_dim();
  M2SA_CHECK(b > 0 && t > 0, "LLaMA forward: empty input ", inputs_embeds.sizes());
  const at::Tensor& w = model->norm->weight;
  const c10::Device device = w.device();
  M2SA_CHECK(inputs_embeds.device() == device, "LLaMA forward: inputs_embeds on ", inputs_embeds.device(),
             " but the weights are on ", device);
  M2SA_CHECK(at::isFloatingType(inputs_embeds.scalar_type()), "LLaMA forward: inputs_embeds must be floating point");
  at::Tensor h = inputs_embeds.to(w.scalar_type());

  // Real tokens per row.
  std::vector<int64_t> n_real(b, t);
  const bool padded = o.attention_mask.defined();
  if (padded) {
    n_real = real_token_counts(o.attention_mask, b, t);
    if (!o.cache)
      for (int64_t r = 0; r < b; ++r)
        M2SA_CHECK(n_real[r] > 0, "LLaMA forward: attention_mask row ", r, " has no real token");
  }

  if (o.fixed_shape)
    M2SA_CHECK(o.cache && t == 1 && !o.attention_mask.defined() && !o.position_ids.defined(),
               "LLaMA forward: a fixed-shape step takes one token per row, a cache, and no attention_mask or "
               "position_ids (got T = ", t, ")");

  // Cache compatibility and room; start offsets.
  std::vector<int64_t> start(b, 0);
  if (o.cache) {
    KVCache& cache = *o.cache;
    M2SA_CHECK(cache.num_layers() == c.num_hidden_layers && cache.num_heads() == c.num_attention_heads &&
                   cache.head_dim() == d,
               "LLaMA forward: the KV cache was made for ", cache.num_layers(), " layers x ", cache.num_heads(),
               " heads x ", cache.head_dim(), ", the model has ", c.num_hidden_layers, " x ", c.num_attention_heads,
               " x ", d);
    M2SA_CHECK(cache.batch_size() == b, "LLaMA forward: the KV cache holds ", cache.batch_size(),
               " sequences, the input has ", b);
    M2SA_CHECK(cache.options().device() == device && cache.options().dtype() == w.dtype(),
               "LLaMA forward: the KV cache is ", cache.options().dtype(), " on ", cache.options().device(),
               ", the model ", w.dtype(), " on ", device);
    cache.check_room(t);
    start = cache.lengths();
  } else {
    M2SA_CHECK(t <= c.max_position_embeddings, "LLaMA forward: a sequence of ", t,
               " tokens is longer than max_position_embeddings = ", c.max_position_embeddings);
  }

  // Rotary positions [B, T].
  at::Tensor positions;
  if (o.position_ids.defined()) {
    const at::Tensor& p = o.position_ids;
    M2SA_CHECK(p.dim() == 2 && p.size(0) == b && p.size(1) == t, "LLaMA forward: position_ids must be [", b, ", ",
               t, "], got ", p.sizes());
    M2SA_CHECK(at::isIntegralType(p.scalar_type(), false), "LLaMA forward: position_ids must be integers");
    const int64_t lo = p.min().item<int64_t>(), hi = p.max().item<int64_t>();
    M2SA_CHECK(lo >= 0 && hi < c.max_position_embeddings, "LLaMA forward: position id ", lo < 0 ? lo : hi,
               " is outside [0, max_position_embeddings = ", c.max_position_embeddings, ")");
    positions = p.to(device).to(at::kLong);
  } else if (o.cache) {
    positions = o.cache->device_lengths().unsqueeze(1) + at::arange(t, long_on(device)).unsqueeze(0);
  } else {
    positions = at::arange(t, long_on(device)).unsqueeze(0).expand({b, t});
  }

  LayerStep step;
  {
    const nn::RotaryTables tables = rotary(device);
    const at::Tensor flat = positions.reshape({-1});
    step.cos = tables.cos.index_select(0, flat).view({b, 1, t, d}).to(h.scalar_type());
    step.sin = tables.sin.index_select(0, flat).view({b, 1, t, d}).to(h.scalar_type());
  }
  if (o.fixed_shape) {
    // Row b sees slots <= device_lengths[b] of the whole buffer (its history and the token written now).
    const int64_t cap = o.cache->capacity();
    step.mask = (at::arange(cap, long_on(device)).view({1, 1, 1, cap}) <=
                 o.cache->device_lengths().view({b, 1, 1, 1}));                                  // [B, 1, 1, cap]
    step.cache = o.cache;
    step.fixed_shape = true;
  } else if (o.cache) {
    // Query t of row b sees slots <= start[b] + t: its own history, this step's earlier tokens, itself. When every
    // row starts at the same slot that is causal attention aligned to the end of the keys, and for a single new
    // token no mask at all (so SDPA may take its flash kernel); otherwise an explicit mask from the device lengths.
    const int64_t lo = *std::min_element(start.begin(), start.end());
    const int64_t hi = *std::max_element(start.begin(), start.end());
    if (lo == hi) {
      step.causal = t > 1;
    } else {
      const int64_t kv_len = hi + t;
      at::Tensor query_slot = o.cache->device_lengths().unsqueeze(1) + at::arange(t, long_on(device)).unsqueeze(0);
      at::Tensor key_slot = at::arange(kv_len, long_on(device));                                  // [Tk]
      step.mask = (key_slot.view({1, 1, kv_len}) <= query_slot.unsqueeze(2)).unsqueeze(1);        // [B, 1, T, Tk]
    }
    step.cache = o.cache;
  } else if (padded && *std::min_element(n_real.begin(), n_real.end()) < t) {
    // HF: causal mask plus the key padding mask.
    at::Tensor keep_key = at::arange(t, long_on(device)).unsqueeze(0) <
                          at::tensor(n_real, at::TensorOptions().dtype(at::kLong)).to(device).unsqueeze(1);  // [B, T]
    at::Tensor i = at::arange(t, long_on(device));
    at::Tensor causal = i.view({1, t}) <= i.view({t, 1});                                       // [T, T]
    step.mask = (causal.unsqueeze(0) & keep_key.unsqueeze(1)).unsqueeze(1);                     // [B, 1, T, T]
  }

  LlamaOutput out;
  const bool recompute = gradient_checkpointing_ && is_training() && at::GradMode::is_enabled() && !o.cache;
  for (const auto& layer : model->layers) {
    if (recompute) {
      LlamaDecoderLayer l = layer;
      h = nn::checkpoint([l, step](const at::Tensor& x) { return l->forward(x, step); }, h,
                         nn::trainable_parameters(*layer));
    } else {
      h = layer->forward(h, step);
    }
    if (o.keep_layer_states) out.layer_states.push_back(h);
  }
  out.final_hidden = model->norm->forward(h);  // [B, T, H]
  if (o.last_logits_only) {
    std::vector<int64_t> last(b);
    for (int64_t r = 0; r < b; ++r) last[r] = std::max<int64_t>(n_real[r] - 1, 0);
    at::Tensor picked;  // [B, 1, H]
    if (std::all_of(last.begin(), last.end(), [&](int64_t l) { return l == last.front(); })) {
      picked = out.final_hidden.narrow(1, last.front(), 1);
    } else {
      at::Tensor index = at::tensor(last, at::TensorOptions().dtype(at::kLong)).to(device).view({b, 1, 1});
      picked = out.final_hidden.gather(1, index.expand({b, 1, c.hidden_size}));
    }
    out.logits = lm_head->forward(picked);
  } else {
    out.logits = lm_head->forward(out.final_hidden);
  }
  if (o.fixed_shape) o.cache->advance_device_lengths();
  else if (o.cache) o.cache->advance(n_real);
  return out;
}

LlamaOutput LlamaForCausalLMImpl::forward_ids(const at::Tensor& ids, const ForwardOptions& options) const {
  return forward(embed(ids), options);
}

LoadReport LlamaForCausalLMImpl::load(const WeightStore& store, const KeyRules& rules) {
  LoadOptions options;
  options.rules = rules;
  return with_context("loading LLaMA weights from " + store.description(),
                      [&] { return load_weights(*this, store, options); });
}

}  // namespace m2sa::llama
