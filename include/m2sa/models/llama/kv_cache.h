#pragma once
// Key/value cache for incremental decoding: per layer one preallocated key and one value buffer
// [B, heads, capacity, head_dim], reused across steps and across prompts (reset()), because fresh large
// allocations page-fault slowly on these machines (../shared/spec/TOOLCHAIN.md section 9, trap 3).
//
// Each sequence of the batch has its own length. A step appends T tokens to every sequence at slots
// lengths[b] .. lengths[b] + T - 1; only the first n_valid[b] of them count (right padding of a prompt), so the
// next step overwrites the padding. Attention then sees, for query t of sequence b, exactly the keys at slots
// <= lengths[b] + t, which makes a batch of prompts of different lengths decode like each prompt alone.
//
// The lengths live twice: on the host (sizes of views, room checks) and on the device (device_lengths(), from which
// a step's positions, write slots and masks are computed). A step that advances every sequence by the same count
// updates the device copy in place, so steady-state decoding copies nothing between host and device (issue 15).
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "m2sa/models/llama/llama_config.h"

namespace m2sa::llama {

class KVCache {
 public:
  // capacity: tokens per sequence, at most config.max_position_embeddings. options: dtype and device of the
  // model's activations (the buffers are zero-filled once here).
  KVCache(const LlamaConfig& config, int64_t batch_size, int64_t capacity, const c10::TensorOptions& options);

  int64_t batch_size() const { return batch_size_; }
  int64_t capacity() const { return capacity_; }
  int64_t num_layers() const { return static_cast<int64_t>(keys_.size()); }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  c10::TensorOptions options() const { return keys_.front().options(); }
  // Cached tokens per sequence.
  const std::vector<int64_t>& lengths() const { return lengths_; }
  // The same as int64 [B] on the buffers' device (updated by advance(); do not modify).
  const at::Tensor& device_lengths() const { return device_lengths_; }
  int64_t length(int64_t b) const;
  // Bytes held by the buffers.
  int64_t memory_bytes() const;
  // Forgets every sequence (keeps the buffers).
  void reset();

  // ---- used by LlamaForCausalLM::forward for one step of T tokens ----
  // Throws a clear error if lengths[b] + T exceeds the capacity for some b.
  void check_room(int64_t num_new) const;
  // Writes k / v [B, heads, T, D] of `layer` at slots lengths[b] + t and returns the keys and values of the
  // first max_b(lengths[b] + T) slots, [B, heads, kv_len, D] (views of the buffers).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // A fixed-shape step of one token per sequence (what a CUDA graph can replay): writes k / v [B, heads, 1, D] at
  // slot device_lengths[b] and returns the whole buffers [B, heads, capacity, D]; the attention mask must then
  // come from device_lengths(). Reads no host state.
  std::pair<at::Tensor, at::Tensor> append_at_device_lengths(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // After such a step: device_lengths += 1 on the device alone (part of the step, so a graph replays it) ...
  void advance_device_lengths();
  // ... and, once the step has been issued, the same on the host (by the caller: a graph replay runs no host code).
  void advance_host_lengths(int64_t n = 1);
  // After all layers: lengths[b] += n_valid[b]. Equal counts update the device copy in place; unequal ones copy
  // the new lengths to the device (batched prefill, or a finished sequence held in place).
  void advance(const std::vector<int64_t>& n_valid);

  // ---- changing the batch between steps (continuous batching: infer/ and serve/) ----
  // Keeps only the sequences `rows` (in that order; each in [0, batch_size)); the batch size becomes rows.size()
  // (which must be >= 1). Copies the kept rows into new buffers: cost ~ rows x capacity per layer.
  void keep_rows(const std::vector<int64_t>& rows);
  // Appends the sequences of `other` (same layers, heads, head_dim, dtype, device) after this cache's rows, with
  // their lengths. The capacity becomes the larger of the two. Copies every row into new buffers.
  void append_rows(const KVCache& other);

 private:
  int64_t batch_size_, capacity_, num_heads_, head_dim_;
  std::vector<at::Tensor> keys_, values_;
  std::vector<int64_t> lengths_;
  at::Tensor device_lengths_;
};

}  // namespace m2sa::llama
