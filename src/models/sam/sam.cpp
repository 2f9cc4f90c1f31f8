#include "m2sa/models/sam/sam.h"

#include "m2sa/models/sam/postprocess.h"

namespace m2sa::sam {

SamImpl::SamImpl(const SamConfig& config) : config_(config) {
  config_.validate();
  image_encoder = register_module("image_encoder", ImageEncoderViT(config_.image_encoder));
  prompt_encoder = register_module("prompt_encoder", PromptEncoder(config_));
  mask_decoder = register_module("mask_decoder", MaskDecoder(config_.mask_decoder, config_.prompt_embed_dim(),
                                                             config_.image_encoder.embed_dim));
}

at::Tensor SamImpl::postprocess_masks(const at::Tensor& low_res, std::pair<int64_t, int64_t> input_size,
                                      std::pair<int64_t, int64_t> original_size) const {
  return sam::postprocess_masks(low_res, config_.image_encoder.img_size, input_size, original_size);
}

}  // namespace m2sa::sam
