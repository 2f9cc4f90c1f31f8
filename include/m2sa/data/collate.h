#pragma once
// From dataset samples to an M2SA batch, as the reference's collate_fn does (MMR:utils/dataset.py:35-183;
// ../shared/spec/M2SA.md sections 1.1, 1.6, 2.2-2.4, 3.3): each image is decoded once and preprocessed for SAM
// (ResizeLongestSide + normalise + pad) and for CLIP (shortest side + centre crop); every conversation is rendered
// with the llava_v1 template (<image> wrapped as <im_start><image><im_end>), tokenised with its targets masked,
// and all conversations of the batch are right-padded together (training batches truncated to
// model_max_length - (N - 1) tokens, evaluation batches never); `offset` records which rows belong to which image.
// Images of different sizes mix freely: SAM inputs are padded to one square size, CLIP inputs are crops, and the
// masks stay per image at the original size.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "m2sa/data/sample.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/conversation.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/vision/clip_preprocess.h"

namespace m2sa::data {

struct CollateConfig {
  int64_t sam_image_size = 1024;
  ClipPreprocessConfig clip;  // shortest_edge / crop_size = the CLIP tower's image_size
  ConvTemplate conv_template = ConvTemplate::kLlavaV1;
  bool use_mm_start_end = true;
  bool truncate = true;  // training (inference=False); false for evaluation
  // Training: one GT mask per [SEG] (the loss pairs them). Evaluation scores a sample whose counts differ as the
  // reference does (zip, GT count as the denominator), so the check is off there.
  bool require_mask_per_seg = true;
  int64_t model_max_length = 2048;
  int64_t num_image_tokens = 256;
  int64_t seg_token_id = 32000;

  // Sizes and token ids from the model config; `training` selects truncation.
  static CollateConfig for_model(const m2sa_model::M2SAConfig& config, bool training);
};

struct M2SATrainBatch {
  m2sa_model::M2SABatch inputs;         // what M2SAForCausalLM::forward takes
  std::vector<at::Tensor> gt_masks;     // per image float32 [n_i, H_i, W_i] in {0, 1}, in [SEG] order
  std::vector<at::Tensor> ignore;       // per image uint8 [H_i, W_i] (1 = ignored label) or undefined
  std::vector<std::string> sources;     // per image, for messages ("<dataset>:<entry>")
  std::vector<std::string> image_paths;
  std::vector<std::string> conversations;  // per row: the rendered text
  int64_t num_images() const { return static_cast<int64_t>(gt_masks.size()); }
  int64_t num_masks() const;
};

// `images[i]` is the decoded uint8 RGB [H, W, 3] image of samples[i]. Errors name the sample's source: masks whose
// size differs from the image, a [SEG] count different from the mask count (before or after truncation), a
// conversation without the image placeholder, a batch without conversations.
M2SATrainBatch collate_samples(const std::vector<Sample>& samples, const std::vector<at::Tensor>& images,
                               const Tokenizer& tokenizer, const CollateConfig& config);
// The same, reading each sample's image_path (vision/image_io.h: read_image_rgb).
M2SATrainBatch collate_samples(const std::vector<Sample>& samples, const Tokenizer& tokenizer,
                               const CollateConfig& config);

}  // namespace m2sa::data
