#include "m2sa/models/llama/kv_cache.h"

#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>

#include <algorithm>

#include "m2sa/core/error.h"

namespace m2sa::llama {

KVCache::KVCache(const LlamaConfig& config, int64_t batch_size, int64_t capacity, const c10::TensorOptions& options)
    : batch_size_(batch_size), capacity_(capacity), num_heads_(config.num_attention_heads), head_dim_(config.head_dim()) {
  config.validate();
  M2SA_CHECK(batch_size > 0, "KVCache: batch size must be positive, got ", batch_size);
  M2SA_CHECK(capacity > 0 && capacity <= config.max_position_embeddings, "KVCache: capacity ", capacity,
             " must be in [1, max_position_embeddings = ", config.max_position_embeddings, "]");
  M2SA_CHECK(at::isFloatingType(c10::typeMetaToScalarType(options.dtype())), "KVCache: dtype must be floating point");
  keys_.reserve(config.num_hidden_layers);
  values_.reserve(config.num_hidden_layers);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    keys_.push_back(at::zeros({batch_size, num_heads_, capacity, head_dim_}, options));
    values_.push_back(at::zeros({batch_size, num_heads_, capacity, head_dim_}, options));
  }
  lengths_.assign(batch_size, 0);
  device_lengths_ = at::zeros({batch_size}, options.dtype(at::kLong));
}

int64_t KVCache::length(int64_t b) const {
  M2SA_CHECK(b >= 0 && b < batch_size_, "KVCache: sequence ", b, " is outside the batch of ", batch_size_);
  return lengths_[b];
}

int64_t KVCache::memory_bytes() const {
  int64_t n = 0;
  for (const auto& t : keys_) n += t.numel() * static_cast<int64_t>(t.element_size());
  return 2 * n;
}

void KVCache::reset() {
  std::fill(lengths_.begin(), lengths_.end(), 0);
  device_lengths_.zero_();
}

void KVCache::check_room(int64_t num_new) const {
  for (int64_t b = 0; b < batch_size_; ++b) {
    M2SA_CHECK(lengths_[b] + num_new <= capacity_, "KV cache overflow: sequence ", b, " holds ", lengths_[b],
               " tokens, this step adds ", num_new, ", capacity is ", capacity_,
               " (make a larger cache, at most max_position_embeddings, or stop generating earlier)");
  }
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  M2SA_CHECK(layer >= 0 && layer < num_layers(), "KVCache: layer ", layer, " outside [0, ", num_layers(), ")");
  M2SA_CHECK(k.dim() == 4 && k.size(0) == batch_size_ && k.size(1) == num_heads_ && k.size(3) == head_dim_ &&
                 v.sizes() == k.sizes(),
             "KVCache: expected k/v [", batch_size_, ", ", num_heads_, ", T, ", head_dim_, "], got ", k.sizes(), " and ",
             v.sizes());
  const int64_t t = k.size(2);
  check_room(t);
  at::Tensor& kb = keys_[layer];
  at::Tensor& vb = values_[layer];
  const int64_t lo = *std::min_element(lengths_.begin(), lengths_.end());
  const int64_t hi = *std::max_element(lengths_.begin(), lengths_.end());
  if (lo == hi) {
    // Every sequence at the same offset: one contiguous block per buffer.
    kb.narrow(2, lo, t).copy_(k);
    vb.narrow(2, lo, t).copy_(v);
  } else {
    using at::indexing::Slice;
    const auto idx = at::TensorOptions().dtype(at::kLong).device(kb.device());
    at::Tensor batch = at::arange(batch_size_, idx).unsqueeze(1);                       // [B, 1]
    at::Tensor slots = device_lengths_.unsqueeze(1) + at::arange(t, idx).unsqueeze(0);  // [B, T]
    // Advanced indices around a slice put their broadcast dims first: the target is [B, T, heads, D].
    kb.index_put_({batch, Slice(), slots, Slice()}, k.permute({0, 2, 1, 3}));
    vb.index_put_({batch, Slice(), slots, Slice()}, v.permute({0, 2, 1, 3}));
  }
  const int64_t kv_len = hi + t;
  return {kb.narrow(2, 0, kv_len), vb.narrow(2, 0, kv_len)};
}

