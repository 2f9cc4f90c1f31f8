#pragma once
// Masks as image files: our PNG convention (0 / 255, lossless) and the reference chat script's outputs
// (../shared/spec/M2SA.md section 5.2, MMR@fd3f46f:chat.py), kept as an optional compatibility format.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

namespace m2sa::vision {

// bool or integer [H, W] (nonzero = inside) -> uint8 [H, W] with 0 / 255.
at::Tensor mask_to_png(const at::Tensor& mask);
// uint8 [H, W] (or [H, W, 3], first channel) grayscale -> bool [H, W], value > 127 (the inverse of mask_to_png).
at::Tensor mask_from_png(const at::Tensor& gray);
// Writes mask_to_png(mask) to `path` (PNG by extension; atomically, via m2sa::write_image).
void write_mask_png(const std::filesystem::path& path, const at::Tensor& mask);

// Reference `{stem}_mask_{j}.jpg` image: `pred_mask * 100`, i.e. uint8 [H, W] with 0 / 100.
at::Tensor reference_mask_image(const at::Tensor& mask);
// Reference `{stem}_masked_img_{j}.jpg` image: inside the mask, 0.5 * RGB + 0.5 * (255, 0, 0) truncated to
// uint8 as numpy's assignment does, i.e. R' = (R + 255) / 2, G' = G / 2, B' = B / 2 (integer division);
// outside unchanged. rgb uint8 [H, W, 3] -> uint8 [H, W, 3].
at::Tensor reference_masked_image(const at::Tensor& rgb, const at::Tensor& mask);
// The reference's file stem: `image_path.split("/")[-1].split(".")[0]` ("dir/a.b.jpg" -> "a").
std::string reference_stem(const std::string& image_path);
// Writes both reference images for every mask j of masks [N, H, W] into `dir` (JPEG, OpenCV default quality
// like cv2.imwrite) and returns the paths written, in order (mask_0, masked_img_0, mask_1, ...).
std::vector<std::filesystem::path> write_reference_outputs(const std::filesystem::path& dir, const std::string& stem,
                                                           const at::Tensor& rgb, const at::Tensor& masks);

}  // namespace m2sa::vision
