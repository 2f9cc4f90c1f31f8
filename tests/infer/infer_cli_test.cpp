// `m2sa infer` end to end through the CLI, on a tiny model exported by infer::export_model (as the trainer / `m2sa
// export` write it) whose lm_head is refitted to answer two known (image, question) pairs: one answer with two
// [SEG]s, one without.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "infer/infer_test_util.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/mask_image.h"
#include "test_util.h"

namespace m2sa {
namespace {

namespace fs = std::filesystem;

const std::string kQuestionA = "Which parts of the chair hold a person up? Please output segmentation mask.";
const std::string kAnswerA = "Sure, the chair's leg [SEG] and the seat [SEG].";
const std::string kQuestionB = "Where is the chair?";
const std::string kAnswerB = "There is no chair here.";

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// M2SA_TEST_SHOW_CLI=1 prints what the CLI printed (to read the messages users get).
void show(const test::CliResult& r) {
  if (std::getenv("M2SA_TEST_SHOW_CLI")) std::cout << "---- exit " << r.exit_code << "\n" << r.output << "----\n";
}

class InferCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<test::TempDir>("m2sa_infer_cli");
    infer::Predictor p(test::tiny_model(31), test::tiny_tokenizer());
    image_a_ = test::random_rgb(72, 100, 11);
    const at::Tensor b = test::random_rgb(90, 60, 12);
    write_image(*tmp_ / "a.png", image_a_);
    write_image(*tmp_ / "b.png", b);
    // PNG is lossless: the CLI reads exactly these pixels.
    ASSERT_TRUE(read_image_rgb(*tmp_ / "a.png").equal(image_a_));
    test::force(p, {{image_a_, kQuestionA, kAnswerA}, {b, kQuestionB, kAnswerB}});
    infer::PredictOptions po;
    po.max_new_tokens = 30;
    expected_a_ = std::make_unique<infer::Prediction>(p.predict(image_a_, kQuestionA, po));
    ASSERT_EQ(expected_a_->targets.size(), 2u);
    infer::ExportOptions eo;
    eo.dtype = at::kFloat;
    infer::export_model(*p.model(), p.tokenizer(), model_dir(), eo);
  }
  static void TearDownTestSuite() {
    expected_a_.reset();
    tmp_.reset();
  }
  static fs::path model_dir() { return *tmp_ / "model"; }
  static fs::path path(const std::string& name) { return *tmp_ / name; }

  static std::unique_ptr<test::TempDir> tmp_;
  static at::Tensor image_a_;
  static std::unique_ptr<infer::Prediction> expected_a_;
};

std::unique_ptr<test::TempDir> InferCli::tmp_;
at::Tensor InferCli::image_a_;
std::unique_ptr<infer::Prediction> InferCli::expected_a_;

// Checks result.json of a two-target answer against its files and the in-process prediction.
void check_two_target_result(const fs::path& dir, const infer::Prediction& expected) {
  const json j = read_json_file(dir / "result.json");
  EXPECT_EQ(j.at("answer"), expected.answer);
  ASSERT_EQ(j.at("targets").size(), 2u) << j.dump();
  EXPECT_EQ(j.at("overlay_file"), "overlay.png");
  EXPECT_TRUE(fs::exists(dir / "overlay.png"));
  for (std::size_t k = 0; k < 2; ++k) {
    const json& t = j.at("targets")[k];
    EXPECT_EQ(t.at("phrase"), expected.targets[k].phrase);
    const at::Tensor png = vision::mask_from_png(read_image_rgb(dir / t.at("mask_file").get<std::string>()));
    const at::Tensor rle = coco::ann_to_mask(t.at("segmentation"), expected.height, expected.width, "result.json")
                               .to(at::kBool);
    EXPECT_TRUE(png.equal(rle)) << "target " << k << ": the PNG and the RLE must be the same mask";
    EXPECT_EQ(t.at("area").get<int64_t>(), png.sum().item<int64_t>());
    // Same model, same pixels, another process: the same mask up to threshold flips of float noise.
    const int64_t differ = png.ne(expected.targets[k].mask).sum().item<int64_t>();
    EXPECT_LE(differ, png.numel() / 200) << "target " << k << ": " << differ << " pixels differ from in-process";
  }
}

TEST_F(InferCli, SingleImageWritesMasksOverlayAndJson) {
  const fs::path out = path("out_single");
  const auto r = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp32", "--max-new-tokens",
                                "30", path("a.png").string(), kQuestionA, "--out", out.string()});
  show(r);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "answer: " + expected_a_->answer)) << r.output;
  EXPECT_TRUE(contains(r.output, "targets: 2")) << r.output;
  EXPECT_TRUE(contains(r.output, "\"the chair's leg\"")) << r.output;
  EXPECT_TRUE(contains(r.output, "timing: load")) << r.output;
  EXPECT_TRUE(contains(r.output, "mask decoding")) << r.output;
  EXPECT_TRUE(fs::exists(out / "mask_00_the-chair-s-leg.png"));
  EXPECT_TRUE(fs::exists(out / "mask_01_the-seat.png"));
  check_two_target_result(out, *expected_a_);
  const json j = read_json_file(out / "result.json");
  EXPECT_EQ(j.at("precision"), "fp32");
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_EQ(j.at("finish_reason"), "eos");
  EXPECT_EQ(j.at("image"), path("a.png").string());
}

