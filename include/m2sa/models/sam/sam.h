#pragma once
// The SAM composite (segment_anything/modeling/sam.py::Sam) as M2SA holds it (`model.visual_model`): the image
// encoder, the prompt encoder and the mask decoder under the reference names `image_encoder.*`,
// `prompt_encoder.*`, `mask_decoder.*`, so `sam_vit_h_4b8939.pth` loads by name. pixel_mean / pixel_std are not
// part of the module (non-persistent in the reference; the preprocessing lives in the vision layer).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>

#include "m2sa/models/sam/image_encoder.h"
#include "m2sa/models/sam/mask_decoder.h"
#include "m2sa/models/sam/prompt_encoder.h"
#include "m2sa/models/sam/sam_config.h"

namespace m2sa::sam {

class SamImpl : public torch::nn::Module {
 public:
  explicit SamImpl(const SamConfig& config);  // validates the config

  // Sam.postprocess_masks with this model's img_size: low_res [N, k, h, w] -> fp32 [N, k, H, W].
  at::Tensor postprocess_masks(const at::Tensor& low_res, std::pair<int64_t, int64_t> input_size,
                               std::pair<int64_t, int64_t> original_size) const;

  const SamConfig& config() const { return config_; }

  ImageEncoderViT image_encoder{nullptr};
  PromptEncoder prompt_encoder{nullptr};
  MaskDecoder mask_decoder{nullptr};

 private:
  SamConfig config_;
};
TORCH_MODULE(Sam);

}  // namespace m2sa::sam
