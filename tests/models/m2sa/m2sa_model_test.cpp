// The tiny M2SA model end to end on CPU: the teacher-forced forward (supervised logits, [SEG] prompts, masks),
// greedy generation with the KV cache, batching, precision, trainable selection and bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/models/m2sa/m2sa_trainable.h"
#include "m2sa/nn/lora.h"
#include "m2sa/train/losses.h"
#include "m2sa/train/m2sa_objective.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::m2sa_model {
namespace {

using test::pad_rows;
using test::prompt_ids;

using test::kSeg;
const std::vector<int64_t> kAnswer{739, 338, kSeg, 322, kSeg, 29889, 2};  // "It is [SEG] and [SEG].</s>"

// A batch of images with conversations; rows[r] = prompt + answer, image of each row given by `offset`.
M2SABatch make_batch(const M2SAConfig& c, const std::vector<ImageSize>& sizes,
                     const std::vector<std::vector<int64_t>>& prompts, const std::vector<std::vector<int64_t>>& answers,
                     const std::vector<int64_t>& offset) {
  M2SABatch b;
  b.images = test::random_images(c, sizes);
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> plen;
  for (size_t r = 0; r < prompts.size(); ++r) {
    rows.push_back(test::concat(prompts[r], answers[r]));
    plen.push_back(static_cast<int64_t>(prompts[r].size()));
  }
  test::Rows t = pad_rows(rows, plen);
  b.input_ids = t.ids;
  b.labels = t.labels;
  b.attention_mask = t.mask;
  b.offset = offset;
  return b;
}

// Sets lm_head so that greedy decoding emits answer[j] from the state hidden[j] (least-squares fit of logits 10 for
// the wanted token and 0 for the other answer tokens; every other vocabulary row is 0).
void force_answer(M2SAForCausalLMImpl& model, const at::Tensor& hidden, const std::vector<int64_t>& answer) {
  const std::set<int64_t> tokens(answer.begin(), answer.end());
  const std::vector<int64_t> uniq(tokens.begin(), tokens.end());
  at::Tensor y = at::zeros({static_cast<int64_t>(answer.size()), static_cast<int64_t>(uniq.size())}, at::kDouble);
  for (size_t j = 0; j < answer.size(); ++j)
    y[j][std::find(uniq.begin(), uniq.end(), answer[j]) - uniq.begin()] = 10.0;
  const at::Tensor w = at::matmul(at::linalg_pinv(hidden.to(at::kDouble)), y);  // [H, U]
  at::NoGradGuard no_grad;
  at::Tensor& head = model.llm->lm_head->weight;
  head.zero_();
  for (size_t u = 0; u < uniq.size(); ++u) head[uniq[u]].copy_(w.select(1, static_cast<int64_t>(u)));
}

TEST(M2SAModel, ForwardGivesSupervisedLogitsSegPromptsAndMasks) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  const std::vector<int64_t> a0{739, 338, kSeg, 322, kSeg, 29889, 2}, a1{kSeg, 29889, 2}, a2{3869, 29889, 2};
  M2SABatch b = make_batch(c, {{40, 60}, {70, 50}}, {prompt_ids(0), prompt_ids(2), prompt_ids(1)}, {a0, a1, a2},
                           {0, 2, 3});
  ForwardOptions fo;
  fo.full_logits = true;
  fo.keep_hidden = true;
  const ForwardOutput out = model->forward(b, fo);
  const int64_t n = c.num_image_tokens();
  ASSERT_EQ(out.pred_masks.size(), 2u);
  EXPECT_EQ(out.pred_masks[0].sizes(), (std::vector<int64_t>{3, 40, 60}));
  EXPECT_EQ(out.pred_masks[0].scalar_type(), at::kFloat);
  EXPECT_EQ(out.pred_masks[1].sizes(), (std::vector<int64_t>{0, 70, 50}));  // an image without [SEG]
  EXPECT_EQ(out.seg_embeddings[0].sizes(), (std::vector<int64_t>{3, c.m2sa.out_dim}));
  EXPECT_EQ(out.seg.per_image, (std::vector<int64_t>{3, 0}));
  // Supervised positions: every answer token (its </s> included) is predicted by the position before it.
  EXPECT_EQ(out.lm_logits.size(0), static_cast<int64_t>(a0.size() + a1.size() + a2.size()));
  EXPECT_EQ(out.lm_logits.size(1), c.vocab_size());
  EXPECT_EQ(out.final_hidden.size(1), b.input_ids.size(1) + n - 1);
  // CE over the supervised logits equals HF's shifted CE over the full logits.
  const at::Tensor ce = train::supervised_cross_entropy(out);
  const at::Tensor ref = train::lm_cross_entropy(out.logits, out.labels);
  EXPECT_TRUE(test::AllClose(ce, ref, 1e-5, "supervised CE vs full-logit CE"));
  // The first [SEG] prompt is text_hidden_fcs(hidden state one before [SEG]) of row 0.
  const int64_t seg_raw = static_cast<int64_t>(prompt_ids(0).size()) + 2;
  ASSERT_EQ(b.input_ids[0][seg_raw].item<int64_t>(), kSeg);
  const at::Tensor expect = model->project_seg(out.final_hidden[0][seg_raw + n - 2]);
  EXPECT_TRUE(test::AllClose(out.seg_embeddings[0][0], expect, 1e-6, "first [SEG] prompt"));
  // The third prompt of image 0 comes from row 1 (textual order: row 0's two, then row 1's).
  const int64_t seg_raw1 = static_cast<int64_t>(prompt_ids(2).size());
  ASSERT_EQ(b.input_ids[1][seg_raw1].item<int64_t>(), kSeg);
  EXPECT_TRUE(test::AllClose(out.seg_embeddings[0][2], model->project_seg(out.final_hidden[1][seg_raw1 + n - 2]), 1e-6,
                             "row 1's [SEG] prompt"));
  // Masks-only (validation) forward without labels.
  M2SABatch nolabels = b;
  nolabels.labels = at::Tensor();
  const ForwardOutput v = model->forward(nolabels);
  EXPECT_EQ(v.lm_logits.size(0), 0);
  EXPECT_TRUE(test::AllClose(v.pred_masks[0], out.pred_masks[0], 1e-5, "masks with and without labels"));
}

