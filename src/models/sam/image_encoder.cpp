#include "m2sa/models/sam/image_encoder.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/nn/attention.h"
#include "m2sa/nn/init.h"

namespace m2sa::sam {

// ---------------------------------------------------------------------------------------------------------------
// Reference helpers (segment_anything/modeling/image_encoder.py: window_partition, window_unpartition,
// get_rel_pos, add_decomposed_rel_pos).

std::pair<at::Tensor, std::pair<int64_t, int64_t>> window_partition(const at::Tensor& x, int64_t ws) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t pad_h = (ws - H % ws) % ws;
  const int64_t pad_w = (ws - W % ws) % ws;
  at::Tensor padded = x;
  // F.pad(x, (0, 0, 0, pad_w, 0, pad_h)): zeros at the bottom/right; the zero tokens take part as keys.
  if (pad_h > 0 || pad_w > 0) padded = at::constant_pad_nd(x, {0, 0, 0, pad_w, 0, pad_h}, 0);
  const int64_t Hp = H + pad_h, Wp = W + pad_w;
  at::Tensor windows = padded.reshape({B, Hp / ws, ws, Wp / ws, ws, C})
                           .permute({0, 1, 3, 2, 4, 5})
                           .contiguous()
                           .view({-1, ws, ws, C});
  return {windows, {Hp, Wp}};
}

at::Tensor window_unpartition(const at::Tensor& windows, int64_t ws, std::pair<int64_t, int64_t> padded_hw,
                              std::pair<int64_t, int64_t> hw) {
  const auto [Hp, Wp] = padded_hw;
  const auto [H, W] = hw;
  const int64_t B = windows.size(0) / (Hp * Wp / ws / ws);
  at::Tensor x = windows.reshape({B, Hp / ws, Wp / ws, ws, ws, -1})
                     .permute({0, 1, 3, 2, 4, 5})
                     .contiguous()
                     .view({B, Hp, Wp, -1});
  if (Hp > H || Wp > W) x = x.slice(1, 0, H).slice(2, 0, W).contiguous();
  return x;
}

namespace {

// The flattened [q * k] gather index of get_rel_pos. It depends only on the sizes, yet the reference rebuilds it
// (arange on the host, then a copy) in every block of every forward: kept here per (q, k, device) instead, for
// the life of the process (a handful of small tensors: one per window size and grid size).
at::Tensor make_rel_pos_index(int64_t q_size, int64_t k_size) {
  // Scale the coordinates of the shorter axis when q and k differ (as the reference, in fp32 then truncated).
  const auto idx_opts = at::TensorOptions().dtype(at::kLong);
  const double qk = std::max(static_cast<double>(k_size) / static_cast<double>(q_size), 1.0);
  const double kq = std::max(static_cast<double>(q_size) / static_cast<double>(k_size), 1.0);
  at::Tensor q_coords = at::arange(q_size, idx_opts).unsqueeze(1) * qk;
  at::Tensor k_coords = at::arange(k_size, idx_opts).unsqueeze(0) * kq;
  at::Tensor relative = (q_coords - k_coords) + static_cast<double>(k_size - 1) * kq;  // [q, k]
  return relative.to(at::kLong).flatten();
}

}  // namespace

const at::Tensor& rel_pos_index(int64_t q_size, int64_t k_size, c10::Device device) {
  static std::mutex mutex;
  // std::map: references to its values stay valid while other entries are added. Never destroyed: device tensors
  // must not be freed at exit after the CUDA allocator is gone.
  static auto* cache = new std::map<std::tuple<int64_t, int64_t, std::string>, at::Tensor>();
  const auto key = std::make_tuple(q_size, k_size, device.str());
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  at::Tensor index = make_rel_pos_index(q_size, k_size).to(device);
  // One wait, once per entry: the copy was queued on the stream current now, and the entry may next be read from
  // another stream (the SAM side stream, m2sa/models/m2sa/sam_stream.h); waiting here makes it complete for all.
  if (!index.is_cpu()) (void)index.max().item<int64_t>();
  return cache->emplace(key, std::move(index)).first->second;
}

