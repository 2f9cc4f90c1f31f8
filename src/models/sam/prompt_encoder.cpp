#include "m2sa/models/sam/prompt_encoder.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"
#include "m2sa/models/sam/common.h"

namespace m2sa::sam {

PromptEncoderImpl::PromptEncoderImpl(const SamConfig& config)
    : embed_dim_(config.prompt_embed_dim()),
      grid_(config.image_embedding_size()),
      input_size_(config.image_encoder.img_size) {
  const int64_t C = embed_dim_;
  const int64_t mic = config.prompt_encoder.mask_in_chans;
  pe_layer = register_module("pe_layer", PositionEmbeddingRandom(C / 2));
  auto points = register_container(*this, "point_embeddings");
  for (int i = 0; i < 4; ++i) point_embeddings.push_back(points->register_module(std::to_string(i), nn::Embedding(1, C)));
  not_a_point_embed = register_module("not_a_point_embed", nn::Embedding(1, C));
  auto down = register_container(*this, "mask_downscaling");
  mask_conv1 = down->register_module("0", nn::Conv2d(1, mic / 4, 2, 2, 0, true));
  mask_norm1 = down->register_module("1", nn::LayerNorm2d(mic / 4, 1e-6));
  mask_conv2 = down->register_module("3", nn::Conv2d(mic / 4, mic, 2, 2, 0, true));
  mask_norm2 = down->register_module("4", nn::LayerNorm2d(mic, 1e-6));
  mask_conv3 = down->register_module("6", nn::Conv2d(mic, C, 1, 1, 0, true));
  no_mask_embed = register_module("no_mask_embed", nn::Embedding(1, C));
}

at::Tensor PromptEncoderImpl::get_dense_pe() const {
  return pe_layer->forward({grid_, grid_}).unsqueeze(0);  // [1, C, g, g]
}

at::Tensor PromptEncoderImpl::embed_points(const at::Tensor& coords, const at::Tensor& labels_in, bool pad) const {
  at::Tensor points = coords + 0.5;  // shift to the centre of the pixel
  at::Tensor labels = labels_in;
  if (pad) {
    // The padding point (0, 0) with label -1 is appended after the shift, as in the reference.
    points = at::cat({points, at::zeros({points.size(0), 1, 2}, points.options())}, 1);
    labels = at::cat({labels, at::full({labels.size(0), 1}, -1, labels.options())}, 1);
  }
  at::Tensor pe = pe_layer->forward_with_coords(points, {input_size_, input_size_});  // [B, N, C]
  // pe[labels == -1] = 0; += not_a_point_embed; pe[labels == 0] += point_embeddings[0]; [1] likewise.
  pe = at::where((labels == -1).unsqueeze(-1), not_a_point_embed->weight.expand_as(pe), pe);
  pe = at::where((labels == 0).unsqueeze(-1), pe + point_embeddings[0]->weight, pe);
  pe = at::where((labels == 1).unsqueeze(-1), pe + point_embeddings[1]->weight, pe);
  return pe;
}

at::Tensor PromptEncoderImpl::embed_boxes(const at::Tensor& boxes) const {
  at::Tensor corners = (boxes + 0.5).reshape({-1, 2, 2});                                  // [B, 2, 2]
  at::Tensor pe = pe_layer->forward_with_coords(corners, {input_size_, input_size_});  // [B, 2, C]
  at::Tensor c0 = pe.select(1, 0) + point_embeddings[2]->weight;
  at::Tensor c1 = pe.select(1, 1) + point_embeddings[3]->weight;
  return at::stack({c0, c1}, 1);  // [B, 2, C]
}

at::Tensor PromptEncoderImpl::embed_masks(const at::Tensor& masks) const {
  at::Tensor x = at::gelu(mask_norm1->forward(mask_conv1->forward(masks)));
  x = at::gelu(mask_norm2->forward(mask_conv2->forward(x)));
  return mask_conv3->forward(x);  // [B, C, g, g]
}

at::Tensor PromptEncoderImpl::no_mask_dense(int64_t batch) const {
  return no_mask_embed->weight.reshape({1, -1, 1, 1}).expand({batch, -1, grid_, grid_});
}

PromptEmbeddings PromptEncoderImpl::forward(const std::optional<PointPrompts>& points,
                                            const std::optional<at::Tensor>& boxes,
                                            const std::optional<at::Tensor>& masks) const {
  const int64_t low_res = 4 * grid_;
  // Shapes first, with messages naming the prompt; then one batch size for all of them.
  if (points) {
    const at::Tensor& c = points->coords;
    const at::Tensor& l = points->labels;
    M2SA_CHECK(c.defined() && l.defined(), "SAM prompt encoder: point prompts need both coords and labels");
    M2SA_CHECK(c.dim() == 3 && c.size(2) == 2 && c.is_floating_point(),
               "SAM prompt encoder: point coords must be a floating tensor [B, N, 2] (x, y in the ", input_size_, "x",
               input_size_, " input frame), got ", c.sizes(), " ", c.scalar_type());
    M2SA_CHECK(l.dim() == 2 && l.size(0) == c.size(0) && l.size(1) == c.size(1),
               "SAM prompt encoder: point labels must be [B, N] = [", c.size(0), ", ", c.size(1),
               "] to match the coords, got ", l.sizes());
    if (l.numel() > 0) {
      const bool valid = ((l == -1) | (l == 0) | (l == 1)).all().item<bool>();
      M2SA_CHECK(valid, "SAM prompt encoder: point labels must be 1 (foreground), 0 (background) or -1 (padding)");
    }
  }
  if (boxes) {
    const at::Tensor& b = *boxes;
    M2SA_CHECK(b.defined() && b.is_floating_point() &&
                   ((b.dim() == 2 && b.size(1) == 4) || (b.dim() == 3 && b.size(1) == 1 && b.size(2) == 4)),
               "SAM prompt encoder: boxes must be a floating tensor [B, 4] or [B, 1, 4] (x0, y0, x1, y1), got ",
               b.defined() ? b.sizes() : at::IntArrayRef{}, b.defined() ? "" : " (undefined)");
  }
  if (masks) {
    const at::Tensor& m = *masks;
    M2SA_CHECK(m.defined() && m.is_floating_point() && m.dim() == 4 && m.size(1) == 1 && m.size(2) == low_res &&
                   m.size(3) == low_res,
               "SAM prompt encoder: mask prompts must be low-res mask logits [B, 1, ", low_res, ", ", low_res,
               "], got ", m.defined() ? m.sizes() : at::IntArrayRef{}, m.defined() ? "" : " (undefined)");
  }
  int64_t bs = 1;
  const char* batch_from = nullptr;
  auto agree = [&](int64_t b, const char* what) {
    if (batch_from == nullptr) {
      bs = b;
      batch_from = what;
    } else {
      M2SA_CHECK(b == bs, "SAM prompt encoder: ", what, " have batch size ", b, " but ", batch_from, " have ", bs);
    }
  };
  if (points) agree(points->coords.size(0), "points");
  if (boxes) agree(boxes->size(0), "boxes");
  if (masks) agree(masks->size(0), "masks");

  const at::Tensor& w = no_mask_embed->weight;
  PromptEmbeddings out;
  std::vector<at::Tensor> sparse{at::empty({bs, 0, embed_dim_}, w.options())};
  if (points) sparse.push_back(embed_points(points->coords, points->labels, /*pad=*/!boxes.has_value()));
  if (boxes) sparse.push_back(embed_boxes(*boxes));
  out.sparse = at::cat(sparse, 1);  // [B, T, C]
  out.dense = masks ? embed_masks(*masks) : no_mask_dense(bs);
  return out;
}

PromptEmbeddings PromptEncoderImpl::text_prompt(const at::Tensor& text_embeds) const {
  M2SA_CHECK(text_embeds.defined() && text_embeds.dim() == 3 && text_embeds.size(0) >= 1 &&
                 text_embeds.size(2) == embed_dim_,
             "SAM prompt encoder: text prompts must be [N, 1, ", embed_dim_,
             "] (one projected [SEG] embedding per mask), got ",
             text_embeds.defined() ? text_embeds.sizes() : at::IntArrayRef{});
  // LISA: sparse = cat([empty (N, 0, C), text_embeds], 1) = text_embeds; dense = no-mask embedding.
  return {text_embeds, no_mask_dense(text_embeds.size(0))};
}

}  // namespace m2sa::sam
