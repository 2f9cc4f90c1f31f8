#pragma once
// `m2sa export --random-init`: a full-size model with seeded random weights in exactly the released layouts, so that
// real-size loading, inference and training can be exercised without the real files (issue 16). Under `out`:
//   model/                      merged HF folder as the reference merge script writes it (released M2SA-7B):
//                               model-0000k-of-0000n.safetensors + model.safetensors.index.json, config.json,
//                               tokenizer files (no m2sa_config.json: the sizes come from config.json)
//   model-bin/                  the same as sharded pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json
//   sam_vit_h_4b8939.pth        stock SAM (no compress_vit), fp32, torch.save zip, segment-anything's names
//   clip-vit-large-patch14/     HF CLIPVisionModel folder: model.safetensors (fp32), config.json, preprocessor_config
//   llava/                      a LLaVA-style folder for `init.from = "weights"`: hard links to model/'s shards with an
//                               index listing only the LLaMA + mm_projector tensors, config.json and the tokenizer
// Every tensor is generated, written and dropped one at a time (never the whole model in memory): value =
// f(seed, tensor name in the merged layout) so the files do not depend on the order of writing, and the SAM .pth
// holds the same values as model/'s model.visual_model.* (as fp32). Biases are 0, 1-D weights (norms) 1,
// everything else N(0, 0.02). The folder is written into a temporary sibling and renamed into place.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "m2sa/io/tensor_info.h"
#include "m2sa/models/m2sa/m2sa_config.h"

namespace m2sa::infer {

struct RandomInitOptions {
  uint64_t seed = 0;
  c10::ScalarType dtype = c10::kBFloat16;                      // model/, model-bin/ (the reference saves bf16)
  int64_t max_shard_bytes = int64_t{10} * 1000 * 1000 * 1000;  // transformers 4.31 save_pretrained: "10GB"
  bool write_bin = true;                                       // model-bin/
  std::filesystem::path tokenizer;                             // tokenizer.model folder / file (configs/tokenizer)
  bool overwrite = false;                                      // replace an existing folder written by this command
};

// The sub-paths written, relative to `out`.
inline constexpr const char* kRandomModelDir = "model";
inline constexpr const char* kRandomModelBinDir = "model-bin";
inline constexpr const char* kRandomSamFile = "sam_vit_h_4b8939.pth";
inline constexpr const char* kRandomClipDir = "clip-vit-large-patch14";
inline constexpr const char* kRandomLlavaDir = "llava";

// What is written, by file kind: names, dtypes, shapes (from a shape-only model; nothing is allocated).
struct RandomInitLayout {
  std::vector<TensorInfo> merged;  // model/ and model-bin/ (floating tensors in `dtype`)
  std::vector<TensorInfo> sam;     // the SAM .pth (fp32, segment-anything's names, no compress_vit)
  std::vector<TensorInfo> clip;    // the CLIP folder (fp32, CLIPVisionModel names)
};
RandomInitLayout random_init_layout(const m2sa_model::M2SAConfig& config, c10::ScalarType dtype);

void write_random_init_model(const m2sa_model::M2SAConfig& config, const std::filesystem::path& out,
                             const RandomInitOptions& options = {});

// The value written for one tensor (exposed for tests): a function of (seed, info.name) only.
at::Tensor random_init_tensor(const TensorInfo& info, uint64_t seed);

}  // namespace m2sa::infer
