#include "m2sa/vision/mask_image.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::vision {

namespace {

// bool [H, W] on the CPU from a bool/integer mask; `what` names the caller in errors.
at::Tensor binary_mask(const at::Tensor& mask, const char* what) {
  M2SA_CHECK(mask.defined() && mask.dim() == 2, what, ": mask must be [H, W], got ",
             mask.defined() ? c10::str(mask.sizes()) : std::string("undefined"));
  M2SA_CHECK(mask.scalar_type() == at::kBool || at::isIntegralType(mask.scalar_type(), false), what,
             ": mask must be bool or integer, got ", mask.scalar_type(), " (threshold logits first: logits > 0)");
  return mask.to(at::kCPU).ne(0);
}

void check_rgb(const at::Tensor& rgb, const at::Tensor& mask, const char* what) {
  M2SA_CHECK(rgb.defined() && rgb.scalar_type() == at::kByte && rgb.dim() == 3 && rgb.size(2) == 3, what,
             ": image must be uint8 [H, W, 3], got ",
             rgb.defined() ? c10::str(rgb.scalar_type(), " ", rgb.sizes()) : std::string("undefined"));
  M2SA_CHECK(mask.size(-2) == rgb.size(0) && mask.size(-1) == rgb.size(1), what, ": mask ", mask.sizes(),
             " does not match the image ", rgb.sizes());
}

}  // namespace

at::Tensor mask_to_png(const at::Tensor& mask) {
  return binary_mask(mask, "mask_to_png").to(at::kByte).mul(255).contiguous();
}

at::Tensor mask_from_png(const at::Tensor& gray) {
  M2SA_CHECK(gray.defined() && gray.scalar_type() == at::kByte && (gray.dim() == 2 || (gray.dim() == 3 && gray.size(2) == 3)),
             "mask_from_png: expected uint8 [H, W] or [H, W, 3], got ",
             gray.defined() ? c10::str(gray.scalar_type(), " ", gray.sizes()) : std::string("undefined"));
  at::Tensor g = gray.dim() == 3 ? gray.select(2, 0) : gray;
  return g.to(at::kCPU).gt(127).contiguous();
}

void write_mask_png(const std::filesystem::path& path, const at::Tensor& mask) {
  with_context("writing mask " + path.string(), [&] { write_image(path, mask_to_png(mask)); });
}

at::Tensor reference_mask_image(const at::Tensor& mask) {
  return binary_mask(mask, "reference_mask_image").to(at::kByte).mul(100).contiguous();
}

at::Tensor reference_masked_image(const at::Tensor& rgb, const at::Tensor& mask) {
  at::Tensor m = binary_mask(mask, "reference_masked_image");
  check_rgb(rgb, m, "reference_masked_image");
  at::Tensor img = rgb.to(at::kCPU).to(at::kInt);  // [H, W, 3]
  // float64 0.5 * v + 0.5 * (255, 0, 0) assigned to uint8 truncates: floor((v + 255) / 2) and floor(v / 2).
  at::Tensor red = at::tensor({255, 0, 0}, at::kInt);
  at::Tensor blended = at::div(img + red, 2, "floor");
  return at::where(m.unsqueeze(-1), blended, img).to(at::kByte).contiguous();
}

std::string reference_stem(const std::string& image_path) {
  const size_t slash = image_path.rfind('/');
  const std::string name = slash == std::string::npos ? image_path : image_path.substr(slash + 1);
  return name.substr(0, name.find('.'));
}

std::vector<std::filesystem::path> write_reference_outputs(const std::filesystem::path& dir, const std::string& stem,
                                                           const at::Tensor& rgb, const at::Tensor& masks) {
  M2SA_CHECK(masks.defined() && masks.dim() == 3, "write_reference_outputs: masks must be [N, H, W], got ",
             masks.defined() ? c10::str(masks.sizes()) : std::string("undefined"));
  M2SA_CHECK(!stem.empty(), "write_reference_outputs: empty file stem");
  std::vector<std::filesystem::path> written;
  for (int64_t j = 0; j < masks.size(0); ++j) {
    const std::filesystem::path mask_path = dir / (stem + "_mask_" + std::to_string(j) + ".jpg");
    write_image(mask_path, reference_mask_image(masks[j]));
    written.push_back(mask_path);
    const std::filesystem::path img_path = dir / (stem + "_masked_img_" + std::to_string(j) + ".jpg");
    write_image(img_path, reference_masked_image(rgb, masks[j]));
    written.push_back(img_path);
  }
  return written;
}

}  // namespace m2sa::vision
