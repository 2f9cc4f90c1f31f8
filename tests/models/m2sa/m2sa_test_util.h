#pragma once
// Shared helpers of the M2SA model tests: the tiny config, a seeded tiny model, random preprocessed images and
// hand-built token sequences (no tokenizer needed).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/vision/sam_preprocess.h"
#include "test_util.h"

namespace m2sa::test {

// The [SEG] token id of the tiny config (configs/tiny.json "seg_token_id").
inline constexpr int64_t kSeg = 32000;

inline m2sa_model::M2SAConfig tiny_config() {
  return m2sa_model::read_model_config(repo_root() / "configs" / "tiny.json");
}

inline m2sa_model::M2SAForCausalLM tiny_model(uint64_t seed = 0) {
  at::manual_seed(seed);
  m2sa_model::M2SAForCausalLM model(tiny_config());
  model->eval();
  return model;
}

// Random preprocessed images of the given original (H, W) sizes: SAM inputs are N(0, 1) inside the resized region
// and 0 in the padding, CLIP inputs N(0, 1).
inline m2sa_model::ImageBatch random_images(const m2sa_model::M2SAConfig& c,
                                            const std::vector<m2sa_model::ImageSize>& sizes, uint64_t seed = 1) {
  at::manual_seed(seed);
  const int64_t s = c.sam.image_encoder.img_size, cs = c.clip.image_size;
  m2sa_model::ImageBatch b;
  std::vector<at::Tensor> sam, clip;
  for (const auto& hw : sizes) {
    const auto r = resize_longest_side_shape(hw[0], hw[1], s);
    at::Tensor img = at::zeros({3, s, s});
    img.slice(1, 0, r[0]).slice(2, 0, r[1]).normal_();
    sam.push_back(img);
    clip.push_back(at::randn({3, cs, cs}));
    b.resized_hw.push_back({r[0], r[1]});
    b.original_hw.push_back(hw);
  }
  b.sam_images = at::stack(sam);
  b.clip_images = at::stack(clip);
  return b;
}

// A prompt "<s> ... <im_start> <image> <im_end> ... ASSISTANT:" with `extra` more text tokens, as ids.
inline std::vector<int64_t> prompt_ids(int64_t extra = 0) {
  std::vector<int64_t> ids{1, 319, 13563, 1546, 263, 12758, 3148, 1001, 29901, 32001, -200, 32002, 29871, 13};
  for (int64_t i = 0; i < extra; ++i) ids.push_back(1000 + 37 * i);
  for (int64_t id : {1724, 338, 278, 4799, 29973, 319, 1799, 9047, 13566, 29901}) ids.push_back(id);
  return ids;
}

inline std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Right-pads rows with 0; labels are -100 on the prompt part (the first prompt_len[r] tokens) and on padding.
struct Rows {
  at::Tensor ids, labels, mask;
};
inline Rows pad_rows(const std::vector<std::vector<int64_t>>& rows, const std::vector<int64_t>& prompt_len) {
  size_t len = 0;
  for (const auto& r : rows) len = std::max(len, r.size());
  Rows out;
  out.ids = at::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(len)}, at::kLong);
  out.labels = at::full_like(out.ids, -100);
  out.mask = at::zeros_like(out.ids, at::kBool);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 0; i < rows[r].size(); ++i) {
      out.ids[r][i] = rows[r][i];
      out.mask[r][i] = true;
      if (static_cast<int64_t>(i) >= prompt_len[r]) out.labels[r][i] = rows[r][i];
    }
  return out;
}

// A tiny model that answers "[SEG][SEG]..." to everything, so generation yields masks: the LLM layers add nothing
// (o_proj, down_proj = 0), every token embedding has a positive first component, and lm_head scores only [SEG], on
// that component. The masks still depend on the image (SAM) and on the token before each [SEG].
inline m2sa_model::M2SAForCausalLM always_seg_model(uint64_t seed) {
  m2sa_model::M2SAForCausalLM m = tiny_model(seed);
  at::NoGradGuard no_grad;
  const int64_t seg = m->config().m2sa.seg_token_id;
  for (auto& p : m->named_parameters()) {
    const std::string& k = p.key();
    if (k.find("o_proj.weight") != std::string::npos || k.find("down_proj.weight") != std::string::npos)
      p.value().zero_();
    if (k == "model.embed_tokens.weight") p.value().select(1, 0).abs_().add_(1.0);
    if (k == "lm_head.weight") {
      p.value().zero_();
      p.value()[seg][0] = 100.0;
    }
  }
  return m;
}

}  // namespace m2sa::test
