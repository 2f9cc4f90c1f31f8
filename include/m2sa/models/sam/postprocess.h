#pragma once
// Sam.postprocess_masks, LISA version (MMR:model/segment_anything/modeling/sam.py:137-172, spec section 1.3):
// in fp32, bilinear (align_corners False) to the padded input size, crop the padding, bilinear to the original
// image size.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace m2sa::sam {

// low_res [N, k, h, w] mask logits (any floating dtype) -> fp32 [N, k, H, W].
// img_size: the encoder input side (1024); input_size (h, w): the resized image inside it (before padding);
// original_size (H, W): the image before resizing. Errors name the sizes that do not fit.
at::Tensor postprocess_masks(const at::Tensor& low_res, int64_t img_size, std::pair<int64_t, int64_t> input_size,
                             std::pair<int64_t, int64_t> original_size);

}  // namespace m2sa::sam
