// The predictor on the tiny config with random weights; lm_head is refitted so that greedy decoding writes chosen
// answers (infer_test_util.h), so the masks of generated [SEG]s can be compared with the teacher-forced forward.
#include "m2sa/infer/predictor.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "infer/infer_test_util.h"
#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa {
namespace {

using infer::Prediction;
using infer::Predictor;

using test::error_of;

Predictor tiny_predictor(uint64_t seed) { return Predictor(test::tiny_model(seed), test::tiny_tokenizer()); }

const std::string kQuestion = "Which parts of the chair hold a person up? Please output segmentation mask.";
const std::string kAnswer = "Sure, the chair's leg [SEG] and the seat [SEG].";

// Images fused by the mask decoder so far (neck + compress_vit(early)).
int64_t compressed_images(const Predictor& p) { return p.model()->visual_model->mask_decoder->compressed_images(); }

int64_t count_seg(const std::vector<int64_t>& ids) { return std::count(ids.begin(), ids.end(), int64_t{32000}); }

// Box and area of a bool [H, W] mask, computed the slow way.
std::array<int64_t, 4> slow_box(const at::Tensor& mask) {
  int64_t x0 = mask.size(1), y0 = mask.size(0), x1 = -1, y1 = -1;
  const auto a = mask.accessor<bool, 2>();
  for (int64_t y = 0; y < mask.size(0); ++y)
    for (int64_t x = 0; x < mask.size(1); ++x)
      if (a[y][x]) {
        x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
      }
  if (x1 < 0) return {0, 0, 0, 0};
  return {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
}

TEST(Predictor, GenerationMasksEqualTeacherForcedMasks) {
  const Predictor p = tiny_predictor(21);
  const at::Tensor rgb = test::random_rgb(70, 96, 1);
  const auto forced = test::force(p, {{rgb, kQuestion, kAnswer}});
  ASSERT_EQ(count_seg(forced[0]), 2);

  infer::PredictOptions po;
  po.max_new_tokens = 40;
  const Prediction pred = p.predict(rgb, kQuestion, po);
  ASSERT_EQ(pred.output_ids, forced[0]) << "the refitted lm_head should make greedy decoding write the answer";
  EXPECT_EQ(pred.finish_reason, "eos");
  EXPECT_EQ(pred.height, 70);
  EXPECT_EQ(pred.width, 96);
  EXPECT_EQ(pred.answer.rfind("Sure,", 0), 0u) << pred.answer;
  EXPECT_NE(pred.answer.find("[SEG]"), std::string::npos) << pred.answer;
  EXPECT_NE(pred.reference_text.find("ASSISTANT:"), std::string::npos) << pred.reference_text;
  EXPECT_EQ(pred.prompt_ids, p.prompt_ids(Predictor::prompt_dialog(kQuestion)));
  EXPECT_EQ(std::count(pred.prompt_ids.begin(), pred.prompt_ids.end(), kImageTokenIndex), 1);
  ASSERT_EQ(pred.targets.size(), 2u);
  EXPECT_EQ(pred.targets[0].phrase, "the chair's leg");
  EXPECT_EQ(pred.targets[1].phrase, "the seat");
  EXPECT_EQ(pred.timings.new_tokens, static_cast<int64_t>(forced[0].size()));
  EXPECT_FALSE(pred.timings.clip_cached);

  // The teacher-forced forward of prompt + answer.
  const auto teacher = test::teacher_forward(p, rgb, pred.prompt_ids, forced[0]);
  ASSERT_EQ(teacher.pred_masks.size(), 1u);
  ASSERT_EQ(teacher.pred_masks[0].size(0), 2);
  double worst = 0;
  for (int64_t j = 0; j < 2; ++j) {
    const infer::Target& t = pred.targets[static_cast<std::size_t>(j)];
    EXPECT_EQ(t.index, j);
    EXPECT_EQ(forced[0][static_cast<std::size_t>(t.token_index)], 32000);
    ASSERT_EQ(t.logits.sizes(), (std::vector<int64_t>{70, 96}));
    EXPECT_TRUE(test::AllClose(t.logits, teacher.pred_masks[0][j], 1e-4, "mask " + std::to_string(j)));
    worst = std::max(worst, test::max_abs_diff(t.logits, teacher.pred_masks[0][j]));
    EXPECT_TRUE(t.mask.equal(t.logits.gt(0)));
    EXPECT_EQ(t.area, t.mask.sum().item<int64_t>());
    EXPECT_EQ(t.box, slow_box(t.mask));
  }
  std::cout << "[ parity ] predictor vs teacher forcing: mask logits max abs diff " << worst << "\n";
  // The two targets are different masks (the comparison above can tell them apart).
  EXPECT_GT(test::max_abs_diff(pred.targets[0].logits, pred.targets[1].logits), 1e-3);
}

TEST(Predictor, MultiImageBatchEqualsOneAtATime) {
  const Predictor p = tiny_predictor(22);
  const at::Tensor a = test::random_rgb(64, 90, 2), b = test::random_rgb(120, 80, 3);
  const std::string q0 = kQuestion, q1 = "What holds the lamp? Please output segmentation mask.",
                    q2 = "Is there anything to sit on?";
  const std::vector<test::Forced> cases{{a, q0, kAnswer}, {b, q1, "It is the lamp's base [SEG]."},
                                        {a, q2, "No, nothing."}};
  const auto forced = test::force(p, cases);
  infer::PredictOptions po;
  po.max_new_tokens = 30;
  const int64_t fused_before = compressed_images(p);
  const std::vector<Prediction> batch =
      p.predict_batch({a, b}, {infer::Query{0, q0}, infer::Query{1, q1}, infer::Query{0, q2}}, po);
  EXPECT_EQ(compressed_images(p) - fused_before, 2) << "neck + compress_vit(early) once per image, for its 3 [SEG]s";
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].timings.batch_queries, 3);
  EXPECT_EQ(batch[0].timings.batch_images, 2);
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(batch[k].output_ids, forced[k]) << "query " << k;
    const Prediction one = p.predict(cases[k].rgb, cases[k].question, po);
    EXPECT_EQ(one.output_ids, batch[k].output_ids) << "query " << k;
    EXPECT_EQ(one.answer, batch[k].answer) << "query " << k;
    EXPECT_EQ(one.prompt_ids, batch[k].prompt_ids) << "query " << k;
    EXPECT_EQ(one.height, batch[k].height);
    EXPECT_EQ(one.width, batch[k].width);
    ASSERT_EQ(one.targets.size(), batch[k].targets.size()) << "query " << k;
    for (std::size_t j = 0; j < one.targets.size(); ++j) {
      EXPECT_EQ(one.targets[j].phrase, batch[k].targets[j].phrase);
      EXPECT_TRUE(test::AllClose(batch[k].targets[j].logits, one.targets[j].logits, 1e-4,
                                 "query " + std::to_string(k) + " mask " + std::to_string(j)));
    }
  }
  EXPECT_EQ(batch[0].targets.size(), 2u);
  ASSERT_EQ(batch[1].targets.size(), 1u);
  EXPECT_EQ(batch[1].targets[0].phrase, "the lamp's base");
  EXPECT_EQ(batch[1].targets[0].mask.sizes(), (std::vector<int64_t>{120, 80}));
  EXPECT_FALSE(batch[2].has_seg());  // an answer without [SEG]: no targets, no error
}

