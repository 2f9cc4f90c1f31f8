#pragma once
// Configuration of the LLaMA decoder (Hugging Face LlamaConfig field names, ../shared/spec/M2SA.md section 1.7).
#include <cstdint>
#include <string>

#include "m2sa/core/json_reader.h"

namespace m2sa::llama {

struct LlamaConfig {
  int64_t vocab_size = 32003;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;

  // LLaVA-Lightning-7B-v1-1 (LLaMA-1 7B) with the three added tokens [SEG], <im_start>, <im_end> (vocab 32003).
  static LlamaConfig llama_7b();
  // llava-llama-2-13b-chat-lightning-preview (LLaMA-2 13B), vocab 32003.
  static LlamaConfig llama2_13b();

  // Strict: every field but rope_theta (default 10000) is required; unknown fields are errors.
  static LlamaConfig from_json(const JsonReader& reader);
  // The LLaMA fields of a Hugging Face config.json (LlamaForCausalLM, or a LLaVA / LISA / M2SA config with the
  // same top-level fields). Missing fields take transformers 4.31's LlamaConfig defaults; unrelated fields are
  // ignored. Settings this implementation does not support are errors: hidden_act other than "silu",
  // num_key_value_heads != num_attention_heads, tie_word_embeddings, rope_scaling, attention_bias / mlp_bias,
  // head_dim != hidden_size / num_attention_heads. `source` names the file in messages.
  static LlamaConfig from_hf_config(const json& config, const std::string& source);
  json to_json() const;

  void validate(const std::string& where = "LlamaConfig") const;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

}  // namespace m2sa::llama
