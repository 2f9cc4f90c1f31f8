#pragma once
// The predictor: image + question -> answer text + one mask per [SEG], as the reference chat script computes it
// (../shared/spec/M2SA.md sections 5.2-5.4), for the CLI, the demo and services.
//
//   image (uint8 RGB) -> sam_preprocess + clip_preprocess
//   question -> "<image>\n" + question -> llava_v1 prompt with an empty assistant turn, <image> wrapped as
//               <im_start><image><im_end> -> tokenizer_image_token (one -200)
//   CLIP once per image -> greedy decoding with the KV cache (M2SAForCausalLM::generate)
//   -> the state before each generated [SEG] -> SAM image encoder once per image, the images of a call in one encoder
//   batch (on the CPU only images whose answer has a [SEG]; on CUDA every image, on a side stream started with the
//   request, concurrently with CLIP and decoding) -> one mask per [SEG] at the original image size.
//
// Text: `answer` is the generated text decoded as chat.py decodes (special tokens kept, newlines removed, "  " ->
// " "), without the final </s>; `reference_text` is chat.py's whole `text_output` (prompt + answer). Each target's
// `phrase` names it: the answer text between the previous [SEG] and this one, cleaned (clean_target_phrase).
//
// Chat sessions keep the conversation: round k's prompt renders rounds 1..k-1 with their answers (llava_v1,
// "USER: q ASSISTANT: a</s>") and an empty last answer; the image is encoded once per session (CLIP features and,
// once needed, SAM features are kept). Only [SEG]s generated in the current round get masks.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/dialog.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa::infer {

struct PredictOptions {
  int64_t max_new_tokens = 512;  // LISA chat.py
  bool compute_masks = true;     // run SAM for answers with [SEG]
};

// One [SEG] of the answer.
struct Target {
  int64_t index = 0;            // 0-based, in answer order
  int64_t token_index = 0;      // position of the [SEG] in Prediction::output_ids
  std::string phrase;           // cleaned text before the [SEG]; may be empty ("It is [SEG].")
  std::string text_before;      // the raw decoded text between the previous [SEG] (or the start) and this one
  at::Tensor logits;            // float32 [H, W] CPU mask logits at the original size (undefined without masks)
  at::Tensor mask;              // bool [H, W] CPU: logits > 0 (undefined without masks)
  std::array<int64_t, 4> box{};  // [x, y, width, height] of the mask (all 0 when empty), COCO bbox convention
  int64_t area = 0;             // foreground pixels
};

// Seconds per stage, with the device synchronised at stage ends. In a batch, the stage times are those of the whole
// batch (`batch_queries` queries over `batch_images` images) and are the same in every prediction of it.
struct PredictionTimings {
  double preprocess_s = 0;  // SAM + CLIP preprocessing (resizing, normalisation)
  double clip_s = 0;        // CLIP + mm_projector (0 when the image was already encoded: chat follow-ups)
  double prefill_s = 0;     // the prompt pass
  double decode_s = 0;      // single-token steps with the KV cache
  double sam_s = 0;         // SAM image encoder (0 when not needed or already encoded; on CUDA, where it runs on a
                            // side stream from the start, the wait for it after decoding)
  double masks_s = 0;       // prompt encoder + mask decoder + post-processing to the original size
  double total_s = 0;       // the whole predict call
  int64_t prompt_tokens = 0;  // LLM positions of this prompt after the image splice
  int64_t new_tokens = 0;     // generated tokens of this prompt (</s> included)
  int64_t decode_steps = 0;   // batched decoding steps
  int64_t batch_queries = 1;
  int64_t batch_images = 1;
  bool clip_cached = false;  // CLIP features reused (chat follow-up)
  bool sam_cached = false;   // SAM features reused (chat follow-up)
};

struct Prediction {
  std::string question;
  std::string answer;          // chat_decode(output ids without the final </s>)
  std::string reference_text;  // chat.py text_output: decode(prompt + output ids without -200), "\n" removed
  std::vector<int64_t> prompt_ids;  // the prompt fed to the model (with one -200)
  std::vector<int64_t> output_ids;  // generated ids (the final </s> included when reached)
  std::string finish_reason;        // "eos", "max_new_tokens", "context_full"
  int64_t height = 0, width = 0;    // original image size (= mask size)
  std::vector<Target> targets;      // one per generated [SEG], in order
  PredictionTimings timings;

  bool has_seg() const { return !targets.empty(); }
};

// One question about image `image` of a batch.
struct Query {
  int64_t image = 0;
  std::string question;
};

// Names a target from the answer text before its [SEG] (a heuristic, docs/INFER.md): the last sentence, then the last
// clause (after ",", ";", ":", "("), then the words after the last copula ("is", "are", "was", "were", "be") or, when
// nothing follows it, the words before it ("chair is [SEG]"); leading "Sure" / "and" / "or" / ... and "the
// segmentation result (of)" are dropped, edge punctuation trimmed; a bare pronoun ("It is [SEG]") gives "".
//   "Those are the chair's leg" -> "the chair's leg";  ", which holds the screen, and its base" -> "its base".
std::string clean_target_phrase(const std::string& text_before);

