#include "m2sa/models/m2sa/multimodal.h"

#include <ATen/ATen.h>

#include "m2sa/core/error.h"
#include "m2sa/models/m2sa/m2sa_config.h"

namespace m2sa::m2sa_model {

namespace {

at::Tensor ids_on_cpu(const at::Tensor& input_ids, const char* who) {
  M2SA_CHECK(input_ids.defined() && input_ids.dim() == 2, who, ": input_ids must be [R, L], got ",
             input_ids.defined() ? c10::str(input_ids.sizes()) : std::string("an undefined tensor"));
  M2SA_CHECK(input_ids.scalar_type() == at::kLong, who, ": input_ids must be int64, got ", input_ids.scalar_type());
  return input_ids.to(at::kCPU).contiguous();
}

void check_placeholders(const std::vector<int64_t>& placeholders, int64_t rows, int64_t length, const char* who) {
  M2SA_CHECK(static_cast<int64_t>(placeholders.size()) == rows, who, ": ", placeholders.size(),
             " placeholder positions for ", rows, " rows");
  for (std::size_t r = 0; r < placeholders.size(); ++r)
    M2SA_CHECK(placeholders[r] >= 0 && placeholders[r] < length, who, ": row ", r, ": placeholder position ",
               placeholders[r], " is outside [0, ", length, ")");
}

}  // namespace

std::vector<int64_t> image_placeholders(const at::Tensor& input_ids) {
  const at::Tensor ids = ids_on_cpu(input_ids, "image placeholders");
  const int64_t rows = ids.size(0), length = ids.size(1);
  const int64_t* p = ids.data_ptr<int64_t>();
  std::vector<int64_t> out(static_cast<std::size_t>(rows), -1);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t count = 0;
    for (int64_t i = 0; i < length; ++i) {
      if (p[r * length + i] != kImageTokenIndex) continue;
      if (count == 0) out[static_cast<std::size_t>(r)] = i;
      ++count;
    }
    M2SA_CHECK(count == 1, "conversation ", r, " of the batch holds ", count, " image placeholders (id ",
               kImageTokenIndex, "); every conversation needs exactly one, placed where the image goes "
               "(\"<image>\" in the prompt)");
  }
  return out;
}

at::Tensor splice_image_features(const at::Tensor& text_embeds, const at::Tensor& image_features,
                                 const std::vector<int64_t>& placeholders) {
  const char* who = "image splice";
  M2SA_CHECK(text_embeds.defined() && text_embeds.dim() == 3, who, ": text embeddings must be [R, L, H], got ",
             text_embeds.defined() ? c10::str(text_embeds.sizes()) : std::string("an undefined tensor"));
  const int64_t rows = text_embeds.size(0), length = text_embeds.size(1), width = text_embeds.size(2);
  M2SA_CHECK(image_features.defined() && image_features.dim() == 3 && image_features.size(0) == rows &&
                 image_features.size(2) == width,
             who, ": image features must be [", rows, ", N, ", width, "], got ",
             image_features.defined() ? c10::str(image_features.sizes()) : std::string("an undefined tensor"));
  check_placeholders(placeholders, rows, length, who);
  const at::Tensor feats = image_features.to(text_embeds.scalar_type());
  std::vector<at::Tensor> out;
  out.reserve(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ph = placeholders[static_cast<std::size_t>(r)];
    out.push_back(at::cat({text_embeds[r].slice(0, 0, ph), feats[r], text_embeds[r].slice(0, ph + 1)}, 0));
  }
  return at::stack(out, 0);  // [R, L + N - 1, H]
}

at::Tensor splice_labels(const at::Tensor& labels, const std::vector<int64_t>& placeholders, int64_t n) {
  M2SA_CHECK(labels.defined() && labels.dim() == 2 && labels.scalar_type() == at::kLong,
             "label splice: labels must be int64 [R, L], got ",
             labels.defined() ? c10::str(labels.scalar_type(), " ", labels.sizes()) : std::string("undefined"));
  M2SA_CHECK(n >= 1, "label splice: the number of image tokens must be >= 1, got ", n);
  check_placeholders(placeholders, labels.size(0), labels.size(1), "label splice");
  std::vector<at::Tensor> out;
  for (int64_t r = 0; r < labels.size(0); ++r) {
    const int64_t ph = placeholders[static_cast<std::size_t>(r)];
    out.push_back(at::cat({labels[r].slice(0, 0, ph), at::full({n}, kIgnoreIndex, labels.options()),
                           labels[r].slice(0, ph + 1)}));
  }
  return at::stack(out, 0);
}

