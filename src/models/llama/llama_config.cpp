#include "m2sa/models/llama/llama_config.h"

#include "m2sa/core/error.h"

namespace m2sa::llama {

namespace {
std::string context_of(const JsonReader& reader) {
  std::string s = reader.location("");
  while (!s.empty() && (s.back() == '.' || s.back() == ' ' || s.back() == ':')) s.pop_back();
  return s;
}
}  // namespace

LlamaConfig LlamaConfig::llama_7b() {
  LlamaConfig c;
  c.vocab_size = 32003;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 2048;
  c.rope_theta = 10000.0;
  return c;
}

LlamaConfig LlamaConfig::llama2_13b() {
  LlamaConfig c;
  c.vocab_size = 32003;
  c.hidden_size = 5120;
  c.intermediate_size = 13824;
  c.num_hidden_layers = 40;
  c.num_attention_heads = 40;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 4096;
  c.rope_theta = 10000.0;
  return c;
}

LlamaConfig LlamaConfig::from_json(const JsonReader& r) {
  LlamaConfig c;
  c.vocab_size = r.get<int64_t>("vocab_size");
  c.hidden_size = r.get<int64_t>("hidden_size");
  c.intermediate_size = r.get<int64_t>("intermediate_size");
  c.num_hidden_layers = r.get<int64_t>("num_hidden_layers");
  c.num_attention_heads = r.get<int64_t>("num_attention_heads");
  c.rms_norm_eps = r.get<double>("rms_norm_eps");
  c.max_position_embeddings = r.get<int64_t>("max_position_embeddings");
  c.rope_theta = r.get_or<double>("rope_theta", c.rope_theta);
  r.finish();
  c.validate(context_of(r));
  return c;
}

LlamaConfig LlamaConfig::from_hf_config(const json& config, const std::string& source) {
  M2SA_CHECK(config.is_object(), source, ": expected a JSON object (a LLaMA config.json)");
  JsonReader r(config, source);
  // transformers 4.31 LlamaConfig defaults.
  LlamaConfig c;
  c.vocab_size = r.get_or<int64_t>("vocab_size", 32000);
  c.hidden_size = r.get_or<int64_t>("hidden_size", 4096);
  c.intermediate_size = r.get_or<int64_t>("intermediate_size", 11008);
  c.num_hidden_layers = r.get_or<int64_t>("num_hidden_layers", 32);
  c.num_attention_heads = r.get_or<int64_t>("num_attention_heads", 32);
  c.rms_norm_eps = r.get_or<double>("rms_norm_eps", 1e-6);
  c.max_position_embeddings = r.get_or<int64_t>("max_position_embeddings", 2048);
  c.rope_theta = r.get_or<double>("rope_theta", 10000.0);

  const auto act = r.get_or<std::string>("hidden_act", "silu");
  M2SA_CHECK(act == "silu", r.location("hidden_act"), ": only \"silu\" (SwiGLU) is supported, got \"", act, "\"");
  if (r.has("num_key_value_heads") && !config["num_key_value_heads"].is_null()) {
    const auto kv = r.get<int64_t>("num_key_value_heads");
    M2SA_CHECK(kv == c.num_attention_heads, r.location("num_key_value_heads"), ": grouped-query attention (", kv,
               " key/value heads for ", c.num_attention_heads, " query heads) is not supported");
  }
  M2SA_CHECK(!r.get_or<bool>("tie_word_embeddings", false), r.location("tie_word_embeddings"),
             ": tied input/output embeddings are not supported (LLaMA checkpoints have a separate lm_head)");
  if (r.has("rope_scaling") && !config["rope_scaling"].is_null())
    fail(r.location("rope_scaling"), ": RoPE scaling is not supported, got ", config["rope_scaling"].dump());
  for (const char* bias : {"attention_bias", "mlp_bias"})
    M2SA_CHECK(!r.get_or<bool>(bias, false), r.location(bias), ": biased projections are not supported");
  c.validate(source);
  if (r.has("head_dim") && !config["head_dim"].is_null()) {
    const auto hd = r.get<int64_t>("head_dim");
    M2SA_CHECK(hd == c.head_dim(), r.location("head_dim"), ": ", hd, " differs from hidden_size / num_attention_heads = ",
               c.head_dim());
  }
  return c;
}

json LlamaConfig::to_json() const {
  return json{{"vocab_size", vocab_size},
              {"hidden_size", hidden_size},
              {"intermediate_size", intermediate_size},
              {"num_hidden_layers", num_hidden_layers},
              {"num_attention_heads", num_attention_heads},
              {"rms_norm_eps", rms_norm_eps},
              {"max_position_embeddings", max_position_embeddings},
              {"rope_theta", rope_theta}};
}

void LlamaConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name) {
    M2SA_CHECK(v > 0, where, ": ", name, " must be positive, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(max_position_embeddings, "max_position_embeddings");
  M2SA_CHECK(hidden_size % num_attention_heads == 0, where, ": hidden_size ", hidden_size,
             " is not divisible by num_attention_heads ", num_attention_heads);
  M2SA_CHECK(head_dim() % 2 == 0, where, ": head_dim ", head_dim(), " must be even for rotary embeddings");
  M2SA_CHECK(rms_norm_eps > 0.0, where, ": rms_norm_eps must be positive, got ", rms_norm_eps);
  M2SA_CHECK(rope_theta > 0.0, where, ": rope_theta must be positive, got ", rope_theta);
}

}  // namespace m2sa::llama
