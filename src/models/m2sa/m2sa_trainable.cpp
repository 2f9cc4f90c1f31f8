#include "m2sa/models/m2sa/m2sa_trainable.h"

#include "m2sa/core/error.h"
#include "m2sa/nn/lora.h"

namespace m2sa::m2sa_model {

TrainMode train_mode_from_name(const std::string& name) {
  if (name == "lora") return TrainMode::kLora;
  if (name == "full") return TrainMode::kFull;
  fail("unknown train mode \"", name, "\": expected \"lora\" (LoRA + embeddings + lm_head + mask decoder + "
       "text_hidden_fcs, as the reference) or \"full\" (every parameter)");
}

std::string train_mode_name(TrainMode mode) { return mode == TrainMode::kLora ? "lora" : "full"; }

const std::vector<std::string>& lora_mode_trainable_modules() {
  static const std::vector<std::string> names{"lm_head", "embed_tokens", "mask_decoder", "text_hidden_fcs"};
  return names;
}

std::vector<std::string> set_trainable(M2SAForCausalLMImpl& model, TrainMode mode) {
  if (mode == TrainMode::kLora && nn::lora_layer_names(model).empty()) nn::apply_lora(model, model.config().m2sa.lora);
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    bool train = true;
    if (mode == TrainMode::kLora) {
      const std::string& name = item.key();
      train = nn::is_lora_key(name);
      for (const auto& part : lora_mode_trainable_modules()) train = train || name.find(part) != std::string::npos;
    }
    item.value().set_requires_grad(train);
  }
  return trainable_names(model);
}

std::vector<std::string> trainable_names(const M2SAForCausalLMImpl& model) {
  std::vector<std::string> out;
  for (const auto& item : model.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) out.push_back(item.key());
  return out;
}

int64_t trainable_numel(const M2SAForCausalLMImpl& model) {
  int64_t n = 0;
  for (const auto& item : model.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) n += item.value().numel();
  return n;
}

}  // namespace m2sa::m2sa_model