at::Tensor splice_attention_mask(const at::Tensor& mask, const std::vector<int64_t>& placeholders, int64_t n) {
  M2SA_CHECK(mask.defined() && mask.dim() == 2, "attention-mask splice: expected [R, L], got ",
             mask.defined() ? c10::str(mask.sizes()) : std::string("an undefined tensor"));
  M2SA_CHECK(n >= 1, "attention-mask splice: the number of image tokens must be >= 1, got ", n);
  check_placeholders(placeholders, mask.size(0), mask.size(1), "attention-mask splice");
  std::vector<at::Tensor> out;
  for (int64_t r = 0; r < mask.size(0); ++r) {
    const int64_t ph = placeholders[static_cast<std::size_t>(r)];
    out.push_back(at::cat({mask[r].slice(0, 0, ph), at::ones({n}, mask.options()), mask[r].slice(0, ph + 1)}));
  }
  return at::stack(out, 0);
}

void check_offset(const std::vector<int64_t>& offset, int64_t num_images, int64_t num_rows) {
  M2SA_CHECK(static_cast<int64_t>(offset.size()) == num_images + 1, "offset has ", offset.size(),
             " entries, expected ", num_images + 1, " (one more than the ", num_images, " images)");
  M2SA_CHECK(offset.front() == 0, "offset must start at 0, got ", offset.front());
  for (std::size_t i = 1; i < offset.size(); ++i)
    M2SA_CHECK(offset[i] >= offset[i - 1], "offset must be non-decreasing, but offset[", i, "] = ", offset[i],
               " < offset[", i - 1, "] = ", offset[i - 1]);
  M2SA_CHECK(offset.back() == num_rows, "offset ends at ", offset.back(), " but the batch has ", num_rows,
             " conversations");
}

SegPositions seg_positions(const at::Tensor& input_ids, int64_t seg_token_id, int64_t n,
                           const std::vector<int64_t>& offset) {
  const at::Tensor ids = ids_on_cpu(input_ids, "[SEG] positions");
  M2SA_CHECK(n >= 1, "[SEG] positions: the number of image tokens must be >= 1, got ", n);
  const int64_t rows = ids.size(0), length = ids.size(1);
  check_offset(offset, static_cast<int64_t>(offset.size()) - 1, rows);
  const std::vector<int64_t> ph = image_placeholders(ids);
  const int64_t* p = ids.data_ptr<int64_t>();
  SegPositions out;
  out.per_image.assign(offset.size() - 1, 0);
  for (std::size_t img = 0; img + 1 < offset.size(); ++img) {
    for (int64_t r = offset[img]; r < offset[img + 1]; ++r) {
      for (int64_t i = 0; i < length; ++i) {
        if (p[r * length + i] != seg_token_id) continue;
        const int64_t placeholder = ph[static_cast<std::size_t>(r)];
        M2SA_CHECK(i > placeholder, "conversation ", r, ": [SEG] (id ", seg_token_id, ") at token ", i,
                   " comes before the image placeholder at token ", placeholder,
                   "; [SEG] tokens must follow the image");
        // Expanded index of [SEG] = i + n - 1; the state that predicts it sits one before.
        out.rows.push_back(r);
        out.positions.push_back(i + n - 2);
        ++out.per_image[img];
      }
    }
  }
  return out;
}

std::vector<at::Tensor> gather_seg_states(const at::Tensor& hidden, const SegPositions& seg) {
  M2SA_CHECK(hidden.defined() && hidden.dim() == 3, "[SEG] gathering: hidden states must be [R, T, H], got ",
             hidden.defined() ? c10::str(hidden.sizes()) : std::string("an undefined tensor"));
  const int64_t rows = hidden.size(0), length = hidden.size(1);
  std::vector<int64_t> flat(seg.rows.size());
  for (std::size_t k = 0; k < seg.rows.size(); ++k) {
    M2SA_CHECK(seg.rows[k] >= 0 && seg.rows[k] < rows && seg.positions[k] >= 0 && seg.positions[k] < length,
               "[SEG] gathering: position (", seg.rows[k], ", ", seg.positions[k], ") is outside the hidden states [",
               rows, ", ", length, "]");
    flat[k] = seg.rows[k] * length + seg.positions[k];
  }
  const at::Tensor index = at::tensor(flat, at::TensorOptions().dtype(at::kLong)).to(hidden.device());
  const at::Tensor picked = hidden.reshape({rows * length, hidden.size(2)}).index_select(0, index);  // [K, H]
  std::vector<at::Tensor> out;
  int64_t begin = 0;
  for (int64_t count : seg.per_image) {
    out.push_back(picked.slice(0, begin, begin + count));
    begin += count;
  }
  M2SA_CHECK(begin == seg.total(), "[SEG] gathering: per-image counts add up to ", begin, ", not ", seg.total());
  return out;
}

}  // namespace m2sa::m2sa_model
