#pragma once
// Building SAM models from configs (segment_anything/build_sam.py) and loading SAM checkpoints by name.
#include <filesystem>

#include "m2sa/io/module_weights.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/sam/sam.h"
#include "m2sa/models/sam/sam_config.h"

namespace m2sa::sam {

// A SAM config JSON file (layout in sam_config.h), read strictly.
SamConfig read_sam_config(const std::filesystem::path& path);

// Parameters are created through m2sa::nn (PyTorch default init); inside an nn::ShapeOnlyScope the model lives
// on the meta device and allocates nothing.
Sam build_sam(const SamConfig& config);
Sam build_sam_vit_b();
Sam build_sam_vit_l();
Sam build_sam_vit_h();

// Loads a SAM checkpoint whose keys are the reference `Sam` state_dict names (`sam_vit_h_4b8939.pth`, or any
// safetensors / torch.save file with the keys `image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`).
// Strict: missing, unexpected or mis-shaped keys are errors naming them. With allow_missing_compress_vit
// (LISA/M2SA start from the stock checkpoint with strict=False), `mask_decoder.compress_vit.*` may be absent and
// keeps its initial values.
LoadReport load_sam_checkpoint(SamImpl& sam, const WeightStore& store, bool allow_missing_compress_vit = false);

}  // namespace m2sa::sam
