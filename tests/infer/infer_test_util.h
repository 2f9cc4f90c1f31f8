#pragma once
// Helpers of the inference tests: the tiny model with its tokenizer, random images, and "forced" answers: lm_head is
// refitted (least squares on the teacher-forced hidden states) so that greedy decoding of a random tiny model writes a
// chosen answer, [SEG]s included; every other weight stays random.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "m2sa/infer/predictor.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/text/tokenizer.h"
#include "models/m2sa/m2sa_test_util.h"

namespace m2sa::test {

inline Tokenizer tiny_tokenizer() { return Tokenizer::load(repo_root() / "configs" / "tokenizer" / "tokenizer.model"); }

// uint8 [h, w, 3] with smooth structure (so resizing is not trivial) plus noise.
inline at::Tensor random_rgb(int64_t h, int64_t w, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor yy = at::arange(h, at::kFloat).view({h, 1, 1}) / static_cast<double>(h);
  at::Tensor xx = at::arange(w, at::kFloat).view({1, w, 1}) / static_cast<double>(w);
  at::Tensor base = at::cat({yy.expand({h, w, 1}), xx.expand({h, w, 1}), (xx * yy).expand({h, w, 1})}, 2) * 200;
  return (base + at::rand({h, w, 3}) * 55).clamp(0, 255).to(at::kByte).contiguous();
}

// The answer's ids as the model would write them: encode without BOS, then </s>.
inline std::vector<int64_t> answer_ids(const Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids = tok.encode(text, /*add_bos=*/false);
  ids.push_back(tok.eos_id());
  return ids;
}

// Teacher-forced forward of one image with one conversation = prompt + answer (keep_hidden).
inline m2sa_model::ForwardOutput teacher_forward(const infer::Predictor& p, const at::Tensor& rgb,
                                                 const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer) {
  m2sa_model::M2SABatch b;
  b.images = p.preprocess({rgb});
  Rows rows = pad_rows({concat(prompt, answer)}, {static_cast<int64_t>(prompt.size())});
  b.input_ids = rows.ids;
  b.labels = rows.labels;
  b.attention_mask = rows.mask;
  b.offset = {0, 1};
  m2sa_model::ForwardOptions fo;
  fo.keep_hidden = true;
  return p.model()->forward(b, fo);
}

// The hidden states that emit answer[0..k-1]: positions pe-1 .. pe+k-2 of the spliced sequence.
inline at::Tensor emitting_states(const m2sa_model::ForwardOutput& out, const m2sa_model::M2SAConfig& c,
                                  const std::vector<int64_t>& prompt, int64_t answer_len) {
  const int64_t pe = static_cast<int64_t>(prompt.size()) + c.num_image_tokens() - 1;
  return out.final_hidden[0].slice(0, pe - 1, pe - 1 + answer_len);
}

// Refits lm_head so that state states[i] row j emits answers[i][j] (logit 10 vs 0 for every other answer token; other
// vocabulary rows 0).
inline void force_answers(m2sa_model::M2SAForCausalLMImpl& model, const std::vector<at::Tensor>& states,
                          const std::vector<std::vector<int64_t>>& answers) {
  std::set<int64_t> tokens;
  for (const auto& a : answers) tokens.insert(a.begin(), a.end());
  const std::vector<int64_t> uniq(tokens.begin(), tokens.end());
  std::vector<at::Tensor> hs, ys;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    hs.push_back(states[i].to(at::kDouble));
    at::Tensor y = at::zeros({static_cast<int64_t>(answers[i].size()), static_cast<int64_t>(uniq.size())}, at::kDouble);
    for (std::size_t j = 0; j < answers[i].size(); ++j)
      y[static_cast<int64_t>(j)][std::find(uniq.begin(), uniq.end(), answers[i][j]) - uniq.begin()] = 10.0;
    ys.push_back(y);
  }
  const at::Tensor w = at::matmul(at::linalg_pinv(at::cat(hs, 0)), at::cat(ys, 0));  // [H, U]
  at::NoGradGuard no_grad;
  at::Tensor& head = model.llm->lm_head->weight;
  head.zero_();
  for (std::size_t u = 0; u < uniq.size(); ++u) head[uniq[u]].copy_(w.select(1, static_cast<int64_t>(u)).to(head.scalar_type()));
}

// Forces `predictor`'s model to answer each (image, question) with the given answer text; returns the answer ids.
struct Forced {
  at::Tensor rgb;
  std::string question;
  std::string answer;
};
inline std::vector<std::vector<int64_t>> force(const infer::Predictor& p, const std::vector<Forced>& cases) {
  std::vector<at::Tensor> states;
  std::vector<std::vector<int64_t>> answers;
  for (const auto& c : cases) {
    const std::vector<int64_t> prompt = p.prompt_ids(infer::Predictor::prompt_dialog(c.question));
    const std::vector<int64_t> ans = answer_ids(p.tokenizer(), c.answer);
    const auto out = teacher_forward(p, c.rgb, prompt, ans);
    states.push_back(emitting_states(out, p.model()->config(), prompt, static_cast<int64_t>(ans.size())));
    answers.push_back(ans);
  }
  force_answers(*p.model().ptr(), states, answers);
  return answers;
}

}  // namespace m2sa::test