TEST(M2SAModel, MultiImageBatchEqualsOneImageAtATime) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  const std::vector<ImageSize> sizes{{40, 60}, {33, 33}, {70, 50}};
  const std::vector<std::vector<int64_t>> prompts{prompt_ids(0), prompt_ids(4), prompt_ids(1)};
  const std::vector<std::vector<int64_t>> answers{kAnswer, {kSeg, 29889, 2}, {322, kSeg, 2}};
  // Image 1 has no conversation at all.
  M2SABatch all = make_batch(c, sizes, prompts, answers, {0, 2, 2, 3});
  const ForwardOutput out = model->forward(all);
  ASSERT_EQ(out.pred_masks.size(), 3u);
  EXPECT_EQ(out.pred_masks[1].sizes(), (std::vector<int64_t>{0, 33, 33}));
  std::vector<at::Tensor> logits;
  double worst = 0;
  for (int64_t img : {0, 2}) {
    M2SABatch one;
    one.images.sam_images = all.images.sam_images.slice(0, img, img + 1);
    one.images.clip_images = all.images.clip_images.slice(0, img, img + 1);
    one.images.resized_hw = {all.images.resized_hw[img]};
    one.images.original_hw = {all.images.original_hw[img]};
    const int64_t r0 = all.offset[img], r1 = all.offset[img + 1];
    std::vector<std::vector<int64_t>> rows;
    std::vector<int64_t> plen;
    for (int64_t r = r0; r < r1; ++r) {
      rows.push_back(test::concat(prompts[r], answers[r]));
      plen.push_back(static_cast<int64_t>(prompts[r].size()));
    }
    test::Rows t = pad_rows(rows, plen);
    one.input_ids = t.ids;
    one.labels = t.labels;
    one.attention_mask = t.mask;
    one.offset = {0, r1 - r0};
    const ForwardOutput single = model->forward(one);
    EXPECT_TRUE(test::AllClose(single.pred_masks[0], out.pred_masks[img], 1e-4, "image " + std::to_string(img) + " masks"));
    worst = std::max(worst, test::max_abs_diff(single.pred_masks[0], out.pred_masks[img]));
    logits.push_back(single.lm_logits);
  }
  EXPECT_TRUE(test::AllClose(at::cat(logits, 0), out.lm_logits, 1e-4, "supervised logits"));
  std::cout << "[ parity ] batch vs one image at a time: masks max abs diff " << worst << ", logits "
            << test::max_abs_diff(at::cat(logits, 0), out.lm_logits) << "\n";
}

