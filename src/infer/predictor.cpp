#include "m2sa/infer/predictor.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/core/stopwatch.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/models/m2sa/sam_encoding.h"
#include "m2sa/text/conversation.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/vision/clip_preprocess.h"
#include "m2sa/vision/sam_preprocess.h"

namespace m2sa::infer {

namespace {

using m2sa_model::ImageBatch;
using m2sa_model::SamFeatures;

// Waits for the device so that stage timings mean something on CUDA.
void sync_device(const at::Tensor& t) {
  if (t.defined() && t.numel() > 0 && !t.is_cpu()) (void)t.reshape({-1}).slice(0, 0, 1).to(at::kCPU);
}

// Rows `which` of images [B, ...].
at::Tensor select_images(const at::Tensor& images, const std::vector<int64_t>& which) {
  if (static_cast<int64_t>(which.size()) == images.size(0)) return images;  // all of them, in order
  return images.index_select(0, at::tensor(which, at::TensorOptions().dtype(at::kLong)).to(images.device()));
}

void check_rgb(const at::Tensor& rgb, const std::string& what) {
  M2SA_CHECK(rgb.defined(), what, ": no image");
  M2SA_CHECK(rgb.scalar_type() == at::kByte && rgb.dim() == 3 && rgb.size(2) == 3, what,
             ": the image must be uint8 RGB [H, W, 3] (read_image_rgb), got ", rgb.scalar_type(), " ", rgb.sizes());
  M2SA_CHECK(rgb.size(0) >= 1 && rgb.size(1) >= 1, what, ": the image is empty (", rgb.size(0), "x", rgb.size(1), ")");
}

void check_question(const std::string& question, const std::string& what) {
  M2SA_CHECK(question.find(kImageToken) == std::string::npos, what,
             ": the question must not contain \"<image>\" (the image placeholder is added by the prompt)");
}

// ---- phrase cleaning ----

std::string collapse_spaces(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_edge_punct(char c) {
  return std::string(",;:.!?\"'()[]{}-*`").find(c) != std::string::npos || std::isspace(static_cast<unsigned char>(c));
}

std::string trim_punct(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_edge_punct(s[b])) ++b;
  while (e > b && is_edge_punct(s[e - 1])) --e;
  std::string out = s.substr(b, e - b);
  // Keep a possessive apostrophe at the end ("the chairs'") only if it closes a word: trimmed above; fine for names.
  return out;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> words;
  std::istringstream in(s);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::string join_words(const std::vector<std::string>& w, std::size_t b, std::size_t e) {
  std::string out;
  for (std::size_t i = b; i < e; ++i) {
    if (!out.empty()) out += ' ';
    out += w[i];
  }
  return out;
}

// The word without surrounding punctuation, lower-cased.
std::string bare(const std::string& w) { return lower(trim_punct(w)); }

}  // namespace

std::string clean_target_phrase(const std::string& text_before) {
  std::string s = collapse_spaces(text_before);
  // 1. The last sentence: after the last ". ", "! " or "? ".
  for (const char* end : {". ", "! ", "? "}) {
    const std::size_t p = s.rfind(end);
    if (p != std::string::npos) s = s.substr(p + 2);
  }
  // 2. The last clause: after the last ",", ";", ":", "(" (a trailing one does not count).
  {
    const std::string t = trim_punct(s);
    const std::size_t p = t.find_last_of(",;:(");
    if (p != std::string::npos) s = t.substr(p + 1);
  }
  std::vector<std::string> w = split_words(s);
  // 3. Copulas: the words after the last one, or before it when nothing follows ("chair is [SEG]").
  static const std::set<std::string> copulas{"is", "are", "was", "were", "be"};
  for (std::size_t i = w.size(); i-- > 0;) {
    if (!copulas.count(bare(w[i]))) continue;
    if (i + 1 < w.size()) w.erase(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    else w.erase(w.begin() + static_cast<std::ptrdiff_t>(i), w.end());
    break;
  }
  // 4. Lead-ins and connectives at the start; "the segmentation result (of)" templates.
  static const std::set<std::string> lead{"sure", "and", "or", "also", "then", "so", "here", "well", "yes", "ok", "okay"};
  bool changed = true;
  while (changed && !w.empty()) {
    changed = false;
    if (lead.count(bare(w[0]))) {
      w.erase(w.begin());
      changed = true;
      continue;
    }
    std::vector<std::string> low;
    for (const auto& x : w) low.push_back(bare(x));
    for (const std::vector<std::string>& tpl : std::vector<std::vector<std::string>>{
             {"the", "segmentation", "result", "of"}, {"segmentation", "result", "of"},
             {"the", "segmentation", "results", "of"}, {"the", "segmentation", "result"},
             {"the", "segmentation", "results"}, {"segmentation", "result"}, {"the", "segmentation", "mask", "of"},
             {"the", "mask", "of"}}) {
      if (low.size() >= tpl.size() && std::equal(tpl.begin(), tpl.end(), low.begin())) {
        w.erase(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(tpl.size()));
        changed = true;
        break;
      }
    }
  }
  std::string out = trim_punct(join_words(w, 0, w.size()));
  // 5. A bare pronoun names nothing.
  static const std::set<std::string> pronouns{"it", "they", "this", "that", "these", "those", "he", "she", "them",
                                              "there", "here", "it's", "they're", "that's", "which", "one", "ones"};
  if (pronouns.count(lower(out))) return "";
  return out;
}

// ---- Predictor ----

Predictor::Predictor(m2sa_model::M2SAForCausalLM model, Tokenizer tokenizer)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)) {
  M2SA_CHECK(!model_.is_empty(), "Predictor: no model");
  check_tokenizer(tokenizer_, model_->config(), "Predictor tokenizer");
}

Dialog Predictor::prompt_dialog(const std::string& question) {
  check_question(question, "question");
  return Dialog{Turn{std::string(kImageToken) + "\n" + question, ""}};
}

std::vector<int64_t> Predictor::prompt_ids(const Dialog& dialog) const {
  M2SA_CHECK(!dialog.empty() && dialog.back().assistant.empty(),
             "prompt: the dialog must end with a turn whose answer is empty (the one to generate)");
  const std::string text = render_conversation(dialog, ConvTemplate::kLlavaV1, model_->config().m2sa.use_mm_start_end);
  std::vector<int64_t> ids = tokenizer_image_token(tokenizer_, text);
  const auto images = std::count(ids.begin(), ids.end(), kImageTokenIndex);
  M2SA_CHECK(images == 1, "prompt: expected exactly one <image> in the conversation (the first question's \"<image>\\n\" "
             "prefix), found ", images);
  return ids;
}

ImageBatch Predictor::preprocess(const std::vector<at::Tensor>& images) const {
  M2SA_CHECK(!images.empty(), "preprocess: no images");
  const auto& c = model_->config();
  ClipPreprocessConfig clip;
  clip.shortest_edge = c.clip.image_size;
  clip.crop_size = c.clip.image_size;
  const int64_t s = c.sam.image_encoder.img_size;
  ImageBatch b;
  std::vector<at::Tensor> sam_images, clip_images;
  for (std::size_t i = 0; i < images.size(); ++i) {
    check_rgb(images[i], "image " + std::to_string(i));
    const at::Tensor rgb = images[i].to(at::kCPU).contiguous();
    SamInput si = sam_preprocess(rgb, s);
    sam_images.push_back(si.image);
    clip_images.push_back(clip_preprocess(rgb, clip));
    b.resized_hw.push_back(si.resized_hw);
    b.original_hw.push_back(si.original_hw);
  }
  b.sam_images = at::stack(sam_images);
  b.clip_images = at::stack(clip_images);
  return b;
}

std::vector<Prediction> Predictor::run(EncodedImages& enc, const std::vector<PromptJob>& jobs,
                                       const PredictOptions& options, double preprocess_s) const {
  const auto t_start = Clock::now();
  at::NoGradGuard no_grad;
  const m2sa_model::M2SAForCausalLMImpl& m = *model_;
  const int64_t num_images = enc.images.size();
  M2SA_CHECK(!jobs.empty(), "predict: no questions");
  M2SA_CHECK(options.max_new_tokens >= 1, "predict: max_new_tokens must be >= 1, got ", options.max_new_tokens);
  if (static_cast<int64_t>(enc.sam.size()) != num_images) enc.sam.assign(static_cast<std::size_t>(num_images), std::nullopt);
  PredictionTimings tm;
  tm.preprocess_s = preprocess_s;
  tm.batch_queries = static_cast<int64_t>(jobs.size());
  tm.batch_images = num_images;

  // 0. On CUDA the SAM encoder starts now, on a side stream, for every image not encoded yet (it overlaps CLIP and
  //    decoding); on the CPU nothing starts and step 3 encodes the images whose answer has a [SEG].
  std::vector<int64_t> uncached;
  for (int64_t i = 0; i < num_images; ++i)
    if (!enc.sam[static_cast<std::size_t>(i)]) uncached.push_back(i);
  m2sa_model::SamEncoding early_sam;
  if (options.compute_masks && !uncached.empty())
    early_sam = m2sa_model::SamEncoding::start(m, select_images(enc.images.sam_images, uncached));

  // 1. CLIP once per image (kept by the caller's EncodedImages).
  auto t0 = Clock::now();
  if (enc.clip_features.defined()) {
    tm.clip_cached = true;
  } else {
    enc.clip_features = m.image_features(enc.images.clip_images);  // [B, N, H]
    sync_device(enc.clip_features);
    tm.clip_s = seconds_since(t0);
  }

  // 2. Greedy decoding with the KV cache (masks are done below, with the SAM features kept per image).
  m2sa_model::GenerationRequest req;
  req.images = enc.images;
  req.image_features = enc.clip_features;
  for (const auto& j : jobs) {
    M2SA_CHECK(j.image >= 0 && j.image < num_images, "predict: a question refers to image ", j.image, " but there are ",
               num_images, " image(s)");
    req.prompts.push_back(m2sa_model::GenerationPrompt{j.ids, j.image});
  }
  m2sa_model::GenerationOptions go;
  go.max_new_tokens = options.max_new_tokens;
  go.eos_token_id = tokenizer_.eos_id();
  go.compute_masks = false;
  m2sa_model::GenerationOutput gen = m.generate(req, go);
  tm.prefill_s = gen.timings.prefill_s;
  tm.decode_s = gen.timings.decode_s;
  tm.decode_steps = gen.timings.decode_steps;

  // 3. SAM once per image whose answer has a [SEG] (after generation, as the reference's evaluate()).
  std::vector<bool> needed(static_cast<std::size_t>(num_images), false);
  for (std::size_t k = 0; k < jobs.size(); ++k)
    if (!gen.results[k].seg_indices.empty()) needed[static_cast<std::size_t>(jobs[k].image)] = true;
  if (options.compute_masks) {
    t0 = Clock::now();
    // Only the images still to encode, all in one encoder batch; the features are kept per image (views of it).
    std::vector<int64_t> todo;
    bool any_cached = false;
    for (int64_t i = 0; i < num_images; ++i) {
      if (!needed[static_cast<std::size_t>(i)]) continue;
      if (enc.sam[static_cast<std::size_t>(i)]) any_cached = true;
      else todo.push_back(i);
    }
    if (early_sam.started()) todo = uncached;  // already encoded on the side stream: keep them all
    const bool any_computed = !todo.empty();
    if (any_computed) {
      const SamFeatures sam =
          early_sam.started() ? early_sam.wait() : m.sam_features(select_images(enc.images.sam_images, todo));
      for (std::size_t j = 0; j < todo.size(); ++j)
        enc.sam[static_cast<std::size_t>(todo[j])] = sam.slice(static_cast<int64_t>(j), static_cast<int64_t>(j) + 1);
      sync_device(sam.neck);
    }
    tm.sam_s = any_computed ? seconds_since(t0) : 0.0;
    tm.sam_cached = any_cached && !any_computed;
  }

  // 4. Masks and targets.
  t0 = Clock::now();
  std::vector<Prediction> out;
  out.reserve(jobs.size());
  for (std::size_t k = 0; k < jobs.size(); ++k) out.push_back(finish_prediction(enc, jobs[k], gen.results[k], options, tm));
  const double masks_s = seconds_since(t0);
  const double total = preprocess_s + seconds_since(t_start);
  for (auto& p : out) {
    p.timings.masks_s = masks_s;
    p.timings.total_s = total;
  }
  return out;
}

std::string Predictor::answer_text(const std::vector<int64_t>& output_ids) const {
  std::vector<int64_t> ids = output_ids;
  if (!ids.empty() && ids.back() == tokenizer_.eos_id()) ids.pop_back();
  return collapse_spaces(tokenizer_.chat_decode(ids));
}

Prediction Predictor::finish_prediction(EncodedImages& enc, const PromptJob& job, const m2sa_model::GenerationResult& r,
                                         const PredictOptions& options, const PredictionTimings& timings) const {
  at::NoGradGuard no_grad;
  const m2sa_model::M2SAForCausalLMImpl& m = *model_;
  M2SA_CHECK(job.image >= 0 && job.image < enc.images.size(), "predict: a question refers to image ", job.image,
             " but there are ", enc.images.size(), " image(s)");
  if (static_cast<int64_t>(enc.sam.size()) != enc.images.size())
    enc.sam.assign(static_cast<std::size_t>(enc.images.size()), std::nullopt);
  Prediction p;
  p.timings = timings;
  const auto img = static_cast<std::size_t>(job.image);
  p.question = job.question;
  p.prompt_ids = job.ids;
  p.output_ids = r.output_ids;
  p.finish_reason = m2sa_model::finish_reason_name(r.finish_reason);
  p.height = enc.images.original_hw[img][0];
  p.width = enc.images.original_hw[img][1];
  p.answer = answer_text(r.output_ids);
  std::vector<int64_t> full = p.prompt_ids;
  full.insert(full.end(), r.output_ids.begin(), r.output_ids.end());
  p.reference_text = tokenizer_.chat_decode(full);

  at::Tensor logits;  // [n, H, W] fp32 CPU
  if (options.compute_masks && !r.seg_indices.empty()) {
    auto& slot = enc.sam[img];
    if (!slot) {
      const auto t0 = Clock::now();
      slot = m.sam_features(enc.images.sam_images.slice(0, job.image, job.image + 1));
      sync_device(slot->neck);
      p.timings.sam_s += seconds_since(t0);
    }
    logits = m.decode_masks(r.seg_embeddings, *slot, 0, enc.images.resized_hw[img], enc.images.original_hw[img])
                 .to(at::kCPU, at::kFloat);
  }
  DecodeOptions skip;
  skip.skip_special_tokens = true;
  int64_t prev = -1;
  for (std::size_t j = 0; j < r.seg_indices.size(); ++j) {
    Target t;
    t.index = static_cast<int64_t>(j);
    t.token_index = r.seg_indices[j];
    const std::vector<int64_t> before(r.output_ids.begin() + (prev + 1), r.output_ids.begin() + t.token_index);
    std::string text = before.empty() ? std::string() : tokenizer_.decode(before, skip);
    text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
    t.text_before = collapse_spaces(text);
    t.phrase = clean_target_phrase(t.text_before);
    prev = t.token_index;
    if (logits.defined()) {
      t.logits = logits[static_cast<int64_t>(j)].contiguous();
      t.mask = t.logits.gt(0);
      t.area = t.mask.sum().item<int64_t>();
      if (t.area > 0) {
        const at::Tensor rows = at::nonzero(t.mask.any(1)).reshape({-1});
        const at::Tensor cols = at::nonzero(t.mask.any(0)).reshape({-1});
        const int64_t y0 = rows.min().item<int64_t>(), y1 = rows.max().item<int64_t>();
        const int64_t x0 = cols.min().item<int64_t>(), x1 = cols.max().item<int64_t>();
        t.box = {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
      }
    }
    p.targets.push_back(std::move(t));
  }
  p.timings.prompt_tokens = r.prompt_length;
  p.timings.new_tokens = static_cast<int64_t>(r.output_ids.size());
  return p;
}

Prediction Predictor::predict(const at::Tensor& rgb, const std::string& question, const PredictOptions& options) const {
  return predict_batch({rgb}, {Query{0, question}}, options).front();
}

std::vector<Prediction> Predictor::predict_batch(const std::vector<at::Tensor>& images, const std::vector<Query>& queries,
                                                 const PredictOptions& options) const {
  M2SA_CHECK(!queries.empty(), "predict: no questions");
  const auto t0 = Clock::now();
  std::vector<PromptJob> jobs;
  for (std::size_t k = 0; k < queries.size(); ++k) {
    const Query& q = queries[k];
    M2SA_CHECK(q.image >= 0 && q.image < static_cast<int64_t>(images.size()), "predict: question ", k,
               " refers to image ", q.image, " but there are ", images.size(), " image(s)");
    jobs.push_back(PromptJob{with_context("question " + std::to_string(k), [&] { return prompt_ids(prompt_dialog(q.question)); }),
                             q.image, q.question});
  }
  EncodedImages enc;
  enc.images = preprocess(images);
  return run(enc, jobs, options, seconds_since(t0));
}

ChatSession Predictor::chat(const at::Tensor& rgb, const PredictOptions& options) const {
  return ChatSession(*this, rgb, options);
}

// ---- ChatSession ----

ChatSession::ChatSession(const Predictor& predictor, const at::Tensor& rgb, const PredictOptions& options)
    : predictor_(predictor), options_(options) {
  check_rgb(rgb, "chat");
  rgb_ = rgb.to(at::kCPU).contiguous();
  const auto t0 = Clock::now();
  encoded_.images = predictor_.preprocess({rgb_});
  encoded_.sam.assign(1, std::nullopt);
  preprocess_s_ = seconds_since(t0);
}

Dialog ChatSession::dialog_with(const std::string& question) const {
  check_question(question, "chat question");
  Dialog d = history_;
  d.push_back(Turn{d.empty() ? std::string(kImageToken) + "\n" + question : question, ""});
  return d;
}

std::vector<int64_t> ChatSession::next_prompt_ids(const std::string& question) const {
  return predictor_.prompt_ids(dialog_with(question));
}

Prediction ChatSession::ask(const std::string& question) {
  const Dialog dialog = dialog_with(question);
  std::vector<int64_t> ids = predictor_.prompt_ids(dialog);
  const bool had_clip = encoded_.clip_features.defined();
  const bool had_sam = encoded_.sam[0].has_value();
  const int64_t max_pos = predictor_.model()->config().llama.max_position_embeddings;
  const int64_t positions = static_cast<int64_t>(ids.size()) + predictor_.model()->config().num_image_tokens() - 1;
  M2SA_CHECK(positions < max_pos, "chat: round ", history_.size() + 1, ": the conversation is ", positions,
             " positions long (with the image tokens), which leaves no room to answer within the model's ", max_pos,
             "; start a new session");
  Prediction p = predictor_.run(encoded_, {Predictor::PromptJob{ids, 0, question}}, options_,
                                had_clip ? 0.0 : preprocess_s_)
                     .front();
  if (!had_clip && encoded_.clip_features.defined()) ++clip_encodings_;
  if (!had_sam && encoded_.sam[0].has_value()) ++sam_encodings_;
  // The answer goes into the history as the model's text (LLaVA's cli.py: decode of the new ids, stripped, without
  // the stop string); the template adds "</s>" after it.
  std::vector<int64_t> answer_ids = p.output_ids;
  if (!answer_ids.empty() && answer_ids.back() == predictor_.tokenizer().eos_id()) answer_ids.pop_back();
  std::string text = answer_ids.empty() ? std::string() : predictor_.tokenizer().decode(answer_ids);
  const auto b = text.find_first_not_of(" \t\n");
  const auto e = text.find_last_not_of(" \t\n");
  text = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
  history_.push_back(Turn{dialog.back().user, text});
  return p;
}

}  // namespace m2sa::infer
