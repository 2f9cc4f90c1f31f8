#pragma once
// The LLaVA glue and the [SEG] bookkeeping of M2SA on plain tensors (no tokenizer, no images):
//  - the image splice of prepare_inputs_labels_for_multimodal (MMR:model/llava/model/llava_arch.py:98-347,
//    mm_use_im_start_end branch; ../shared/spec/M2SA.md section 1.6): the single -200 placeholder of each sequence
//    is replaced by the N image feature vectors; labels get N x -100 there; the attention mask N ones;
//  - which final hidden states become [SEG] prompts (MMR:model/M2SA.py:194-206, 254-274; spec 1.5): for a [SEG]
//    at raw index p the state at expanded position expanded(p) - 1, i.e. the token just before [SEG] (the state
//    whose logits predict it; spec trap 1), collected conversation by conversation, left to right, and handed to
//    image i for the conversations offset[i] .. offset[i+1] - 1.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace m2sa::m2sa_model {

// Index of the -200 placeholder in every row of input_ids int64 [R, L]. Each row must hold exactly one; errors
// name the row and what was found.
std::vector<int64_t> image_placeholders(const at::Tensor& input_ids);

// text_embeds [R, L, H] (the embeddings of input_ids with the placeholder replaced by any valid id),
// image_features [R, N, H] (row r's image) -> [R, L + N - 1, H]: text before the placeholder, the N image
// features, text after it.
at::Tensor splice_image_features(const at::Tensor& text_embeds, const at::Tensor& image_features,
                                 const std::vector<int64_t>& placeholders);

// labels int64 [R, L] -> [R, L + N - 1] with N x -100 in place of the placeholder.
at::Tensor splice_labels(const at::Tensor& labels, const std::vector<int64_t>& placeholders, int64_t num_image_tokens);
// attention_mask [R, L] (any dtype) -> [R, L + N - 1] with N ones in place of the placeholder. For right-padded
// masks this equals the reference's "prepend N - 1 ones".
at::Tensor splice_attention_mask(const at::Tensor& attention_mask, const std::vector<int64_t>& placeholders,
                                 int64_t num_image_tokens);

// Where the [SEG] prompts of a batch come from.
struct SegPositions {
  std::vector<int64_t> rows;       // conversation (row) of each [SEG], in textual order
  std::vector<int64_t> positions;  // expanded index of the hidden state used (= expanded [SEG] index - 1)
  std::vector<int64_t> per_image;  // number of [SEG] per image (size B)
  int64_t total() const { return static_cast<int64_t>(rows.size()); }
};

// input_ids int64 [R, L] (raw, one -200 per row, padded anywhere after the text), seg_token_id, N image tokens,
// offset: B + 1 non-decreasing conversation offsets with offset[0] = 0 and offset[B] = R. A [SEG] before the
// image placeholder is an error (the reference's fixed +255 shift would pick an unrelated state there).
SegPositions seg_positions(const at::Tensor& input_ids, int64_t seg_token_id, int64_t num_image_tokens,
                           const std::vector<int64_t>& offset);

// The hidden states [R, T, H] at the SegPositions, split per image: B tensors [n_i, H] (n_i may be 0).
std::vector<at::Tensor> gather_seg_states(const at::Tensor& hidden, const SegPositions& seg);

// Checks an offset vector against B images and R conversations; errors say what is wrong.
void check_offset(const std::vector<int64_t>& offset, int64_t num_images, int64_t num_rows);

}  // namespace m2sa::m2sa_model