TEST(M2SAModel, GenerationReproducesTeacherForcedMasks) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  const int64_t n = c.num_image_tokens();
  const std::vector<int64_t> prompt = prompt_ids(2);
  M2SABatch b = make_batch(c, {{45, 61}}, {prompt}, {kAnswer}, {0, 1});
  ForwardOptions fo;
  fo.keep_hidden = true;
  const ForwardOutput teacher = model->forward(b, fo);
  const int64_t pe = static_cast<int64_t>(prompt.size()) + n - 1;  // prompt positions after the splice
  const int64_t k = static_cast<int64_t>(kAnswer.size());
  force_answer(*model, teacher.final_hidden[0].slice(0, pe - 1, pe - 1 + k), kAnswer);

  GenerationRequest req;
  req.images = b.images;
  req.prompts = {GenerationPrompt{prompt, 0}};
  GenerationOptions go;
  go.max_new_tokens = 20;
  go.keep_hidden = true;
  const GenerationOutput gen = model->generate(req, go);
  ASSERT_EQ(gen.results.size(), 1u);
  const GenerationResult& r = gen.results[0];
  EXPECT_EQ(r.output_ids, kAnswer);
  EXPECT_EQ(r.finish_reason, FinishReason::kEos);
  EXPECT_EQ(r.seg_indices, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(r.prompt_length, pe);
  EXPECT_EQ(r.hidden.size(0), pe + k - 1);
  EXPECT_TRUE(test::AllClose(r.hidden, teacher.final_hidden[0].slice(0, 0, pe + k - 1), 1e-4, "cached hidden states"));
  ASSERT_EQ(r.masks.sizes(), teacher.pred_masks[0].sizes());
  EXPECT_TRUE(test::AllClose(r.seg_embeddings, teacher.seg_embeddings[0], 1e-4, "[SEG] prompts"));
  EXPECT_TRUE(test::AllClose(r.masks, teacher.pred_masks[0], 1e-4, "generated vs teacher-forced masks"));
  std::cout << "[ parity ] generation vs teacher forcing: hidden " << test::max_abs_diff(r.hidden, teacher.final_hidden[0].slice(0, 0, pe + k - 1))
            << ", masks " << test::max_abs_diff(r.masks, teacher.pred_masks[0]) << " (mask logits up to "
            << teacher.pred_masks[0].abs().max().item<double>() << ")\n";
  // The comparison can tell: the states at the [SEG] positions themselves (off by one, spec trap 1) give other masks.
  const SamFeatures sam = model->sam_features(b.images.sam_images);
  const at::Tensor wrong_prompts = model->project_seg(at::stack({teacher.final_hidden[0][pe + 2], teacher.final_hidden[0][pe + 4]}));
  const at::Tensor wrong = model->decode_masks(wrong_prompts, sam, 0, b.images.resized_hw[0], b.images.original_hw[0]);
  EXPECT_GT(test::max_abs_diff(wrong, r.masks), 1e-3) << "off-by-one [SEG] states should change the masks";
  EXPECT_GT(gen.timings.decode_steps, 0);
  EXPECT_EQ(gen.timings.prefill_tokens, pe);
}

