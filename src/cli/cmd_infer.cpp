// m2sa infer (--model DIR [--clip DIR] | --peft FILE --config C | --sam PTH --llava DIR --clip DIR --config C)
//            [--trainable FILE] [--tokenizer PATH] [--precision bf16|fp32|fp16] [--device cpu|cuda[:N]]
//            [--max-new-tokens N (default 2048 M2SA / 512 LISA)] [--out DIR] [--reference-outputs] [--no-overlay] [--allow-no-seg]
//            IMAGE "QUESTION"                   one question
//            IMAGE ["QUESTION"] --chat          a conversation: follow-up questions from stdin, one per line
//            --batch FILE.jsonl --out DIR [--batch-size N] [--image-root DIR]
// Prints the answer, the targets, where the outputs went and a timing line (docs/INFER.md).
// Exit codes: 0 done; 1 error (bad input, model loading, some batch lines failed); 3 the model answered without any
// [SEG] (no masks), unless --allow-no-seg.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "command.h"
#include "model_source_options.h"
#include "m2sa/core/atomic_file.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/infer/batch_input.h"
#include "m2sa/infer/device.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/infer/output_writer.h"
#include "m2sa/infer/predictor.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kExitNoSeg = 3;

struct InferArgs {
  ModelSourceArgs model;
  std::string image, question, out, batch, image_root;
  std::string precision = "bf16", device = "cpu";
  int64_t max_new_tokens = 0, batch_size = 4;  // max_new_tokens not given (0): the reference's value for the weights
  const CLI::Option* max_new_tokens_option = nullptr;
  bool chat = false, reference_outputs = false, no_overlay = false, allow_no_seg = false;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void print_prediction(const infer::Prediction& p, const std::string& indent = "") {
  std::cout << indent << "answer: " << p.answer << "\n";
  if (p.targets.empty()) {
    std::cout << indent << "note: the answer has no [SEG] token, so there are no masks\n";
    return;
  }
  std::cout << indent << "targets: " << p.targets.size() << "\n";
  for (const auto& t : p.targets) {
    std::cout << indent << "  " << t.index << ": " << (t.phrase.empty() ? "(no phrase)" : "\"" + t.phrase + "\"");
    if (t.mask.defined())
      std::cout << "  area " << t.area << " px  box [" << t.box[0] << ", " << t.box[1] << ", " << t.box[2] << ", "
                << t.box[3] << "]";
    std::cout << "\n";
  }
}

void print_outputs(const infer::WrittenOutputs& w, const std::string& indent = "") {
  std::cout << indent << "outputs: " << w.dir.string() << " (result.json";
  if (!w.overlay.empty()) std::cout << ", overlay.png";
  if (!w.masks.empty()) std::cout << ", " << w.masks.size() << " mask PNG" << (w.masks.size() == 1 ? "" : "s");
  if (!w.reference.empty()) std::cout << ", " << w.reference.size() << " reference JPEGs";
  std::cout << ")\n";
}

struct Session {
  InferArgs args;
  c10::ScalarType dtype = c10::kBFloat16;
  c10::Device device{c10::kCPU};
  std::optional<infer::Predictor> predictor;
  double load_s = 0;
  infer::PredictOptions options;