TEST(Predictor, ChatKeepsTheConversationAndEncodesTheImageOnce) {
  const Predictor p = tiny_predictor(23);
  const at::Tensor rgb = test::random_rgb(80, 64, 4);
  const std::string q2 = "And which part do you lean against?";
  const std::string a2 = "The backrest [SEG].";
  // Round 1 forced alone first (its answer is needed to render round 2's prompt).
  const auto f1 = test::force(p, {{rgb, kQuestion, kAnswer}});
  infer::PredictOptions po;
  po.max_new_tokens = 30;
  infer::ChatSession chat = p.chat(rgb, po);
  int64_t fused_before = compressed_images(p);
  const Prediction r1 = chat.ask(kQuestion);
  ASSERT_EQ(r1.output_ids, f1[0]);
  EXPECT_EQ(compressed_images(p) - fused_before, 1) << "round 1: one compress_vit for its two [SEG]s";
  ASSERT_EQ(chat.rounds(), 1);
  EXPECT_EQ(chat.history()[0].user, "<image>\n" + kQuestion);
  EXPECT_EQ(chat.history()[0].assistant.find("Sure,"), 0u) << chat.history()[0].assistant;

  // Round 2's prompt renders round 1 with its answer; refit lm_head on both rounds.
  const std::vector<int64_t> prompt2 = chat.next_prompt_ids(q2);
  EXPECT_EQ(std::count(prompt2.begin(), prompt2.end(), kImageTokenIndex), 1);
  EXPECT_EQ(count_seg(prompt2), 2) << "round 1's answer (with its [SEG]s) is part of round 2's prompt";
  EXPECT_GT(prompt2.size(), r1.prompt_ids.size() + r1.output_ids.size() - 1);
  const std::vector<int64_t> ans2 = test::answer_ids(p.tokenizer(), a2);
  const auto t1 = test::teacher_forward(p, rgb, r1.prompt_ids, f1[0]);
  const auto t2 = test::teacher_forward(p, rgb, prompt2, ans2);
  test::force_answers(*p.model().ptr(),
                      {test::emitting_states(t1, p.model()->config(), r1.prompt_ids, static_cast<int64_t>(f1[0].size())),
                       test::emitting_states(t2, p.model()->config(), prompt2, static_cast<int64_t>(ans2.size()))},
                      {f1[0], ans2});

  fused_before = compressed_images(p);
  const Prediction r2 = chat.ask(q2);
  ASSERT_EQ(r2.output_ids, ans2);
  EXPECT_EQ(compressed_images(p) - fused_before, 0) << "round 2 reuses round 1's neck + compress_vit(early)";
  EXPECT_EQ(r2.prompt_ids, prompt2);
  EXPECT_TRUE(r2.timings.clip_cached);
  EXPECT_TRUE(r2.timings.sam_cached);
  EXPECT_EQ(chat.clip_encodings(), 1);
  EXPECT_EQ(chat.sam_encodings(), 1);
  ASSERT_EQ(chat.rounds(), 2);
  EXPECT_EQ(chat.history()[1].user, q2);
  // Only round 2's [SEG] gets a mask; it equals the teacher-forced mask of the last [SEG] of prompt2 + answer.
  ASSERT_EQ(r2.targets.size(), 1u);
  EXPECT_EQ(r2.targets[0].phrase, "The backrest");
  ASSERT_EQ(t2.pred_masks[0].size(0), 3);  // the teacher forward also picks round 1's [SEG]s in the prompt
  EXPECT_TRUE(test::AllClose(r2.targets[0].logits, t2.pred_masks[0][2], 1e-4, "round 2 mask"));

  chat.reset();
  EXPECT_EQ(chat.rounds(), 0);
  EXPECT_EQ(chat.next_prompt_ids(kQuestion), r1.prompt_ids);
}