std::pair<at::Tensor, at::Tensor> KVCache::append_at_device_lengths(int64_t layer, const at::Tensor& k,
                                                                    const at::Tensor& v) {
  M2SA_CHECK(layer >= 0 && layer < num_layers(), "KVCache: layer ", layer, " outside [0, ", num_layers(), ")");
  M2SA_CHECK(k.dim() == 4 && k.size(0) == batch_size_ && k.size(1) == num_heads_ && k.size(2) == 1 &&
                 k.size(3) == head_dim_ && v.sizes() == k.sizes(),
             "KVCache: a fixed-shape step takes k/v [", batch_size_, ", ", num_heads_, ", 1, ", head_dim_, "], got ",
             k.sizes(), " and ", v.sizes());
  const at::Tensor slot = device_lengths_.view({batch_size_, 1, 1, 1}).expand({batch_size_, num_heads_, 1, head_dim_});
  keys_[layer].scatter_(2, slot, k);
  values_[layer].scatter_(2, slot, v);
  return {keys_[layer], values_[layer]};
}

void KVCache::advance_device_lengths() { device_lengths_.add_(1); }

void KVCache::advance_host_lengths(int64_t n) {
  check_room(n);
  for (auto& l : lengths_) l += n;
}

void KVCache::advance(const std::vector<int64_t>& n_valid) {
  M2SA_CHECK(static_cast<int64_t>(n_valid.size()) == batch_size_, "KVCache: ", n_valid.size(),
             " counts for a batch of ", batch_size_);
  for (int64_t b = 0; b < batch_size_; ++b) {
    M2SA_CHECK(n_valid[b] >= 0 && lengths_[b] + n_valid[b] <= capacity_, "KVCache: cannot advance sequence ", b,
               " by ", n_valid[b]);
    lengths_[b] += n_valid[b];
  }
  if (std::all_of(n_valid.begin(), n_valid.end(), [&](int64_t n) { return n == n_valid.front(); }))
    device_lengths_.add_(n_valid.front());
  else
    device_lengths_.copy_(at::tensor(lengths_, at::TensorOptions().dtype(at::kLong)));
}

void KVCache::keep_rows(const std::vector<int64_t>& rows) {
  M2SA_CHECK(!rows.empty(), "KVCache: keep_rows needs at least one row");
  for (int64_t r : rows)
    M2SA_CHECK(r >= 0 && r < batch_size_, "KVCache: row ", r, " is outside the batch of ", batch_size_);
  const at::Tensor index =
      at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(keys_.front().device());
  for (auto& t : keys_) t = t.index_select(0, index);
  for (auto& t : values_) t = t.index_select(0, index);
  device_lengths_ = device_lengths_.index_select(0, index);
  std::vector<int64_t> lengths;
  for (int64_t r : rows) lengths.push_back(lengths_[static_cast<std::size_t>(r)]);
  lengths_ = std::move(lengths);
  batch_size_ = static_cast<int64_t>(rows.size());
}

void KVCache::append_rows(const KVCache& other) {
  M2SA_CHECK(other.num_layers() == num_layers() && other.num_heads_ == num_heads_ && other.head_dim_ == head_dim_ &&
                 other.options().dtype() == options().dtype() && other.options().device() == options().device(),
             "KVCache: append_rows needs a cache of the same layout (layers, heads, head_dim, dtype, device)");
  const int64_t capacity = std::max(capacity_, other.capacity_);
  auto widen = [capacity](const at::Tensor& t) {
    if (t.size(2) == capacity) return t;
    at::Tensor w = at::zeros({t.size(0), t.size(1), capacity, t.size(3)}, t.options());
    w.narrow(2, 0, t.size(2)).copy_(t);
    return w;
  };
  for (std::size_t l = 0; l < keys_.size(); ++l) {
    keys_[l] = at::cat({widen(keys_[l]), widen(other.keys_[l])}, 0);
    values_[l] = at::cat({widen(values_[l]), widen(other.values_[l])}, 0);
  }
  lengths_.insert(lengths_.end(), other.lengths_.begin(), other.lengths_.end());
  device_lengths_ = at::cat({device_lengths_, other.device_lengths_});
  batch_size_ += other.batch_size_;
  capacity_ = capacity;
}

}  // namespace m2sa::llama