at::Tensor get_rel_pos(int64_t q_size, int64_t k_size, const at::Tensor& rel_pos) {
  const int64_t max_rel_dist = 2 * std::max(q_size, k_size) - 1;
  at::Tensor table = rel_pos;  // [L, D]
  if (rel_pos.size(0) != max_rel_dist) {
    // F.interpolate(rel_pos.reshape(1, L, -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"). Done in fp32
    // (CPU LibTorch 1.13 has no bf16 linear upsampling); it only runs when a table is resized, never in SAM's own
    // configurations, where every table already has 2 * size - 1 rows.
    at::Tensor t = rel_pos.to(at::kFloat).reshape({1, rel_pos.size(0), -1}).permute({0, 2, 1});
    at::Tensor resized = at::upsample_linear1d(t, {max_rel_dist}, /*align_corners=*/false);  // [1, D, M]
    table = resized.reshape({-1, max_rel_dist}).permute({1, 0}).to(rel_pos.scalar_type());  // [M, D]
  }
  const at::Tensor& index = rel_pos_index(q_size, k_size, table.device());
  return table.index_select(0, index).view({q_size, k_size, table.size(1)});  // [q, k, D]
}

at::Tensor decomposed_rel_pos_bias(const at::Tensor& q, const at::Tensor& rel_pos_h, const at::Tensor& rel_pos_w,
                                   std::pair<int64_t, int64_t> q_size, std::pair<int64_t, int64_t> k_size) {
  const auto [q_h, q_w] = q_size;
  const auto [k_h, k_w] = k_size;
  at::Tensor Rh = get_rel_pos(q_h, k_h, rel_pos_h);  // [q_h, k_h, D]
  at::Tensor Rw = get_rel_pos(q_w, k_w, rel_pos_w);  // [q_w, k_w, D]
  const int64_t B = q.size(0), D = q.size(2);
  at::Tensor r_q = q.reshape({B, q_h, q_w, D});
  at::Tensor rel_h = at::einsum("bhwc,hkc->bhwk", {r_q, Rh});  // [B, q_h, q_w, k_h]
  at::Tensor rel_w = at::einsum("bhwc,wkc->bhwk", {r_q, Rw});  // [B, q_h, q_w, k_w]
  return (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape({B, q_h * q_w, k_h * k_w});
}

// ---------------------------------------------------------------------------------------------------------------

PatchEmbedImpl::PatchEmbedImpl(int64_t patch_size, int64_t in_chans, int64_t embed_dim) {
  proj = register_module("proj", nn::Conv2d(in_chans, embed_dim, patch_size, patch_size, 0, true));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& image) const {
  return proj->forward(image).permute({0, 2, 3, 1});  // [B, E, g, g] -> [B, g, g, E]
}

EncoderAttentionImpl::EncoderAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias, bool rel, int64_t input_size)
    : num_heads(heads), use_rel_pos(rel) {
  const int64_t head_dim = dim / heads;
  if (use_rel_pos) {
    // rel_pos_zero_init=True in the reference.
    rel_pos_h = nn::new_tensor({2 * input_size - 1, head_dim});
    nn::fill_(rel_pos_h, 0.0);
    rel_pos_h = register_parameter("rel_pos_h", rel_pos_h);
    rel_pos_w = nn::new_tensor({2 * input_size - 1, head_dim});
    nn::fill_(rel_pos_w, 0.0);
    rel_pos_w = register_parameter("rel_pos_w", rel_pos_w);
  }
  qkv = register_module("qkv", nn::Linear(dim, 3 * dim, qkv_bias));
  proj = register_module("proj", nn::Linear(dim, dim));
}

at::Tensor EncoderAttentionImpl::forward(const at::Tensor& x) const {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t T = H * W, D = C / num_heads;
  // [B, H, W, 3C] -> [3, B, heads, T, D] (qkv rows: q, k, v, each split into heads)
  at::Tensor qkv_out = qkv->forward(x).reshape({B, T, 3, num_heads, D}).permute({2, 0, 3, 1, 4});
  at::Tensor q = qkv_out[0], k = qkv_out[1], v = qkv_out[2];  // [B, heads, T, D]
  at::Tensor bias;
  if (use_rel_pos) {
    // The relative terms use the *unscaled* q (reference: attn = (q * scale) @ k^T + q.Rh + q.Rw).
    bias = decomposed_rel_pos_bias(q.reshape({B * num_heads, T, D}), rel_pos_h, rel_pos_w, {H, W}, {H, W})
               .reshape({B, num_heads, T, T});
  }
  // softmax((q * scale) k^T + bias) v; in exact mode the softmax runs in the input dtype, as the reference's.
  nn::AttentionOptions options;
  options.mask = bias;
  options.softmax_fp32 = false;
  at::Tensor out = nn::attention(q, k, v, options);  // [B, heads, T, D]
  out = out.view({B, num_heads, H, W, D}).permute({0, 2, 3, 1, 4}).reshape({B, H, W, C});
  return proj->forward(out);
}

