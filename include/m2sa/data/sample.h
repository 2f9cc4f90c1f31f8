#pragma once
// What every dataset reader produces for one image: its conversations (one per sampled question; VQA has
// one multi-round conversation) and the ground-truth masks in [SEG] order (conversation by conversation, left
// to right), as ../shared/spec/M2SA.md sections 1.5 and 2.3 describe.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "m2sa/text/dialog.h"

namespace m2sa {

struct Target {
  std::string phrase;     // the text naming the target ("the house's door", a class or referring phrase)
  std::string category;   // category name for per-category statistics ("door", "mug:handle"); may be empty
  bool is_part = false;   // part-level target (MMR / PACO "obj:part")
};

struct Sample {
  std::string image_path;
  std::string source;                 // "<dataset>:<entry id>" for error messages and NaN reports
  std::string dataset;                // "mmr", "ade20k", "refcoco", "llava_instruct", ...
  std::vector<Dialog> conversations;  // one per question
  at::Tensor masks;                   // uint8 [N, H, W], values {0, 1}, N = total number of [SEG]
  at::Tensor ignore;                  // optional uint8 [H, W], 1 where the label is 255 (ignored); undefined if none
  std::vector<Target> targets;        // N entries, aligned with masks
  // Evaluation samples whose answers' [SEG] count differs from their mask count (an MMR entry scored as the
  // reference scores it): the masks of each conversation. Empty: each conversation has one mask per [SEG].
  std::vector<int64_t> masks_per_conversation;
  int64_t height = 0, width = 0;      // original image size
};

}  // namespace m2sa
