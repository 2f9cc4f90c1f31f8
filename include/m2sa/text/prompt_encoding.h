#pragma once
// From rendered conversations to model inputs, as the reference does it:
//  - tokenizer_image_token (MMR:model/llava/mm_utils.py): ids with one -200 per "<image>";
//  - target masking of collate_fn (MMR:utils/dataset.py:35-183; ../shared/spec/M2SA.md section 2.4):
//    only the answers and their </s> are supervised;
//  - collation: right padding with the pad id (0), attention mask = ids != pad, labels padded with -100,
//    truncation of training batches to model_max_length - (num_image_tokens - 1);
//  - the image-token splice of prepare_inputs_labels_for_multimodal (MMR:model/llava/model/llava_arch.py):
//    the -200 placeholder becomes N image positions (labels -100 there).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "m2sa/text/conversation.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa {

// Split on "<image>", encode each chunk with BOS, keep BOS only once at the start, join with -200.
std::vector<int64_t> tokenizer_image_token(const Tokenizer& tokenizer, std::string_view prompt);

struct EncodedConversation {
  std::vector<int64_t> ids;     // unpadded, with BOS and -200 placeholders
  std::vector<int64_t> labels;  // same length; -100 where not supervised
};

// Encodes one rendered llava_v1 training conversation (it must contain "</s>") and masks its targets:
// per round (split on "</s>"), round_len = len(tokenizer_image_token(round)) (BOS stands for the missing
// </s>), instruction_len = len(tokenizer_image_token(round.split(" ASSISTANT: ")[0] + " ASSISTANT: ")) - 2
// (minus BOS and the trailing lone "▁"); the reference's `cur_len == total_len` assertion (checked when
// cur_len < model_max_length) is an m2sa::Error naming the conversation and both lengths.
// llava_llama_2 is refused: the reference masks it with the llava_v1 separator (spec trap 11).
EncodedConversation encode_conversation(const Tokenizer& tokenizer, const std::string& conversation,
                                        ConvTemplate t = ConvTemplate::kLlavaV1);

struct CollatedBatch {
  at::Tensor input_ids;       // int64 [B, L], right-padded with pad_id
  at::Tensor labels;          // int64 [B, L], -100 on padding
  at::Tensor attention_mask;  // bool [B, L], input_ids != pad_id (as the reference computes it)
};

struct CollateOptions {
  int64_t pad_id = 0;
  // Training batches (inference=False) are cut to model_max_length - (num_image_tokens - 1) columns so
  // the spliced sequence fits model_max_length (reference: 2048 - 255). Validation is never truncated.
  bool truncate = true;
  int64_t model_max_length = 2048;
  int64_t num_image_tokens = 256;
};

CollatedBatch collate(const std::vector<EncodedConversation>& conversations, const CollateOptions& options);

// Where the image features go for one sequence holding exactly one -200.
struct ImageSplice {
  int64_t placeholder = -1;       // index of -200 in the unexpanded ids
  int64_t num_image_tokens = 0;   // N
  int64_t image_begin = 0;        // [image_begin, image_end) in the expanded sequence (= placeholder)
  int64_t image_end = 0;          // image_begin + N
  int64_t expanded_length = 0;    // L + N - 1
  // Expanded index of unexpanded text position i (i != placeholder).
  int64_t expanded_position(int64_t i) const;
};

// ids: [L]; throws unless exactly one -200 is present and N >= 1.
ImageSplice image_splice(const std::vector<int64_t>& ids, int64_t num_image_tokens);
// input_ids: int64 [B, L] -> one splice per row (each row must hold exactly one -200).
std::vector<ImageSplice> image_splices(const at::Tensor& input_ids, int64_t num_image_tokens);

// labels [B, L] (with input_ids [B, L] to find -200) -> [B, L + N - 1]: labels before the placeholder,
// N times -100, labels after it.
at::Tensor expand_labels(const at::Tensor& labels, const at::Tensor& input_ids, int64_t num_image_tokens);
// attention_mask [B, L] -> [B, L + N - 1]: the reference prepends N - 1 ones (llava_arch.py), which equals
// inserting ones at the image positions for right-padded masks.
at::Tensor expand_attention_mask(const at::Tensor& attention_mask, int64_t num_image_tokens);

}  // namespace m2sa