TEST(Predictor, CleanTargetPhrase) {
  using infer::clean_target_phrase;
  EXPECT_EQ(clean_target_phrase("Sure, the chair's leg"), "the chair's leg");
  EXPECT_EQ(clean_target_phrase(" and the seat"), "the seat");
  EXPECT_EQ(clean_target_phrase("Those are the chair's leg"), "the chair's leg");
  EXPECT_EQ(clean_target_phrase(", which holds the screen, and its base"), "its base");
  EXPECT_EQ(clean_target_phrase("It is"), "");
  EXPECT_EQ(clean_target_phrase("Sure, it is"), "");
  EXPECT_EQ(clean_target_phrase("chair is"), "chair");
  EXPECT_EQ(clean_target_phrase("Sure, the segmentation result of the lamp"), "the lamp");
  EXPECT_EQ(clean_target_phrase("The table is wooden. The top part is"), "The top part");
  EXPECT_EQ(clean_target_phrase(""), "");
}

TEST(Predictor, BadInputGivesClearErrors) {
  const Predictor p = tiny_predictor(24);
  const at::Tensor rgb = test::random_rgb(40, 50, 5);
  EXPECT_NE(error_of([&] { p.predict(rgb.to(at::kFloat), "q"); }).find("must be uint8 RGB [H, W, 3]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { p.predict(rgb.select(2, 0), "q"); }).find("must be uint8 RGB [H, W, 3]"), std::string::npos);
  EXPECT_NE(error_of([&] { p.predict(at::Tensor(), "q"); }).find("no image"), std::string::npos);
  EXPECT_NE(error_of([&] { p.predict(rgb, "look at <image> here"); }).find("must not contain \"<image>\""),
            std::string::npos);
  infer::PredictOptions zero;
  zero.max_new_tokens = 0;
  EXPECT_NE(error_of([&] { p.predict(rgb, "q", zero); }).find("max_new_tokens must be >= 1"), std::string::npos);
  EXPECT_NE(error_of([&] { p.predict_batch({rgb}, {infer::Query{1, "q"}}); }).find("refers to image 1"),
            std::string::npos);
  // A prompt longer than the model's context.
  std::string longq;
  for (int i = 0; i < 1100; ++i) longq += "word ";
  const std::string e = error_of([&] { p.predict(rgb, longq); });
  EXPECT_NE(e.find("max_position_embeddings"), std::string::npos) << e;
}

}  // namespace
}  // namespace m2sa
