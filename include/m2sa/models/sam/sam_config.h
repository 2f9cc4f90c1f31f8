#pragma once
// Sizes of a SAM model (image encoder, prompt encoder, mask decoder) as M2SA uses it. Field names mirror the
// constructor arguments of segment_anything/build_sam.py::_build_sam and the module constructors, so a JSON
// config reads like the reference call. Derived sizes are methods, never separate fields:
// prompt embed dim = image_encoder.out_chans, image embedding size = img_size / patch_size.
//
// JSON layout (every field required, unknown fields are errors):
//   {"image_encoder": {"img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "out_chans",
//                      "qkv_bias", "use_abs_pos", "use_rel_pos", "window_size", "global_attn_indexes",
//                      "early_layer"},
//    "prompt_encoder": {"mask_in_chans"},
//    "mask_decoder": {"transformer_depth", "transformer_mlp_dim", "transformer_num_heads",
//                     "attention_downsample_rate", "num_multimask_outputs", "iou_head_depth",
//                     "iou_head_hidden_dim", "compress_vit"}}
#include <cstdint>
#include <vector>

#include "m2sa/core/json_reader.h"

namespace m2sa::sam {

struct ImageEncoderConfig {
  int64_t img_size = 1024;
  int64_t patch_size = 16;
  int64_t embed_dim = 1280;
  int64_t depth = 32;
  int64_t num_heads = 16;
  double mlp_ratio = 4.0;
  int64_t out_chans = 256;
  bool qkv_bias = true;
  bool use_abs_pos = true;
  bool use_rel_pos = true;
  int64_t window_size = 14;  // 0: every block attends globally
  std::vector<int64_t> global_attn_indexes{7, 15, 23, 31};
  // Index of the block whose channels-last output is returned as `early` (M2SA: 7, the first global block;
  // spec section 1.1). -1: no tap (stock SAM).
  int64_t early_layer = -1;

  int64_t grid_size() const { return img_size / patch_size; }  // token grid side (64 for 1024 / 16)
  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t mlp_dim() const { return static_cast<int64_t>(static_cast<double>(embed_dim) * mlp_ratio); }
  bool is_global(int64_t block) const;
  // The window of a block: 0 for global blocks.
  int64_t block_window(int64_t block) const { return is_global(block) ? 0 : window_size; }
};

struct PromptEncoderConfig {
  int64_t mask_in_chans = 16;
};

struct MaskDecoderConfig {
  int64_t transformer_depth = 2;
  int64_t transformer_mlp_dim = 2048;
  int64_t transformer_num_heads = 8;
  int64_t attention_downsample_rate = 2;
  int64_t num_multimask_outputs = 3;
  int64_t iou_head_depth = 3;
  int64_t iou_head_hidden_dim = 256;
  // M2SA's fusion convs `mask_decoder.compress_vit` (MMR:model/segment_anything/modeling/mask_decoder.py:71-76):
  // conv3x3(encoder embed_dim -> C), LayerNorm2d, GELU, conv3x3(C -> C), applied to the early-block features and
  // added to the image embedding. Absent in stock SAM.
  bool compress_vit = false;

  int64_t num_mask_tokens() const { return num_multimask_outputs + 1; }
};

struct SamConfig {
  ImageEncoderConfig image_encoder;
  PromptEncoderConfig prompt_encoder;
  MaskDecoderConfig mask_decoder;

  // Transformer / prompt embedding width C (= image_encoder.out_chans).
  int64_t prompt_embed_dim() const { return image_encoder.out_chans; }
  // Side of the image embedding grid (64 for ViT-*/1024).
  int64_t image_embedding_size() const { return image_encoder.grid_size(); }
  // Side of the low-resolution mask prompt / output (4 x the embedding grid).
  int64_t low_res_size() const { return 4 * image_embedding_size(); }

  // Strict: unknown or missing fields and inconsistent sizes are errors naming the file and field.
  static SamConfig from_json(const JsonReader& reader);
  json to_json() const;

  // Throws m2sa::Error naming the field if the sizes cannot build a model (`where` prefixes the message).
  void validate(const std::string& where = "SAM config") const;

  // The reference builders (segment_anything/build_sam.py): ViT-B (768, 12 blocks, 12 heads, global 2/5/8/11),
  // ViT-L (1024, 24, 16, global 5/11/17/23), ViT-H (1280, 32, 16, global 7/15/23/31). No early tap and no
  // compress_vit; M2SA = vit_h() with image_encoder.early_layer = 7 and mask_decoder.compress_vit = true (`m2sa_vit_h`).
  static SamConfig vit_b();
  static SamConfig vit_l();
  static SamConfig vit_h();
  static SamConfig m2sa_vit_h();
};

}  // namespace m2sa::sam