TEST(M2SAModel, BatchedGenerationEqualsOnePromptAtATime) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  const int64_t n = c.num_image_tokens();
  M2SABatch b = make_batch(c, {{45, 61}, {64, 30}}, {prompt_ids(0)}, {kAnswer}, {0, 1, 1});
  ForwardOptions fo;
  fo.keep_hidden = true;
  const ForwardOutput teacher = model->forward(b, fo);
  const int64_t pe = static_cast<int64_t>(prompt_ids(0).size()) + n - 1;
  force_answer(*model, teacher.final_hidden[0].slice(0, pe - 1, pe - 1 + static_cast<int64_t>(kAnswer.size())), kAnswer);

  GenerationRequest req;
  req.images = b.images;
  req.prompts = {{prompt_ids(0), 0}, {prompt_ids(5), 1}, {prompt_ids(2), 0}};
  GenerationOptions go;
  go.max_new_tokens = 6;
  const GenerationOutput all = model->generate(req, go);
  ASSERT_EQ(all.results.size(), 3u);
  EXPECT_EQ(all.results[0].output_ids, std::vector<int64_t>(kAnswer.begin(), kAnswer.begin() + 6));
  EXPECT_EQ(all.results[0].finish_reason, FinishReason::kMaxNewTokens);
  for (size_t k = 0; k < 3; ++k) {
    GenerationRequest one = req;
    one.prompts = {req.prompts[k]};
    const GenerationResult single = model->generate(one, go).results[0];
    const GenerationResult& r = all.results[k];
    EXPECT_EQ(single.output_ids, r.output_ids) << "prompt " << k;
    EXPECT_EQ(single.finish_reason, r.finish_reason) << "prompt " << k;
    EXPECT_EQ(single.seg_indices, r.seg_indices) << "prompt " << k;
    EXPECT_TRUE(test::AllClose(single.masks, r.masks, 1e-4, "prompt " + std::to_string(k) + " masks"));
    EXPECT_EQ(r.masks.size(1), req.images.original_hw[req.prompts[k].image][0]);
  }
}

TEST(M2SAModel, GenerationStopsAtTheContextLimit) {
  M2SAConfig c = test::tiny_config();
  c.llama.max_position_embeddings = 96;
  c.m2sa.model_max_length = 96;
  at::manual_seed(0);
  M2SAForCausalLM model(c);
  model->eval();
  {
    at::NoGradGuard no_grad;
    model->llm->lm_head->weight.zero_();  // every logit 0: greedy picks token 0, never EOS
  }
  GenerationRequest req;
  req.images = test::random_images(c, {{20, 20}});
  req.prompts = {{prompt_ids(0), 0}};
  GenerationOptions go;
  go.max_new_tokens = 50;
  const GenerationResult r = model->generate(req, go).results[0];
  const int64_t pe = static_cast<int64_t>(prompt_ids(0).size()) + c.num_image_tokens() - 1;
  EXPECT_EQ(r.finish_reason, FinishReason::kContextFull);
  EXPECT_EQ(static_cast<int64_t>(r.output_ids.size()), 96 - pe);
  EXPECT_EQ(r.masks.size(0), 0);
  EXPECT_STREQ(finish_reason_name(r.finish_reason), "context_full");
  // A prompt that does not fit is refused.
  GenerationRequest big = req;
  big.prompts = {{prompt_ids(40), 0}};
  EXPECT_NE(test::m2sa_error_of([&] { model->generate(big, go); }).find("leaves no room to generate"), std::string::npos);
}