class ChatSession;

class Predictor {
 public:
  // The model (any dtype / device, in eval mode) and its tokenizer (load_model returns both, checked).
  Predictor(m2sa_model::M2SAForCausalLM model, Tokenizer tokenizer);

  // rgb: uint8 [H, W, 3] RGB (read_image_rgb). Errors name the problem (bad image tensor, prompt too long).
  Prediction predict(const at::Tensor& rgb, const std::string& question, const PredictOptions& options = {}) const;
  // Several questions over several images, decoded together (each image encoded once): one prediction per query, in
  // order. Results equal predicting each query alone (up to floating-point batching noise).
  std::vector<Prediction> predict_batch(const std::vector<at::Tensor>& images, const std::vector<Query>& queries,
                                        const PredictOptions& options = {}) const;
  // A conversation about one image.
  ChatSession chat(const at::Tensor& rgb, const PredictOptions& options = {}) const;

  // ---- building blocks (services, tests) ----
  // chat.py's prompt ids for a dialog whose last turn has an empty answer; the first turn's user text must start
  // with "<image>\n" (prompt_dialog does that). Exactly one -200.
  std::vector<int64_t> prompt_ids(const Dialog& dialog) const;
  // The dialog of a single question: {"<image>\n" + question, ""}.
  static Dialog prompt_dialog(const std::string& question);
  // The answer text of generated ids as Prediction::answer has it (a final </s> dropped); streaming services call
  // it on the ids so far (the text only grows: each result is a prefix of the next).
  std::string answer_text(const std::vector<int64_t>& output_ids) const;
  // SAM + CLIP inputs of uint8 RGB images at this model's sizes (CPU float32).
  m2sa_model::ImageBatch preprocess(const std::vector<at::Tensor>& images) const;

  const m2sa_model::M2SAForCausalLM& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

  // Encoded images shared by the queries of one call or the rounds of a chat session.
  struct EncodedImages {
    m2sa_model::ImageBatch images;                      // preprocessed (CPU)
    at::Tensor clip_features;                           // [B, N, H] (undefined until encoded)
    // Per image, once needed: SamFeatures of one image, its mask-decoder source (neck + compress_vit(early))
    // included, so that later [SEG]s and chat rounds decode from it directly. Images encoded in one batch share
    // that batch's memory (SamFeatures::slice).
    std::vector<std::optional<m2sa_model::SamFeatures>> sam;
  };
  struct PromptJob {
    std::vector<int64_t> ids;  // with one -200
    int64_t image = 0;
    std::string question;
  };
  // The core: CLIP (unless cached) -> generate -> SAM (unless cached, only for images with a [SEG]) -> masks ->
  // targets. Updates `encoded` with what it computed.
  std::vector<Prediction> run(EncodedImages& encoded, const std::vector<PromptJob>& jobs, const PredictOptions& options,
                              double preprocess_s) const;
  // One generated answer -> its Prediction: text, targets, and (options.compute_masks) masks, running the SAM encoder
  // for the job's image unless `encoded` has its features already (then kept there). `timings` is copied into the
  // prediction (sam_s grows by the encoder's time; prompt_tokens and new_tokens are set). run() uses it per job;
  // services that decode with m2sa_model::DecodeBatch call it when a sequence finishes.
  Prediction finish_prediction(EncodedImages& encoded, const PromptJob& job, const m2sa_model::GenerationResult& result,
                               const PredictOptions& options, const PredictionTimings& timings) const;

 private:
  m2sa_model::M2SAForCausalLM model_;
  Tokenizer tokenizer_;
};

class ChatSession {
 public:
  ChatSession(const Predictor& predictor, const at::Tensor& rgb, const PredictOptions& options = {});

  // Answers the next question with the conversation so far; the round's [SEG]s get masks.
  Prediction ask(const std::string& question);

  // The conversation: turn k = (question k, answer k as the model's text without </s>); the first question carries
  // the "<image>\n" prefix, as rendered.
  const Dialog& history() const { return history_; }
  int64_t rounds() const { return static_cast<int64_t>(history_.size()); }
  // The prompt ids the next question would get.
  std::vector<int64_t> next_prompt_ids(const std::string& question) const;
  // How often the image went through CLIP / the SAM encoder in this session (1 each at most).
  int64_t clip_encodings() const { return clip_encodings_; }
  int64_t sam_encodings() const { return sam_encodings_; }
  const at::Tensor& image() const { return rgb_; }
  // Forgets the conversation; the encoded image is kept.
  void reset() { history_.clear(); }

 private:
  Dialog dialog_with(const std::string& question) const;

  Predictor predictor_;
  PredictOptions options_;
  at::Tensor rgb_;
  Predictor::EncodedImages encoded_;
  double preprocess_s_ = 0;
  Dialog history_;
  int64_t clip_encodings_ = 0, sam_encodings_ = 0;
};

}  // namespace m2sa::infer
