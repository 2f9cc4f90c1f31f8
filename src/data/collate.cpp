#include "m2sa/data/collate.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "m2sa/core/error.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/sam_preprocess.h"

namespace m2sa::data {

namespace {

int64_t count_id(const std::vector<int64_t>& ids, int64_t id, std::size_t end) {
  return std::count(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(std::min(end, ids.size())), id);
}

std::string name_of(const Sample& s, std::size_t i) {
  if (!s.source.empty()) return s.source;
  if (!s.image_path.empty()) return s.image_path;
  return "sample " + std::to_string(i);
}

}  // namespace

CollateConfig CollateConfig::for_model(const m2sa_model::M2SAConfig& c, bool training) {
  CollateConfig out;
  out.sam_image_size = c.sam.image_encoder.img_size;
  out.clip.shortest_edge = c.clip.image_size;
  out.clip.crop_size = c.clip.image_size;
  out.use_mm_start_end = c.m2sa.use_mm_start_end;
  out.truncate = training;
  out.require_mask_per_seg = training;
  out.model_max_length = c.m2sa.model_max_length;
  out.num_image_tokens = c.num_image_tokens();
  out.seg_token_id = c.m2sa.seg_token_id;
  return out;
}

int64_t M2SATrainBatch::num_masks() const {
  int64_t n = 0;
  for (const auto& m : gt_masks) n += m.size(0);
  return n;
}

M2SATrainBatch collate_samples(const std::vector<Sample>& samples, const std::vector<at::Tensor>& images,
                               const Tokenizer& tokenizer, const CollateConfig& config) {
  M2SA_CHECK(!samples.empty(), "collate: no samples");
  M2SA_CHECK(images.size() == samples.size(), "collate: ", samples.size(), " samples but ", images.size(), " images");
  M2SA_CHECK(tokenizer.seg_token_id() == config.seg_token_id, "collate: the tokenizer's [SEG] id is ",
             tokenizer.seg_token_id(), " but the model expects ", config.seg_token_id);
  M2SATrainBatch batch;
  std::vector<at::Tensor> sam_images, clip_images;
  std::vector<EncodedConversation> encoded;
  std::vector<int64_t> row_sample;  // sample of each row
  std::vector<int64_t> seg_per_sample(samples.size(), 0);
  batch.inputs.offset.push_back(0);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    const std::string name = name_of(s, i);
    with_context("collate: " + name, [&] {
      const at::Tensor& rgb = images[i];
      M2SA_CHECK(rgb.defined() && rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == at::kByte,
                 "the image must be uint8 RGB [H, W, 3], got ",
                 rgb.defined() ? c10::str(rgb.scalar_type(), " ", rgb.sizes()) : std::string("undefined"));
      const int64_t h = rgb.size(0), w = rgb.size(1);
      if (s.height > 0 || s.width > 0)
        M2SA_CHECK(s.height == h && s.width == w, "the sample says the image is ", s.height, "x", s.width,
                   " (HxW) but the decoded image ", s.image_path, " is ", h, "x", w);
      at::Tensor masks;
      if (s.masks.defined()) {
        M2SA_CHECK(s.masks.dim() == 3 && s.masks.size(1) == h && s.masks.size(2) == w, "masks ", s.masks.sizes(),
                   " do not match the image size ", h, "x", w, " (expected [N, ", h, ", ", w, "])");
        masks = s.masks.to(at::kFloat);
      } else {
        masks = at::zeros({0, h, w}, at::kFloat);
      }
      if (s.ignore.defined())
        M2SA_CHECK(s.ignore.dim() == 2 && s.ignore.size(0) == h && s.ignore.size(1) == w, "ignore map ",
                   s.ignore.sizes(), " does not match the image size ", h, "x", w);
      const SamInput sam = sam_preprocess(rgb, config.sam_image_size);
      sam_images.push_back(sam.image);
      clip_images.push_back(clip_preprocess(rgb, config.clip));
      batch.inputs.images.resized_hw.push_back({sam.resized_hw[0], sam.resized_hw[1]});
      batch.inputs.images.original_hw.push_back({h, w});
      for (std::size_t c = 0; c < s.conversations.size(); ++c) {
        const std::string text = render_conversation(s.conversations[c], config.conv_template, config.use_mm_start_end);
        EncodedConversation e = with_context("conversation " + std::to_string(c), [&] {
          return encode_conversation(tokenizer, text, config.conv_template);
        });
        const int64_t placeholders = count_id(e.ids, kImageTokenIndex, e.ids.size());
        M2SA_CHECK(placeholders == 1, "conversation ", c, " holds ", placeholders,
                   " image placeholders; it needs exactly one \"<image>\" (in its first question)");
        seg_per_sample[i] += count_id(e.ids, config.seg_token_id, e.ids.size());
        encoded.push_back(std::move(e));
        batch.conversations.push_back(text);
        row_sample.push_back(static_cast<int64_t>(i));
      }
      M2SA_CHECK(!config.require_mask_per_seg || seg_per_sample[i] == masks.size(0), "the conversations hold ",
                 seg_per_sample[i],
                 " [SEG] tokens but the sample has ", masks.size(0), " masks (one mask per [SEG], in order)");
      batch.gt_masks.push_back(masks);
      batch.ignore.push_back(s.ignore);
      batch.sources.push_back(name);
      batch.image_paths.push_back(s.image_path);
      batch.inputs.offset.push_back(static_cast<int64_t>(encoded.size()));
      return 0;
    });
  }
  M2SA_CHECK(!encoded.empty(), "collate: the batch has no conversations");
  CollateOptions co;
  co.pad_id = tokenizer.pad_id();
  co.truncate = config.truncate;
  co.model_max_length = config.model_max_length;
  co.num_image_tokens = config.num_image_tokens;
  CollatedBatch cb = collate(encoded, co);
  const auto kept = static_cast<std::size_t>(cb.input_ids.size(1));
  // Truncation must not cut the image or a [SEG] (the reference would fail its mask-count assertion).
  std::vector<int64_t> kept_seg(samples.size(), 0);
  for (std::size_t r = 0; r < encoded.size(); ++r) {
    const auto i = static_cast<std::size_t>(row_sample[r]);
    M2SA_CHECK(count_id(encoded[r].ids, kImageTokenIndex, kept) == 1, "collate: ", batch.sources[i],
               ": truncation to ", kept, " tokens (model_max_length ", config.model_max_length,
               ") cuts the image placeholder");
    kept_seg[i] += count_id(encoded[r].ids, config.seg_token_id, kept);
  }
  for (std::size_t i = 0; i < samples.size(); ++i)
    M2SA_CHECK(kept_seg[i] == seg_per_sample[i], "collate: ", batch.sources[i], ": truncation to ", kept,
               " tokens (model_max_length ", config.model_max_length, " minus ", config.num_image_tokens - 1,
               " image positions) drops ", seg_per_sample[i] - kept_seg[i], " of its ", seg_per_sample[i],
               " [SEG] tokens");
  batch.inputs.input_ids = cb.input_ids;
  batch.inputs.labels = cb.labels;
  batch.inputs.attention_mask = cb.attention_mask;
  batch.inputs.images.sam_images = at::stack(sam_images, 0);
  batch.inputs.images.clip_images = at::stack(clip_images, 0);
  return batch;
}

M2SATrainBatch collate_samples(const std::vector<Sample>& samples, const Tokenizer& tokenizer,
                               const CollateConfig& config) {
  std::vector<at::Tensor> images;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    M2SA_CHECK(!samples[i].image_path.empty(), "collate: ", name_of(samples[i], i), ": no image_path");
    images.push_back(read_image_rgb(samples[i].image_path));
  }
  return collate_samples(samples, images, tokenizer, config);
}

}  // namespace m2sa::data