TEST(M2SAModel, BadInputGivesClearErrors) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  M2SABatch good = make_batch(c, {{40, 60}}, {prompt_ids(0)}, {kAnswer}, {0, 1});
  M2SABatch b = good;
  b.input_ids = b.input_ids.clone();
  b.input_ids[0][3] = 40000;
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("token id 40000 is outside the vocabulary"), std::string::npos)
      << test::m2sa_error_of([&] { model->forward(b); });
  b = good;
  b.input_ids = b.input_ids.clone();
  b.input_ids[0][10] = 5;  // the -200
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("holds 0 image placeholders"), std::string::npos);
  b = good;
  b.input_ids = b.input_ids.clone();
  b.input_ids[0][4] = -200;
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("holds 2 image placeholders"), std::string::npos);
  b = good;
  b.offset = {0, 2};
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("offset ends at 2 but the batch has 1"), std::string::npos);
  b = good;
  b.images.original_hw.push_back({3, 3});
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("1 images but 1 resized sizes and 2 original sizes"),
            std::string::npos);
  b = good;
  b.labels = b.labels.clone();
  b.labels[0][20] = 99999;
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("label 99999 is outside the vocabulary"), std::string::npos);
  b = good;
  b.images.clip_images = at::zeros({1, 3, 10, 10});
  EXPECT_NE(test::m2sa_error_of([&] { model->forward(b); }).find("CLIP images must be [B, 3, 112, 112]"), std::string::npos);
  // Masks that do not match the [SEG] count.
  const ForwardOutput out = model->forward(good);
  EXPECT_NE(test::m2sa_error_of([&] { train::m2sa_objective(out, {at::zeros({3, 40, 60})}, {}); })
                .find("image 0 has 2 predicted masks ([SEG] tokens in its conversations) but 3 ground-truth masks"),
            std::string::npos);
  // Generation: a prompt without the image, or about a missing image.
  GenerationRequest req;
  req.images = good.images;
  req.prompts = {{std::vector<int64_t>{1, 319, 13563}, 0}};
  EXPECT_NE(test::m2sa_error_of([&] { model->generate(req); }).find("prompt 0"), std::string::npos);
  req.prompts = {{prompt_ids(0), 1}};
  EXPECT_NE(test::m2sa_error_of([&] { model->generate(req); }).find("prompt 0 refers to image 1"), std::string::npos);
}

TEST(M2SAModel, Bfloat16ModelGivesFp32Masks) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  M2SABatch b = make_batch(c, {{40, 60}}, {prompt_ids(0)}, {kAnswer}, {0, 1});
  const ForwardOutput ref = model->forward(b);
  model->to(at::kBFloat16);
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  const ForwardOutput out = model->forward(b);
  ASSERT_EQ(out.pred_masks[0].scalar_type(), at::kFloat);
  EXPECT_EQ(out.lm_logits.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::isfinite(out.pred_masks[0]).all().item<bool>());
  const double diff = test::max_abs_diff(out.pred_masks[0], ref.pred_masks[0]);
  const double scale = ref.pred_masks[0].abs().max().item<double>();
  std::cout << "[ precision ] bf16 vs fp32 masks: max abs diff " << diff << " (fp32 logits up to " << scale << ")\n";
  // Relative to the values: measured 1.6% of the largest logit (bf16 keeps 8 significant bits, about 0.4% per
  // rounding, through the whole SAM + LLM stack); 5% leaves room for other CPUs' kernels, not for a wrong path.
  ASSERT_GT(scale, 0.0);
  EXPECT_LT(diff, 0.05 * scale);
  GenerationRequest req;
  req.images = b.images;
  req.prompts = {{prompt_ids(0), 0}};
  GenerationOptions go;
  go.max_new_tokens = 3;
  const GenerationResult r = model->generate(req, go).results[0];
  EXPECT_EQ(r.masks.scalar_type(), at::kFloat);
  EXPECT_GE(r.output_ids.size(), 1u);
}

TEST(M2SAModel, LisaLayoutWithoutEarlyFusion) {
  // LISA = M2SA without compress_vit and the block tap: the same model code serves both.
  M2SAConfig c = test::tiny_config();
  c.sam.mask_decoder.compress_vit = false;
  c.sam.image_encoder.early_layer = -1;
  at::manual_seed(0);
  M2SAForCausalLM model(c);
  model->eval();
  for (const auto& item : model->named_parameters()) EXPECT_EQ(item.key().find("compress_vit"), std::string::npos);
  M2SABatch b = make_batch(c, {{40, 60}}, {prompt_ids(0)}, {kAnswer}, {0, 1});
  EXPECT_FALSE(model->sam_features(b.images.sam_images).early.defined());
  const ForwardOutput out = model->forward(b);
  EXPECT_EQ(out.pred_masks[0].sizes(), (std::vector<int64_t>{2, 40, 60}));
  EXPECT_TRUE(at::isfinite(out.pred_masks[0]).all().item<bool>());
}

