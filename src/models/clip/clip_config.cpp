#include "m2sa/models/clip/clip_config.h"

#include "m2sa/core/error.h"

namespace m2sa::clip {

namespace {
std::string context_of(const JsonReader& reader) {
  std::string s = reader.location("");
  while (!s.empty() && (s.back() == '.' || s.back() == ' ' || s.back() == ':')) s.pop_back();
  return s;
}
}  // namespace

ClipVisionConfig ClipVisionConfig::vit_l14_224() {
  ClipVisionConfig c;  // the defaults are ViT-L/14 at 224 px
  return c;
}

ClipVisionConfig ClipVisionConfig::vit_l14_336() {
  ClipVisionConfig c;
  c.image_size = 336;
  return c;
}

ClipVisionConfig ClipVisionConfig::from_json(const JsonReader& r) {
  ClipVisionConfig c;
  c.hidden_size = r.get<int64_t>("hidden_size");
  c.intermediate_size = r.get<int64_t>("intermediate_size");
  c.num_hidden_layers = r.get<int64_t>("num_hidden_layers");
  c.num_attention_heads = r.get<int64_t>("num_attention_heads");
  c.image_size = r.get<int64_t>("image_size");
  c.patch_size = r.get<int64_t>("patch_size");
  c.layer_norm_eps = r.get_or<double>("layer_norm_eps", c.layer_norm_eps);
  c.hidden_act = r.get_or<std::string>("hidden_act", c.hidden_act);
  c.select_layer = r.get_or<int64_t>("select_layer", c.select_layer);
  c.select_feature = r.get_or<std::string>("select_feature", c.select_feature);
  r.finish();
  c.validate(context_of(r));
  return c;
}

ClipVisionConfig ClipVisionConfig::from_hf_config(const json& config, const std::string& source) {
  M2SA_CHECK(config.is_object(), source, ": expected a JSON object (a CLIP config.json)");
  std::string where = source;
  const json* vision = &config;
  if (config.contains("vision_config")) {  // a full CLIPModel config
    vision = &config["vision_config"];
    where += ": vision_config";
    M2SA_CHECK(vision->is_object(), where, ": expected an object");
  }
  JsonReader r(*vision, source, vision == &config ? "" : "vision_config");
  if (r.has("model_type")) {
    const auto type = r.get<std::string>("model_type");
    M2SA_CHECK(type == "clip_vision_model" || type == "clip", r.location("model_type"),
               ": expected \"clip_vision_model\" or \"clip\", got \"", type, "\"");
  }
  // HF CLIPVisionConfig defaults (transformers 4.31) for anything the file leaves out.
  ClipVisionConfig c;
  c.hidden_size = r.get_or<int64_t>("hidden_size", 768);
  c.intermediate_size = r.get_or<int64_t>("intermediate_size", 3072);
  c.num_hidden_layers = r.get_or<int64_t>("num_hidden_layers", 12);
  c.num_attention_heads = r.get_or<int64_t>("num_attention_heads", 12);
  c.image_size = r.get_or<int64_t>("image_size", 224);
  c.patch_size = r.get_or<int64_t>("patch_size", 32);
  c.layer_norm_eps = r.get_or<double>("layer_norm_eps", 1e-5);
  c.hidden_act = r.get_or<std::string>("hidden_act", "quick_gelu");
  const auto channels = r.get_or<int64_t>("num_channels", 3);
  M2SA_CHECK(channels == 3, r.location("num_channels"), ": only 3-channel (RGB) towers are supported, got ", channels);
  c.validate(where);
  return c;
}

json ClipVisionConfig::to_json() const {
  return json{{"hidden_size", hidden_size},
              {"intermediate_size", intermediate_size},
              {"num_hidden_layers", num_hidden_layers},
              {"num_attention_heads", num_attention_heads},
              {"image_size", image_size},
              {"patch_size", patch_size},
              {"layer_norm_eps", layer_norm_eps},
              {"hidden_act", hidden_act},
              {"select_layer", select_layer},
              {"select_feature", select_feature}};
}

void ClipVisionConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name) {
    M2SA_CHECK(v > 0, where, ": ", name, " must be positive, got ", v);
  };
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(image_size, "image_size");
  positive(patch_size, "patch_size");
  M2SA_CHECK(hidden_size % num_attention_heads == 0, where, ": hidden_size ", hidden_size,
             " is not divisible by num_attention_heads ", num_attention_heads);
  M2SA_CHECK(image_size % patch_size == 0, where, ": image_size ", image_size, " is not a multiple of patch_size ",
             patch_size);
  M2SA_CHECK(layer_norm_eps > 0.0, where, ": layer_norm_eps must be positive, got ", layer_norm_eps);
  M2SA_CHECK(hidden_act == "quick_gelu", where, ": hidden_act \"", hidden_act,
             "\" is not supported (only \"quick_gelu\", the activation of OpenAI's CLIP towers)");
  M2SA_CHECK(select_layer >= -(num_hidden_layers + 1) && select_layer <= num_hidden_layers, where, ": select_layer ",
             select_layer, " is outside [", -(num_hidden_layers + 1), ", ", num_hidden_layers, "] (",
             num_hidden_layers + 1, " hidden states)");
  M2SA_CHECK(select_feature == "patch" || select_feature == "cls_patch", where, ": select_feature \"", select_feature,
             "\" is not one of \"patch\", \"cls_patch\"");
}

int64_t ClipVisionConfig::select_layer_index() const {
  return select_layer < 0 ? num_hidden_layers + 1 + select_layer : select_layer;
}

}  // namespace m2sa::clip