TEST_F(InferCli, DemoCommandWithDefaults) {
  // The demo's call: defaults everywhere (bf16 on the CPU, 512 new tokens at most). The bf16 model need not write
  // the fp32-forced answer; it must answer and write its outputs (exit 0, or 3 for an answer without [SEG]).
  const fs::path out = path("out_demo");
  const auto r = test::run_cli({"infer", "--model", model_dir().string(), path("a.png").string(), kQuestionA, "--out",
                                out.string()});
  show(r);
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.output;
  EXPECT_TRUE(contains(r.output, "answer: ")) << r.output;
  const json j = read_json_file(out / "result.json");
  EXPECT_EQ(j.at("precision"), "bf16");
  EXPECT_EQ(j.at("targets").size(), j.at("num_targets").get<std::size_t>());
  EXPECT_EQ(r.exit_code == 0, j.at("num_targets").get<int64_t>() > 0) << r.output;
}

TEST_F(InferCli, AnswerWithoutSegExitsThree) {
  const fs::path out = path("out_noseg");
  const auto r = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp32", path("b.png").string(),
                                kQuestionB, "--out", out.string(), "--max-new-tokens", "20"});
  show(r);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "answer: There is no chair here.")) << r.output;
  EXPECT_TRUE(contains(r.output, "no [SEG]")) << r.output;
  const json j = read_json_file(out / "result.json");
  EXPECT_EQ(j.at("num_targets"), 0);
  EXPECT_TRUE(fs::exists(out / "overlay.png"));
  const auto ok = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp32", path("b.png").string(),
                                 kQuestionB, "--max-new-tokens", "20", "--allow-no-seg"});
  show(ok);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST_F(InferCli, BadInputGivesClearErrors) {
  // Error paths only: skip the CLI's malloc re-exec (half of its start-up time).
  const std::string kNoReexec = "M2SA_NO_REEXEC=1";
  // Missing and unreadable images (checked before the model loads).
  const auto missing = test::run_cli({"infer", "--model", model_dir().string(), path("nope.png").string(), "q"}, kNoReexec);
  show(missing);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, path("nope.png").string())) << missing.output;
  test::write_bytes(path("garbage.png"), "this is not a PNG at all");
  const auto garbage = test::run_cli({"infer", "--model", model_dir().string(), path("garbage.png").string(), "q"}, kNoReexec);
  show(garbage);
  EXPECT_EQ(garbage.exit_code, 1) << garbage.output;
  EXPECT_TRUE(contains(garbage.output, path("garbage.png").string())) << garbage.output;
  // A model folder that does not exist.
  const auto nomodel = test::run_cli({"infer", "--model", path("no_model").string(), path("a.png").string(), "q"}, kNoReexec);
  show(nomodel);
  EXPECT_EQ(nomodel.exit_code, 1) << nomodel.output;
  EXPECT_TRUE(contains(nomodel.output, path("no_model").string())) << nomodel.output;
  // Options.
  const auto fp16 = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp16",
                                   path("a.png").string(), "q"}, kNoReexec);
  show(fp16);
  EXPECT_EQ(fp16.exit_code, 1) << fp16.output;
  EXPECT_TRUE(contains(fp16.output, "fp16 needs --device cuda")) << fp16.output;
  const auto prec = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp8",
                                   path("a.png").string(), "q"}, kNoReexec);
  show(prec);
  EXPECT_EQ(prec.exit_code, 1) << prec.output;
  EXPECT_TRUE(contains(prec.output, "fp8")) << prec.output;
  const auto dev = test::run_cli({"infer", "--model", model_dir().string(), "--device", "tpu", path("a.png").string(),
                                  "q"}, kNoReexec);
  show(dev);
  EXPECT_EQ(dev.exit_code, 1) << dev.output;
  EXPECT_TRUE(contains(dev.output, "device \"tpu\" is not supported")) << dev.output;
  if (!at::hasCUDA()) {
    const auto cuda = test::run_cli({"infer", "--model", model_dir().string(), "--device", "cuda",
                                     path("a.png").string(), "q"}, kNoReexec);
    show(cuda);
    EXPECT_EQ(cuda.exit_code, 1) << cuda.output;
    EXPECT_TRUE(contains(cuda.output, "CUDA is not available")) << cuda.output;
  }
  const auto noq = test::run_cli({"infer", "--model", model_dir().string(), path("a.png").string()}, kNoReexec);
  show(noq);
  EXPECT_EQ(noq.exit_code, 1) << noq.output;
  EXPECT_TRUE(contains(noq.output, "QUESTION")) << noq.output;
}