TEST(M2SAModel, TrainableSelectionAndGradients) {
  auto model = test::tiny_model();
  const M2SAConfig& c = model->config();
  const auto names = set_trainable(*model, TrainMode::kLora);
  EXPECT_EQ(nn::lora_layer_names(*model).size(), static_cast<size_t>(2 * c.llama.num_hidden_layers));
  std::set<std::string> prefixes;
  for (const auto& n : names) {
    EXPECT_TRUE(nn::is_lora_key(n) || n.find("embed_tokens") != std::string::npos || n.find("lm_head") != std::string::npos ||
                n.find("mask_decoder") != std::string::npos || n.find("text_hidden_fcs") != std::string::npos)
        << n;
    EXPECT_EQ(n.find("vision_tower"), std::string::npos) << n;
    EXPECT_EQ(n.find("image_encoder"), std::string::npos) << n;
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "model.visual_model.mask_decoder.compress_vit.0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "model.layers.0.self_attn.q_proj.lora_A.default.weight"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "model.layers.0.self_attn.q_proj.weight"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "model.mm_projector.weight"), names.end());

  model->train();
  M2SABatch b = make_batch(c, {{40, 60}}, {prompt_ids(0)}, {kAnswer}, {0, 1});
  const ForwardOutput out = model->forward(b);
  const train::LossParts loss = train::m2sa_objective(out, {(at::rand({2, 40, 60}) > 0.5).to(at::kFloat)}, {});
  ASSERT_TRUE(std::isfinite(loss.loss.item<double>()));
  loss.loss.backward();
  // Frozen tensors get no gradient; trainable ones a finite one (those off the loss's path, such as the IoU
  // head, none), and the ones on each branch of the loss a non-zero one. (lora_A gets zeros at first: LoRA's B
  // starts at zero, peft's init.)
  const auto params = model->named_parameters();
  for (const auto& item : params) {
    const at::Tensor& g = item.value().grad();
    if (!item.value().requires_grad()) {
      EXPECT_FALSE(g.defined()) << item.key();
    }
    if (g.defined()) {
      EXPECT_TRUE(at::isfinite(g).all().item<bool>()) << item.key();
    }
  }
  for (const char* key : {"model.visual_model.mask_decoder.compress_vit.0.weight", "model.text_hidden_fcs.0.0.weight",
                          "lm_head.weight", "model.layers.0.self_attn.q_proj.lora_B.default.weight"}) {
    const at::Tensor* w = params.find(key);
    ASSERT_NE(w, nullptr) << key;
    ASSERT_TRUE(w->grad().defined()) << key;
    EXPECT_GT(w->grad().abs().sum().item<double>(), 0.0) << key;
  }

  // "full": every parameter; gradients now reach the SAM encoder and CLIP too.
  auto full = test::tiny_model();
  const auto all = set_trainable(*full, TrainMode::kFull);
  EXPECT_EQ(static_cast<int64_t>(all.size()), static_cast<int64_t>(full->parameters().size()));
  EXPECT_TRUE(nn::lora_layer_names(*full).empty());
  full->train();
  const ForwardOutput fout = full->forward(b);
  train::m2sa_objective(fout, {(at::rand({2, 40, 60}) > 0.5).to(at::kFloat)}, {}).loss.backward();
  for (const at::Tensor& w : {full->visual_model->image_encoder->patch_embed->proj->weight,
                              full->vision_tower->vision_tower->vision_model->pre_layrnorm->weight,
                              full->mm_projector->weight}) {
    ASSERT_TRUE(w.grad().defined());
    EXPECT_TRUE(at::isfinite(w.grad()).all().item<bool>());
    EXPECT_GT(w.grad().abs().sum().item<double>(), 0.0);
  }
  EXPECT_EQ(train_mode_from_name("full"), TrainMode::kFull);
  EXPECT_NE(test::m2sa_error_of([] { train_mode_from_name("lora+"); }).find("unknown train mode"), std::string::npos);
}

}  // namespace
}  // namespace m2sa::m2sa_model