EncoderBlockImpl::EncoderBlockImpl(const ImageEncoderConfig& c, int64_t ws) : window_size(ws) {
  norm1 = register_module("norm1", nn::LayerNorm(c.embed_dim, 1e-6));
  attn = register_module("attn", EncoderAttention(c.embed_dim, c.num_heads, c.qkv_bias, c.use_rel_pos,
                                                  ws == 0 ? c.grid_size() : ws));
  norm2 = register_module("norm2", nn::LayerNorm(c.embed_dim, 1e-6));
  mlp = register_module("mlp", MLPBlock(c.embed_dim, c.mlp_dim(), Activation::kGelu));
}

at::Tensor EncoderBlockImpl::forward(const at::Tensor& x) const {
  const at::Tensor& shortcut = x;
  at::Tensor h = norm1->forward(x);
  if (window_size > 0) {
    // Padding is applied after norm1 (reference Block.forward), so padded tokens are exact zeros.
    const int64_t H = h.size(1), W = h.size(2);
    auto [windows, padded_hw] = window_partition(h, window_size);
    h = window_unpartition(attn->forward(windows), window_size, padded_hw, {H, W});
  } else {
    h = attn->forward(h);
  }
  at::Tensor y = shortcut + h;
  return y + mlp->forward(norm2->forward(y));
}

ImageEncoderViTImpl::ImageEncoderViTImpl(const ImageEncoderConfig& c) : config_(c) {
  patch_embed = register_module("patch_embed", PatchEmbed(c.patch_size, 3, c.embed_dim));
  if (c.use_abs_pos) {
    pos_embed = nn::new_tensor({1, c.grid_size(), c.grid_size(), c.embed_dim});
    nn::fill_(pos_embed, 0.0);
    pos_embed = register_parameter("pos_embed", pos_embed);
  }
  auto block_list = register_container(*this, "blocks");
  for (int64_t i = 0; i < c.depth; ++i)
    blocks.push_back(block_list->register_module(std::to_string(i), EncoderBlock(c, c.block_window(i))));
  auto neck = register_container(*this, "neck");
  neck_conv1 = neck->register_module("0", nn::Conv2d(c.embed_dim, c.out_chans, 1, 1, 0, false));
  neck_norm1 = neck->register_module("1", nn::LayerNorm2d(c.out_chans, 1e-6));
  neck_conv2 = neck->register_module("2", nn::Conv2d(c.out_chans, c.out_chans, 3, 1, 1, false));
  neck_norm2 = neck->register_module("3", nn::LayerNorm2d(c.out_chans, 1e-6));
}

void ImageEncoderViTImpl::check_image(const at::Tensor& image) const {
  const int64_t S = config_.img_size;
  M2SA_CHECK(image.defined(), "SAM image encoder: the image tensor is undefined");
  M2SA_CHECK(image.dim() == 4 && image.size(1) == 3 && image.size(2) == S && image.size(3) == S,
             "SAM image encoder: expected a normalised, padded image tensor [B, 3, ", S, ", ", S, "] (NCHW, img_size ",
             S, "), got ", image.sizes());
  M2SA_CHECK(image.size(0) >= 1, "SAM image encoder: the image batch is empty");
  const at::Tensor& w = patch_embed->proj->weight;
  M2SA_CHECK(image.scalar_type() == w.scalar_type(), "SAM image encoder: the image is ",
             precision_name(image.scalar_type()), " but the encoder weights are ", precision_name(w.scalar_type()),
             "; convert the image to the model's dtype");
  M2SA_CHECK(image.device() == w.device(), "SAM image encoder: the image is on ", image.device(),
             " but the encoder weights are on ", w.device());
}

at::Tensor ImageEncoderViTImpl::embed_patches(const at::Tensor& image) const {
  check_image(image);
  at::Tensor x = patch_embed->forward(image);  // [B, g, g, E]
  if (pos_embed.defined()) x = x + pos_embed;
  return x;
}

at::Tensor ImageEncoderViTImpl::apply_neck(const at::Tensor& tokens) const {
  at::Tensor x = tokens.permute({0, 3, 1, 2});  // [B, E, g, g]
  x = neck_norm1->forward(neck_conv1->forward(x));
  return neck_norm2->forward(neck_conv2->forward(x));  // [B, out_chans, g, g]
}

EncoderOutput ImageEncoderViTImpl::forward(const at::Tensor& image, bool keep_blocks) const {
  EncoderOutput out;
  at::Tensor x = embed_patches(image);  // [B, g, g, E]
  for (size_t i = 0; i < blocks.size(); ++i) {
    x = blocks[i]->forward(x);
    if (keep_blocks) out.blocks.push_back(x);
    if (static_cast<int64_t>(i) == config_.early_layer) out.early = x;  // [B, g, g, E] channels-last
  }
  out.neck = apply_neck(x);
  return out;
}

}  // namespace m2sa::sam