TEST_F(InferCli, MismatchedCheckpointIsRefused) {
  // A model folder whose weights do not fit its config: the LLaMA MLP width in m2sa_config.json is changed.
  const fs::path bad = path("model_bad");
  fs::copy(model_dir(), bad, fs::copy_options::recursive);
  json cfg = read_json_file(bad / "m2sa_config.json");
  cfg.at("llama").at("intermediate_size") = 512;
  test::write_bytes(bad / "m2sa_config.json", cfg.dump(2));
  const auto r = test::run_cli({"infer", "--model", bad.string(), "--precision", "fp32", path("a.png").string(),
                                kQuestionA});
  show(r);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, bad.string())) << r.output;
  EXPECT_TRUE(contains(r.output, "mlp")) << r.output;
  EXPECT_TRUE(contains(r.output, "512")) << r.output;
  fs::remove_all(bad);
}

TEST_F(InferCli, BatchReportsBadLinesAndProcessesTheRest) {
  const fs::path jsonl = path("batch.jsonl");
  json l1{{"image", "a.png"}, {"question", kQuestionA}, {"id", "first"}};
  json l4{{"image", path("b.png").string()}, {"question", kQuestionB}};
  json l5{{"image", "a.png"}, {"question", kQuestionA}};
  test::write_bytes(jsonl, l1.dump() + "\n" + "{\"image\": \"a.png\", \"question\": oops}\n" +
                               "{\"image\": \"missing.png\", \"question\": \"q\"}\n" + l4.dump() + "\n" + l5.dump() +
                               "\n");
  const fs::path out = path("out_batch");
  const auto r = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp32", "--max-new-tokens",
                                "30", "--batch", jsonl.string(), "--out", out.string(), "--batch-size", "3"});
  show(r);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, jsonl.string() + ":2: not valid JSON")) << r.output;
  EXPECT_TRUE(contains(r.output, jsonl.string() + ":3: ")) << r.output;
  EXPECT_TRUE(contains(r.output, "missing.png")) << r.output;
  EXPECT_TRUE(contains(r.output, "3 answered")) << r.output;
  EXPECT_TRUE(contains(r.output, "2 failed")) << r.output;
  // The good lines: the same results as one image at a time.
  check_two_target_result(out / "first", *expected_a_);
  check_two_target_result(out / "0005", *expected_a_);
  const json b = read_json_file(out / "0004" / "result.json");
  EXPECT_EQ(b.at("answer"), kAnswerB);
  EXPECT_EQ(b.at("line"), 4);
  EXPECT_EQ(read_json_file(out / "first" / "result.json").at("id"), "first");
  // results.jsonl: one line per input line, in order.
  std::istringstream in(test::read_bytes(out / "results.jsonl"));
  std::vector<json> lines;
  for (std::string s; std::getline(in, s);) lines.push_back(json::parse(s));
  ASSERT_EQ(lines.size(), 5u);
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(lines[static_cast<std::size_t>(k)].at("line"), k + 1);
  EXPECT_EQ(lines[0].at("targets").size(), 2u);
  EXPECT_EQ(lines[0].at("output_dir"), "first");
  EXPECT_TRUE(lines[1].contains("error"));
  EXPECT_TRUE(lines[2].contains("error"));
  EXPECT_FALSE(lines[3].contains("error"));
  EXPECT_EQ(lines[3].at("targets").size(), 0u);
  EXPECT_FALSE(fs::exists(out / "0002"));
  EXPECT_FALSE(fs::exists(out / "0003"));
  // --batch needs --out.
  const auto noout = test::run_cli({"infer", "--model", model_dir().string(), "--batch", jsonl.string()});
  show(noout);
  EXPECT_EQ(noout.exit_code, 1) << noout.output;
  EXPECT_TRUE(contains(noout.output, "--batch needs --out")) << noout.output;
}

TEST_F(InferCli, ChatReadsFollowUpsFromStdin) {
  test::write_bytes(path("followups.txt"), "And which part do you lean against?\n\n  \nWhat colour is it?\n");
  const fs::path out = path("out_chat");
  // The shell redirection comes first in the command line (run_cli puts `env` there).
  const auto r = test::run_cli({"infer", "--model", model_dir().string(), "--precision", "fp32", "--max-new-tokens",
                                "30", path("a.png").string(), kQuestionA, "--chat", "--out", out.string()},
                               "< '" + path("followups.txt").string() + "'");
  show(r);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "[round 1]")) << r.output;
  EXPECT_TRUE(contains(r.output, "[round 3]")) << r.output;
  EXPECT_FALSE(contains(r.output, "[round 4]")) << r.output;
  EXPECT_TRUE(contains(r.output, "chat ended after 3 round(s); the image went through CLIP 1 time(s)")) << r.output;
  EXPECT_TRUE(contains(r.output, "CLIP cached")) << r.output;
  check_two_target_result(out / "round_01", *expected_a_);
  const json conv = read_json_file(out / "conversation.json");
  ASSERT_EQ(conv.at("rounds").size(), 3u);
  EXPECT_EQ(conv.at("rounds")[1].at("question"), "And which part do you lean against?");
  EXPECT_EQ(read_json_file(out / "round_03" / "result.json").at("round"), 3);
}

}  // namespace
}  // namespace m2sa