  infer::OutputOptions output_options(const std::string& image_path, json extra = json::object()) const {
    infer::OutputOptions o;
    o.overlay = !args.no_overlay;
    o.reference_outputs = args.reference_outputs;
    o.image_path = image_path;
    extra["precision"] = precision_name(dtype);
    extra["device"] = infer::device_name(device);
    extra["max_new_tokens"] = options.max_new_tokens;
    o.extra = std::move(extra);
    return o;
  }
};

void load(Session& s) {
  const InferArgs& a = s.args;
  const infer::ModelSource src = a.model.source();
  infer::LoadModelOptions lo;
  lo.dtype = s.dtype;
  lo.device = s.device;
  lo.eval = true;
  lo.attention = a.model.attention_mode();
  const auto t0 = Clock::now();
  infer::LoadedModel loaded = infer::load_model(src, lo);
  for (const auto& line : loaded.log) spdlog::info("{}", line);
  s.predictor.emplace(loaded.model, loaded.tokenizer);
  s.load_s = seconds_since(t0);
  if (a.max_new_tokens == 0) {
    s.options.max_new_tokens = m2sa_model::reference_max_new_tokens(loaded.model->config());
    spdlog::info("max_new_tokens {} ({} weights; --max-new-tokens changes it)", s.options.max_new_tokens,
                 loaded.model->config().sam.mask_decoder.compress_vit ? "M2SA" : "LISA-layout");
  }
  spdlog::info("model loaded in {:.1f} s ({}, {})", s.load_s, precision_name(s.dtype), infer::device_name(s.device));
}

int run_single(Session& s) {
  const InferArgs& a = s.args;
  const at::Tensor rgb = read_image_rgb(a.image);
  load(s);
  const infer::Prediction p = s.predictor->predict(rgb, a.question, s.options);
  print_prediction(p);
  if (!a.out.empty()) print_outputs(infer::write_prediction(a.out, rgb, p, s.output_options(a.image)));
  char load_s[32];
  std::snprintf(load_s, sizeof load_s, "%.2f", s.load_s);
  std::cout << "timing: load " << load_s << " s | " << infer::timing_line(p.timings) << "\n";
  if (!p.has_seg() && !a.allow_no_seg) {
    std::cout << "exit code " << kExitNoSeg << ": no [SEG] in the answer (--allow-no-seg makes this exit 0)\n";
    return kExitNoSeg;
  }
  return 0;
}

int run_chat(Session& s) {
  const InferArgs& a = s.args;
  const at::Tensor rgb = read_image_rgb(a.image);
  load(s);
  infer::ChatSession chat = s.predictor->chat(rgb, s.options);
  const bool interactive = isatty(STDIN_FILENO) != 0;
  json conversation = json::array();
  std::string question = a.question;
  bool first = true;
  while (true) {
    if (!first || question.empty()) {
      if (interactive) std::cout << "question> " << std::flush;
      if (!std::getline(std::cin, question)) break;  // EOF (Ctrl-D) ends the conversation
      if (!question.empty() && question.back() == '\r') question.pop_back();
      if (question.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines are skipped
    }
    first = false;
    const int64_t round = chat.rounds() + 1;
    const infer::Prediction p = chat.ask(question);
    std::cout << "[round " << round << "]\n";
    print_prediction(p, "  ");
    json entry{{"round", round}, {"question", p.question}, {"answer", p.answer}, {"num_targets", p.targets.size()}};
    if (!a.out.empty()) {
      char name[32];
      std::snprintf(name, sizeof name, "round_%02lld", static_cast<long long>(round));
      const infer::WrittenOutputs w =
          infer::write_prediction(fs::path(a.out) / name, rgb, p, s.output_options(a.image, json{{"round", round}}));
      print_outputs(w, "  ");
      entry["output_dir"] = name;
      conversation.push_back(entry);
      write_file_atomic(fs::path(a.out) / "conversation.json",
                        infer::dump_json(json{{"image", a.image}, {"rounds", conversation}}) + "\n");
    }
    std::cout << "  timing: " << infer::timing_line(p.timings) << "\n" << std::flush;
  }
  std::cout << "chat ended after " << chat.rounds() << " round(s); the image went through CLIP "
            << chat.clip_encodings() << " time(s) and the SAM encoder " << chat.sam_encodings() << " time(s)\n";
  return 0;
}

int run_batch(Session& s) {
  const InferArgs& a = s.args;
  M2SA_CHECK(!a.out.empty(), "--batch needs --out DIR (per-line outputs and results.jsonl go there)");
  M2SA_CHECK(a.batch_size >= 1, "--batch-size must be >= 1, got ", a.batch_size);
  const infer::BatchFile file = infer::read_batch_file(a.batch, a.image_root);
  const std::vector<infer::BatchItem>& items = file.items;
  const fs::path out(a.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  M2SA_CHECK(fs::is_directory(out), out.string(), ": cannot create the output directory",
             ec ? " (" + ec.message() + ")" : "");
  // results.jsonl: one line per input line (good or bad), in file order.
  std::map<int64_t, std::string> lines;
  int64_t failed = 0, no_seg = 0, done = 0;
  for (const infer::BatchLineError& e : file.errors) {
    spdlog::error("{}", e.message);
    lines[e.line] = infer::dump_json(json{{"line", e.line}, {"error", e.message}}, -1);
    ++failed;
  }
  auto flush_results = [&] {
    std::string text;
    for (const auto& [line, l] : lines) text += l + "\n";
    write_file_atomic(out / "results.jsonl", text);
  };
  flush_results();
  if (!items.empty()) load(s);
  for (std::size_t begin = 0; begin < items.size(); begin += static_cast<std::size_t>(a.batch_size)) {
    const std::size_t end = std::min(items.size(), begin + static_cast<std::size_t>(a.batch_size));
    // Images of this chunk, each read once; unreadable ones fail their lines only.
    std::vector<at::Tensor> images;
    std::map<std::string, int64_t> image_index;
    std::map<std::string, std::string> image_error;
    std::vector<infer::Query> queries;
    std::vector<std::size_t> query_item;
    auto fail_line = [&](const infer::BatchItem& it, const std::string& message) {
      const std::string where = a.batch + ":" + std::to_string(it.line);
      spdlog::error("{}: {}", where, message);
      json base{{"line", it.line}, {"image", it.image_as_given}, {"question", it.question},
                {"error", where + ": " + message}};
      if (!it.id.empty()) base["id"] = it.id;
      lines[it.line] = infer::dump_json(base, -1);
      ++failed;
    };
    for (std::size_t k = begin; k < end; ++k) {
      const infer::BatchItem& it = items[k];
      const std::string key = it.image.string();
      if (!image_index.count(key)) {
        try {
          images.push_back(read_image_rgb(it.image));
          image_index[key] = static_cast<int64_t>(images.size()) - 1;
        } catch (const std::exception& e) {
          image_index[key] = -1;
          image_error[key] = e.what();
        }
      }
      if (image_index[key] < 0) {
        fail_line(it, image_error[key]);
        continue;
      }
      queries.push_back(infer::Query{image_index[key], it.question});
      query_item.push_back(k);
    }
    if (!queries.empty()) {
      // Decoded together; if that fails (e.g. one question is too long), each question alone, so that only the bad
      // ones fail.
      std::vector<std::optional<infer::Prediction>> preds(queries.size());
      try {
        std::vector<infer::Prediction> all = s.predictor->predict_batch(images, queries, s.options);
        for (std::size_t q = 0; q < all.size(); ++q) preds[q] = std::move(all[q]);
      } catch (const std::exception&) {
        for (std::size_t q = 0; q < queries.size(); ++q) {
          try {
            preds[q] = s.predictor->predict(images[static_cast<std::size_t>(queries[q].image)], queries[q].question,
                                            s.options);
          } catch (const std::exception& e) {
            fail_line(items[query_item[q]], e.what());
          }
        }
      }
      for (std::size_t q = 0; q < preds.size(); ++q) {
        if (!preds[q]) continue;
        const infer::BatchItem& it = items[query_item[q]];
        const infer::Prediction& p = *preds[q];
        json extra{{"line", it.line}};
        if (!it.id.empty()) extra["id"] = it.id;
        infer::WrittenOutputs w;
        try {
          w = infer::write_prediction(out / it.folder, images[static_cast<std::size_t>(queries[q].image)], p,
                                      s.output_options(it.image_as_given, extra));
        } catch (const std::exception& e) {
          fail_line(it, e.what());
          continue;
        }
        json line{{"line", it.line}, {"image", it.image_as_given}, {"question", it.question}, {"answer", p.answer},
                  {"finish_reason", p.finish_reason}, {"output_dir", it.folder}};
        if (!it.id.empty()) line["id"] = it.id;
        json targets = json::array();
        for (std::size_t t = 0; t < p.targets.size(); ++t) {
          const auto& tg = p.targets[t];
          json tj{{"index", tg.index}, {"phrase", tg.phrase}, {"bbox", {tg.box[0], tg.box[1], tg.box[2], tg.box[3]}},
                  {"area", tg.area}};
          if (t < w.masks.size()) tj["mask_file"] = it.folder + "/" + w.masks[t].filename().string();
          targets.push_back(tj);
        }
        line["targets"] = targets;
        lines[it.line] = infer::dump_json(line, -1);
        if (!p.has_seg()) ++no_seg;
        ++done;
        std::cout << "[" << (it.id.empty() ? it.folder : it.id) << "] " << p.answer << " (" << p.targets.size()
                  << " mask" << (p.targets.size() == 1 ? "" : "s") << ")\n";
      }
      for (const auto& p : preds)
        if (p) {
          std::cout << "timing: " << infer::timing_line(p->timings) << "\n" << std::flush;
          break;
        }
    }
    flush_results();
  }
  std::cout << "batch: " << done << " answered (" << no_seg << " without [SEG]), " << failed << " failed; results in "
            << (out / "results.jsonl").string() << "\n";
  if (failed > 0) return 1;
  if (no_seg > 0 && !a.allow_no_seg) return kExitNoSeg;
  return 0;
}

int run_infer(InferArgs a) {
  Session s;
  s.dtype = parse_precision(a.precision);
  s.device = infer::parse_device(a.device);
  infer::check_precision(s.dtype, s.device);
  M2SA_CHECK(a.max_new_tokens >= 1 || !a.max_new_tokens_option || a.max_new_tokens_option->count() == 0,
             "--max-new-tokens must be >= 1, got ", a.max_new_tokens);
  s.options.max_new_tokens = a.max_new_tokens;
  const bool batch = !a.batch.empty();
  if (batch) {
    M2SA_CHECK(a.image.empty() && a.question.empty(), "--batch reads the images and questions from the JSONL file; do "
               "not also give IMAGE or QUESTION");
    M2SA_CHECK(!a.chat, "--batch and --chat cannot be combined");
  } else {
    M2SA_CHECK(!a.image.empty(), "infer: give IMAGE and \"QUESTION\" (or --batch FILE.jsonl)");
    M2SA_CHECK(a.chat || !a.question.empty(), "infer: give the QUESTION after the image (or --chat to read questions "
               "from stdin)");
  }
  s.args = std::move(a);
  if (batch) return run_batch(s);
  if (s.args.chat) return run_chat(s);
  return run_single(s);
}

Registrar register_infer({"infer", "Answer a question about an image and segment every [SEG] target (greedy decoding, KV cache)",
               [](CLI::App& app) {
                 auto a = std::make_shared<InferArgs>();
                 app.add_option("image", a->image, "image file (PNG, JPEG, ...)");
                 app.add_option("question", a->question, "the question (quote it)");
                 add_model_source_options(app, a->model);
                 app.add_option("--out", a->out, "write masks, overlay and result.json here");
                 a->max_new_tokens_option =
                     app.add_option("--max-new-tokens", a->max_new_tokens,
                                    "most tokens to generate (default: 2048 for M2SA weights as M2SA's chat.py, 512 "
                                    "for a LISA-layout checkpoint as LISA's)");
                 app.add_option("--precision", a->precision, "bf16 (default, as the reference chat.py), fp32, fp16 "
                                                             "(CUDA only)");
                 app.add_option("--device", a->device, "cpu (default), cuda or cuda:N");
                 app.add_option("--batch", a->batch, "JSONL file: one {\"image\", \"question\"[, \"id\"]} per line");
                 app.add_option("--batch-size", a->batch_size, "questions decoded together in --batch mode (default 4)");
                 app.add_option("--image-root", a->image_root, "folder for relative image paths in --batch (default: "
                                                               "the JSONL file's folder)");
                 app.add_flag("--chat", a->chat, "keep the conversation: read follow-up questions from stdin, one per "
                                                 "line, until EOF (blank lines are skipped)");
                 app.add_flag("--reference-outputs", a->reference_outputs,
                              "also write chat.py's <stem>_mask_<j>.jpg and <stem>_masked_img_<j>.jpg");
                 app.add_flag("--no-overlay", a->no_overlay, "do not write overlay.png");
                 app.add_flag("--allow-no-seg", a->allow_no_seg, "exit 0 when the answer has no [SEG] (default: exit 3)");
                 return [a]() -> int { return run_infer(*a); };
               }});

}  // namespace
}  // namespace m2sa::cli
