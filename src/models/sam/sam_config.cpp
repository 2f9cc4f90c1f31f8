#include "m2sa/models/sam/sam_config.h"

#include <algorithm>
#include <set>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"

namespace m2sa::sam {

namespace {

// nlohmann converts 4.5 to 4 silently; configs must say what they mean.
int64_t get_int(const JsonReader& r, const std::string& key) { return json_int(r.raw(key), r.location(key)); }

bool get_bool(const JsonReader& r, const std::string& key) {
  const json& v = r.raw(key);
  if (!v.is_boolean()) fail(r.location(key), ": expected true or false, got ", v.dump());
  return v.get<bool>();
}

double get_number(const JsonReader& r, const std::string& key) {
  const json& v = r.raw(key);
  if (!v.is_number()) fail(r.location(key), ": expected a number, got ", v.dump());
  return v.get<double>();
}

std::vector<int64_t> get_int_list(const JsonReader& r, const std::string& key) {
  const json& v = r.raw(key);
  if (!v.is_array()) fail(r.location(key), ": expected a list of integers, got ", v.dump());
  std::vector<int64_t> out;
  for (const json& e : v) {
    if (!e.is_number_integer()) fail(r.location(key), ": expected a list of integers, got ", v.dump());
    out.push_back(json_int(e, r.location(key)));
  }
  return out;
}

}  // namespace

bool ImageEncoderConfig::is_global(int64_t block) const {
  return std::find(global_attn_indexes.begin(), global_attn_indexes.end(), block) != global_attn_indexes.end();
}

SamConfig SamConfig::from_json(const JsonReader& reader) {
  SamConfig c;
  {
    JsonReader r = reader.child("image_encoder");
    auto& e = c.image_encoder;
    e.img_size = get_int(r, "img_size");
    e.patch_size = get_int(r, "patch_size");
    e.embed_dim = get_int(r, "embed_dim");
    e.depth = get_int(r, "depth");
    e.num_heads = get_int(r, "num_heads");
    e.mlp_ratio = get_number(r, "mlp_ratio");
    e.out_chans = get_int(r, "out_chans");
    e.qkv_bias = get_bool(r, "qkv_bias");
    e.use_abs_pos = get_bool(r, "use_abs_pos");
    e.use_rel_pos = get_bool(r, "use_rel_pos");
    e.window_size = get_int(r, "window_size");
    e.global_attn_indexes = get_int_list(r, "global_attn_indexes");
    e.early_layer = get_int(r, "early_layer");
    r.finish();
  }
  {
    JsonReader r = reader.child("prompt_encoder");
    c.prompt_encoder.mask_in_chans = get_int(r, "mask_in_chans");
    r.finish();
  }
  {
    JsonReader r = reader.child("mask_decoder");
    auto& d = c.mask_decoder;
    d.transformer_depth = get_int(r, "transformer_depth");
    d.transformer_mlp_dim = get_int(r, "transformer_mlp_dim");
    d.transformer_num_heads = get_int(r, "transformer_num_heads");
    d.attention_downsample_rate = get_int(r, "attention_downsample_rate");
    d.num_multimask_outputs = get_int(r, "num_multimask_outputs");
    d.iou_head_depth = get_int(r, "iou_head_depth");
    d.iou_head_hidden_dim = get_int(r, "iou_head_hidden_dim");
    d.compress_vit = get_bool(r, "compress_vit");
    r.finish();
  }
  reader.finish();
  c.validate(reader.file());
  return c;
}

json SamConfig::to_json() const {
  const auto& e = image_encoder;
  const auto& d = mask_decoder;
  return json{
      {"image_encoder",
       {{"img_size", e.img_size},
        {"patch_size", e.patch_size},
        {"embed_dim", e.embed_dim},
        {"depth", e.depth},
        {"num_heads", e.num_heads},
        {"mlp_ratio", e.mlp_ratio},
        {"out_chans", e.out_chans},
        {"qkv_bias", e.qkv_bias},
        {"use_abs_pos", e.use_abs_pos},
        {"use_rel_pos", e.use_rel_pos},
        {"window_size", e.window_size},
        {"global_attn_indexes", e.global_attn_indexes},
        {"early_layer", e.early_layer}}},
      {"prompt_encoder", {{"mask_in_chans", prompt_encoder.mask_in_chans}}},
      {"mask_decoder",
       {{"transformer_depth", d.transformer_depth},
        {"transformer_mlp_dim", d.transformer_mlp_dim},
        {"transformer_num_heads", d.transformer_num_heads},
        {"attention_downsample_rate", d.attention_downsample_rate},
        {"num_multimask_outputs", d.num_multimask_outputs},
        {"iou_head_depth", d.iou_head_depth},
        {"iou_head_hidden_dim", d.iou_head_hidden_dim},
        {"compress_vit", d.compress_vit}}}};
}

void SamConfig::validate(const std::string& where) const {
  const auto& e = image_encoder;
  const auto& d = mask_decoder;
  auto bad = [&](const char* field, auto&&... why) { fail(where, ": ", field, ": ", why...); };
  if (e.img_size <= 0) bad("image_encoder.img_size", "must be positive, got ", e.img_size);
  if (e.patch_size <= 0) bad("image_encoder.patch_size", "must be positive, got ", e.patch_size);
  if (e.img_size % e.patch_size != 0)
    bad("image_encoder.img_size", e.img_size, " is not a multiple of patch_size ", e.patch_size);
  if (e.depth <= 0) bad("image_encoder.depth", "must be positive, got ", e.depth);
  if (e.num_heads <= 0) bad("image_encoder.num_heads", "must be positive, got ", e.num_heads);
  if (e.embed_dim <= 0 || e.embed_dim % e.num_heads != 0)
    bad("image_encoder.embed_dim", "must be a positive multiple of num_heads ", e.num_heads, ", got ", e.embed_dim);
  if (!(e.mlp_ratio > 0) || e.mlp_dim() <= 0) bad("image_encoder.mlp_ratio", "must give a positive MLP width, got ", e.mlp_ratio);
  if (e.window_size < 0) bad("image_encoder.window_size", "must be >= 0 (0 = global attention), got ", e.window_size);
  std::set<int64_t> seen;
  for (int64_t i : e.global_attn_indexes) {
    if (i < 0 || i >= e.depth)
      bad("image_encoder.global_attn_indexes", "block index ", i, " is outside [0, depth = ", e.depth, ")");
    if (!seen.insert(i).second) bad("image_encoder.global_attn_indexes", "block index ", i, " is listed twice");
  }
  if (e.early_layer < -1 || e.early_layer >= e.depth)
    bad("image_encoder.early_layer", "must be -1 (no tap) or a block index in [0, ", e.depth, "), got ", e.early_layer);
  // The prompt PE has C/2 random frequencies and concatenates sin and cos; the upscaling halves C twice more.
  if (e.out_chans < 8 || e.out_chans % 2 != 0)
    bad("image_encoder.out_chans", "the prompt embedding width must be even and >= 8, got ", e.out_chans);
  if (prompt_encoder.mask_in_chans < 4)
    bad("prompt_encoder.mask_in_chans", "must be >= 4 (the first conv has mask_in_chans / 4 outputs), got ",
        prompt_encoder.mask_in_chans);
  const int64_t c = prompt_embed_dim();
  if (d.transformer_depth <= 0) bad("mask_decoder.transformer_depth", "must be positive, got ", d.transformer_depth);
  if (d.transformer_mlp_dim <= 0) bad("mask_decoder.transformer_mlp_dim", "must be positive, got ", d.transformer_mlp_dim);
  if (d.transformer_num_heads <= 0 || c % d.transformer_num_heads != 0)
    bad("mask_decoder.transformer_num_heads", "must divide the embedding width ", c, ", got ", d.transformer_num_heads);
  if (d.attention_downsample_rate <= 0 || c % d.attention_downsample_rate != 0 ||
      (c / d.attention_downsample_rate) % d.transformer_num_heads != 0)
    bad("mask_decoder.attention_downsample_rate", "embedding width ", c, " / rate must be a multiple of ",
        d.transformer_num_heads, " heads, got rate ", d.attention_downsample_rate);
  if (d.num_multimask_outputs < 1)
    bad("mask_decoder.num_multimask_outputs", "must be >= 1, got ", d.num_multimask_outputs);
  if (d.iou_head_depth < 1) bad("mask_decoder.iou_head_depth", "must be >= 1, got ", d.iou_head_depth);
  if (d.iou_head_hidden_dim <= 0) bad("mask_decoder.iou_head_hidden_dim", "must be positive, got ", d.iou_head_hidden_dim);
  if (d.compress_vit && e.early_layer < 0)
    bad("mask_decoder.compress_vit", "needs the early-block features: set image_encoder.early_layer to a block index");
}

namespace {
SamConfig reference_config(int64_t embed_dim, int64_t depth, int64_t heads, std::vector<int64_t> global) {
  SamConfig c;
  c.image_encoder.embed_dim = embed_dim;
  c.image_encoder.depth = depth;
  c.image_encoder.num_heads = heads;
  c.image_encoder.global_attn_indexes = std::move(global);
  c.image_encoder.early_layer = -1;
  c.mask_decoder.compress_vit = false;
  return c;
}
}  // namespace

SamConfig SamConfig::vit_b() { return reference_config(768, 12, 12, {2, 5, 8, 11}); }
SamConfig SamConfig::vit_l() { return reference_config(1024, 24, 16, {5, 11, 17, 23}); }
SamConfig SamConfig::vit_h() { return reference_config(1280, 32, 16, {7, 15, 23, 31}); }

SamConfig SamConfig::m2sa_vit_h() {
  SamConfig c = vit_h();
  c.image_encoder.early_layer = 7;  // MMR:model/M2SA.py:152-166 keeps the output of the first global block
  c.mask_decoder.compress_vit = true;
  return c;
}

}  // namespace m2sa::sam
