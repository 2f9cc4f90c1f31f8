#include "m2sa/models/sam/position_embedding_random.h"

#include <ATen/ATen.h>

#include <cmath>

#include "m2sa/core/error.h"
#include "m2sa/nn/init.h"

namespace m2sa::sam {

PositionEmbeddingRandomImpl::PositionEmbeddingRandomImpl(int64_t num_pos_feats, double scale) {
  if (!(scale > 0.0)) scale = 1.0;
  at::Tensor g = nn::new_tensor({2, num_pos_feats});
  nn::normal_(g, 0.0, scale);
  positional_encoding_gaussian_matrix = register_buffer("positional_encoding_gaussian_matrix", g);
}

at::Tensor PositionEmbeddingRandomImpl::encode(const at::Tensor& coords) const {
  // Same operation order as _pe_encoding: 2c - 1, @ G, * (2 pi), cat(sin, cos).
  at::Tensor c = coords * 2 - 1;
  c = at::matmul(c, positional_encoding_gaussian_matrix);
  c = c * (2 * M_PI);
  return at::cat({at::sin(c), at::cos(c)}, -1);
}

at::Tensor PositionEmbeddingRandomImpl::forward(std::pair<int64_t, int64_t> size) const {
  const auto [h, w] = size;
  const at::Tensor& g = positional_encoding_gaussian_matrix;
  at::Tensor grid = at::ones({h, w}, g.options());
  at::Tensor y_embed = (grid.cumsum(0) - 0.5) / static_cast<double>(h);
  at::Tensor x_embed = (grid.cumsum(1) - 0.5) / static_cast<double>(w);
  at::Tensor pe = encode(at::stack({x_embed, y_embed}, -1));  // [h, w, 2F]
  return pe.permute({2, 0, 1});                                // [2F, h, w]
}

at::Tensor PositionEmbeddingRandomImpl::forward_with_coords(const at::Tensor& coords,
                                                            std::pair<int64_t, int64_t> image_size) const {
  M2SA_CHECK(coords.dim() == 3 && coords.size(2) == 2, "SAM positional encoding: expected coordinates [B, N, 2], got ",
             coords.sizes());
  // x / W, y / H, then in the buffer's dtype (the reference casts to float32, the dtype of its buffer).
  at::Tensor x = coords.select(2, 0) / static_cast<double>(image_size.second);
  at::Tensor y = coords.select(2, 1) / static_cast<double>(image_size.first);
  at::Tensor normalised = at::stack({x, y}, 2).to(positional_encoding_gaussian_matrix.scalar_type());
  return encode(normalised);  // [B, N, 2F]
}

}  // namespace m2sa::sam
