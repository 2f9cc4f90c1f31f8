#include "m2sa/models/m2sa/m2sa_config.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "m2sa/core/error.h"

namespace m2sa::m2sa_model {

namespace {

M2SASettings settings_from_json(const JsonReader& r) {
  M2SASettings s;
  s.out_dim = r.get<int64_t>("out_dim");
  s.seg_token_id = r.get_or<int64_t>("seg_token_id", s.seg_token_id);
  s.im_start_token_id = r.get_or<int64_t>("im_start_token_id", s.im_start_token_id);
  s.im_end_token_id = r.get_or<int64_t>("im_end_token_id", s.im_end_token_id);
  s.use_mm_start_end = r.get_or<bool>("use_mm_start_end", s.use_mm_start_end);
  s.model_max_length = r.get_or<int64_t>("model_max_length", s.model_max_length);
  if (r.has("lora")) s.lora = nn::LoraConfig::from_json(r.child("lora"));
  if (r.has("attention"))
    s.attention = nn::parse_attention_mode(r.get<std::string>("attention"), r.location("attention"));
  r.finish();
  return s;
}

}  // namespace

json M2SASettings::to_json() const {
  json j{{"out_dim", out_dim},
              {"seg_token_id", seg_token_id},
              {"im_start_token_id", im_start_token_id},
              {"im_end_token_id", im_end_token_id},
              {"use_mm_start_end", use_mm_start_end},
              {"model_max_length", model_max_length},
              {"lora", lora.to_json()}};
  if (attention != nn::AttentionMode::kSdpa) j["attention"] = nn::to_string(attention);  // the default stays implicit
  return j;
}

M2SAConfig M2SAConfig::from_json(const JsonReader& reader) {
  M2SAConfig c;
  c.sam = sam::SamConfig::from_json(reader.child("sam"));
  c.clip = clip::ClipVisionConfig::from_json(reader.child("clip"));
  c.llama = llama::LlamaConfig::from_json(reader.child("llama"));
  c.m2sa = settings_from_json(reader.child("m2sa"));
  reader.finish();
  c.validate(reader.file());
  return c;
}

json M2SAConfig::to_json() const {
  return json{{"sam", sam.to_json()}, {"clip", clip.to_json()}, {"llama", llama.to_json()}, {"m2sa", m2sa.to_json()}};
}

void M2SAConfig::validate(const std::string& where) const {
  sam.validate(where + ": sam");
  clip.validate(where + ": clip");
  llama.validate(where + ": llama");
  m2sa.lora.validate(where + ": m2sa.lora");
  const M2SASettings& s = m2sa;
  M2SA_CHECK(s.out_dim == sam.prompt_embed_dim(), where, ": m2sa.out_dim ", s.out_dim,
             " must equal the SAM prompt embedding width sam.image_encoder.out_chans = ", sam.prompt_embed_dim(),
             " (each [SEG] embedding becomes one SAM sparse prompt)");
  const std::pair<const char*, int64_t> ids[] = {
      {"seg_token_id", s.seg_token_id}, {"im_start_token_id", s.im_start_token_id}, {"im_end_token_id", s.im_end_token_id}};
  for (const auto& [name, id] : ids)
    M2SA_CHECK(id >= 0 && id < llama.vocab_size, where, ": m2sa.", name, " ", id, " is outside the vocabulary [0, ",
               llama.vocab_size, ") of llama.vocab_size");
  M2SA_CHECK(s.seg_token_id != s.im_start_token_id && s.seg_token_id != s.im_end_token_id &&
                 s.im_start_token_id != s.im_end_token_id,
             where, ": m2sa.seg_token_id, im_start_token_id and im_end_token_id must be distinct, got ", s.seg_token_id,
             ", ", s.im_start_token_id, ", ", s.im_end_token_id);
  M2SA_CHECK(s.model_max_length > num_image_tokens(), where, ": m2sa.model_max_length ", s.model_max_length,
             " leaves no room for text next to the ", num_image_tokens(), " image tokens");
  M2SA_CHECK(s.model_max_length <= llama.max_position_embeddings, where, ": m2sa.model_max_length ",
             s.model_max_length, " exceeds llama.max_position_embeddings ", llama.max_position_embeddings);
}

M2SAConfig M2SAConfig::m2sa_7b() {
  M2SAConfig c;
  c.sam = sam::SamConfig::m2sa_vit_h();
  c.clip = clip::ClipVisionConfig::vit_l14_224();
  c.llama = llama::LlamaConfig::llama_7b();
  c.validate("M2SAConfig::m2sa_7b");
  return c;
}

M2SAConfig M2SAConfig::m2sa_13b() {
  M2SAConfig c = m2sa_7b();
  c.llama = llama::LlamaConfig::llama2_13b();
  c.validate("M2SAConfig::m2sa_13b");
  return c;
}

M2SAConfig M2SAConfig::from_hf_config(const json& config, const std::string& source, clip::ClipVisionConfig clip) {
  M2SA_CHECK(config.is_object(), source, ": expected a JSON object (an M2SA / LISA / LLaVA config.json)");
  M2SAConfig c;
  c.llama = llama::LlamaConfig::from_hf_config(config, source);
  c.sam = sam::SamConfig::m2sa_vit_h();
  JsonReader r(config, source);
  if (r.has("mm_hidden_size") && !config["mm_hidden_size"].is_null()) {
    const auto mm = r.get<int64_t>("mm_hidden_size");
    M2SA_CHECK(mm == clip.hidden_size, r.location("mm_hidden_size"), ": ", mm,
               " differs from the CLIP tower's hidden_size ", clip.hidden_size,
               " (mm_projector maps CLIP features to the LLM width)");
  }
  clip.select_layer = r.get_or<int64_t>("mm_vision_select_layer", -2);
  // M2SAModel.__init__ forces mm_vision_select_feature = "patch" whatever the file says (MMR:model/M2SA.py).
  clip.select_feature = "patch";
  c.clip = clip;
  c.m2sa.out_dim = r.get_or<int64_t>("out_dim", 256);
  // The reference chat script wraps the image in <im_start>/<im_end> whatever config.json says (LISA / MMR chat.py
  // set use_mm_start_end = True); a folder that says otherwise is followed by nobody, so warn and wrap.
  if (!r.get_or<bool>("mm_use_im_start_end", true))
    spdlog::warn("{}: mm_use_im_start_end is false, but the reference chat script always wraps the image in "
                 "<im_start>/<im_end>; following the reference (use_mm_start_end = true)",
                 r.location("mm_use_im_start_end"));
  c.m2sa.use_mm_start_end = true;
  // model_max_length is a tokenizer setting (the reference passes 2048); it cannot exceed the LLM's positions.
  c.m2sa.model_max_length = std::min<int64_t>(c.m2sa.model_max_length, c.llama.max_position_embeddings);
  c.validate(source);
  return c;
}

M2SAConfig read_model_config(const std::filesystem::path& path) {
  const json j = read_json_file(path);
  return M2SAConfig::from_json(JsonReader(j, path.string()));
}

}  // namespace m2sa::m2sa_model
