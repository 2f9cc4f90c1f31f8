#pragma once
// Bit-exact port of Pillow 9.x's resampling (libImaging/Resample.c) for 8-bit images, as the reference
// reaches it through torchvision (SAM: bilinear) and transformers' CLIPImageProcessor (CLIP: bicubic).
// Algorithm (../shared/spec/pil_resample_ref.py): per axis scale = in/out, filterscale = max(scale, 1)
// (antialiasing on downscale), support = filter support * filterscale; double-precision weights per output
// pixel normalised to sum 1, converted to 22-bit fixed point (round half away from zero); a horizontal pass
// over only the source rows the vertical pass needs, into a clipped uint8 intermediate, then the vertical
// pass; acc = 2^21 + sum(pixel * k), out = clip(acc >> 22, 0, 255). An axis that keeps its size is not
// resampled; the same size on both axes returns a copy. (Built as ISO C++, so no FMA contraction changes
// the double weights.)
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace m2sa {

enum class PilFilter {
  kBilinear,  // PIL.Image.BILINEAR (support 1)
  kBicubic,   // PIL.Image.BICUBIC (support 2, a = -0.5)
};

// uint8 [H, W, C] (any C >= 1, CPU) -> uint8 [out_h, out_w, C], equal byte for byte to
// PIL.Image.fromarray(image).resize((out_w, out_h), filter).
at::Tensor pil_resize(const at::Tensor& image, int64_t out_h, int64_t out_w, PilFilter filter);

}  // namespace m2sa
