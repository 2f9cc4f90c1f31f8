#pragma once
// The world of the `m2sa eval` tests (tests/eval/eval_cli_test.cpp and tests/long/eval_dist_test.cpp): a small
// synthetic dataset and two tiny models exported (fp32, lossless) into model folders, plus the in-process
// evaluation of the same model and data that the CLI's reports must reproduce:
//   model:     random weights (teacher-forced tests; its greedy answers hardly ever contain [SEG]);
//   seg_model: answers "[SEG][SEG]..." to every question (generate tests: matched, missing and extra masks).
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/synth.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/infer/model_export.h"
#include "models/m2sa/m2sa_test_util.h"
#include "test_util.h"

namespace m2sa::test {

struct EvalCliWorld {
  TempDir dir{"m2sa_eval_cli"};
  std::filesystem::path dataset_dir, model_dir, seg_model_dir;
  m2sa_model::M2SAForCausalLM model{nullptr}, seg_model{nullptr};
  Tokenizer tokenizer = Tokenizer::load(repo_root() / "configs" / "tokenizer" / "tokenizer.model");

  // val_images / test_images: items of `val` and of each test split.
  EvalCliWorld(int val_images, int test_images) {
    dataset_dir = dir / "dataset";
    model_dir = dir / "model";
    seg_model_dir = dir / "seg_model";
    data::SynthOptions o;
    o.seed = 5;
    o.train_images = 0;
    o.val_images = val_images;
    o.test_images = test_images;
    o.min_size = 64;
    o.max_size = 112;
    data::write_synthetic_dataset(dataset_dir, o);
    model = tiny_model(11);
    infer::ExportOptions eo;
    eo.dtype = c10::kFloat;  // lossless: the CLI's model equals `model` bit for bit
    infer::export_model(*model, tokenizer, model_dir, eo);
    seg_model = always_seg_model();
    infer::export_model(*seg_model, tokenizer, seg_model_dir, eo);
  }

  static m2sa_model::M2SAForCausalLM always_seg_model() { return test::always_seg_model(13); }

  // What eval::evaluate gives in process (one process, batch 1 — the totals do not depend on either).
  // Generate mode uses seg_model, teacher-forced mode `model` (as the tests run the CLI).
  eval::SegMeter evaluate(const std::string& split, eval::EvalMode mode, int64_t max_new_tokens = 8,
                          int64_t limit = -1, eval::GenerationStats* stats = nullptr) const {
    const auto ds = data::make_eval_dataset(split, dataset_dir);
    eval::EvaluateOptions o;
    o.mode = mode;
    o.images_per_batch = 1;
    o.max_new_tokens = max_new_tokens;
    o.limit = limit;
    o.log_progress = false;
    o.generation_stats = stats;
    return eval::evaluate(mode == eval::EvalMode::kGenerate ? seg_model : model, tokenizer, *ds, o);
  }
};

inline json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  if (!in.good()) return json::object();
  return json::parse(in);
}

}  // namespace m2sa::test
