// `m2sa eval` end to end on a tiny exported model and a small synthetic dataset: the JSON reports hold what
// eval::evaluate gives in process for the same model and data (teacher-forced and generate, several splits in one
// call, defaults from a training config), and bad input is a clear error with a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "eval/eval_cli_world.h"
#include "m2sa/eval/preview.h"
#include "m2sa/eval/report.h"
#include "m2sa/io/tensorboard_events.h"
#include "m2sa/vision/image_io.h"

namespace m2sa::test {
namespace {
namespace fs = std::filesystem;

EvalCliWorld& world() {
  static EvalCliWorld w(/*val_images=*/5, /*test_images=*/3);
  return w;
}

// The CLI's report agrees with the in-process meter: scores exactly, every count, the category tables.
void expect_report_matches(const json& report, const eval::SegMeter& meter, const std::string& split,
                           const std::string& mode) {
  SCOPED_TRACE("split " + split + ", mode " + mode);
  EXPECT_EQ(report.at("split"), split);
  EXPECT_EQ(report.at("mode"), mode);
  EXPECT_EQ(report.at("world_size"), 1);
  EXPECT_EQ(report.at("giou").get<double>(), meter.sums().giou());
  EXPECT_EQ(report.at("ciou").get<double>(), meter.sums().ciou());
  eval::ReportInfo info;
  info.split = split;
  info.top_k = report.at("categories").at("top_k").get<size_t>();
  const json expected = eval::make_report(meter, info);
  EXPECT_EQ(report.at("counts"), expected.at("counts"));
  EXPECT_EQ(report.at("seg_count"), expected.at("seg_count"));
  EXPECT_EQ(report.at("categories"), expected.at("categories"));
  EXPECT_EQ(report.at("sums"), expected.at("sums"));
  EXPECT_GT(report.at("counts").at("masks_scored").get<int64_t>(), 0);
}

TEST(EvalCli, TeacherForcedValEqualsInProcessEvaluation) {
  EvalCliWorld& w = world();
  TempDir out("m2sa_eval_out");
  const fs::path file = out / "val.json";
  const CliResult r = run_cli({"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                               "--split", "val", "--batch", "2", "--top-k", "3", "--out", file.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = read_json(file);
  expect_report_matches(report, w.evaluate("val", eval::EvalMode::kTeacherForced), "val", "teacher-forced");
  EXPECT_EQ(report.at("counts").at("images_seen"), 5);
  EXPECT_EQ(report.at("model"), w.model_dir.string());
  EXPECT_EQ(report.at("extra").at("dataset_items"), 5);
  EXPECT_EQ(report.at("extra").at("images_per_batch"), 2);
  EXPECT_EQ(report.at("extra").at("precision"), "fp32");
  EXPECT_EQ(report.at("categories").at("top_k"), 3);
  const json& objects = report.at("categories").at("objects");
  EXPECT_GT(objects.at("num_categories").get<int64_t>(), 0);
  EXPECT_LE(objects.at("most_frequent").size(), 3u);
  EXPECT_FALSE(objects.at("most_frequent").empty());
  // The table on stdout is the report's.
  EXPECT_NE(r.output.find(eval::format_report_table(report)), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("report: " + file.string()), std::string::npos) << r.output;
}

// --tensorboard: the split's scores at --tb-step and GT | prediction previews, which are the teacher-forced
// predictions of the evaluator (their IoUs give the single-item evaluation's gIoU).
TEST(EvalCli, TensorboardScalarsAndPreviews) {
  EvalCliWorld& w = world();
  TempDir out("m2sa_eval_tb");
  const CliResult r = run_cli({"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                               "--split", "val", "--out", (out / "val.json").string(), "--tensorboard",
                               (out / "tb").string(), "--tb-step", "7", "--previews", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = read_json(out / "val.json");
  const std::vector<fs::path> files = io::event_files(out / "tb");
  ASSERT_EQ(files.size(), 1u);
  std::map<std::string, float> scalars;
  std::vector<std::pair<std::string, std::string>> images;
  for (const std::string& rec : io::read_tfrecords(files[0]).records) {
    const io::DecodedEvent e = io::decode_event(rec, files[0].string());
    for (const auto& v : e.values) {
      EXPECT_EQ(e.step, 7);
      if (v.simple_value) scalars[v.tag] = *v.simple_value;
      if (v.image_png) images.emplace_back(v.tag, *v.image_png);
    }
  }
  EXPECT_EQ(scalars.at("eval/val/teacher-forced/giou"), static_cast<float>(report.at("giou").get<double>()));
  EXPECT_EQ(scalars.at("eval/val/teacher-forced/ciou"), static_cast<float>(report.at("ciou").get<double>()));
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[0].first, "eval_preview/val/item-0");
  const at::Tensor png = decode_image_rgb(images[0].second, "preview");
  EXPECT_GT(png.size(1), png.size(0));

  const auto ds = data::make_eval_dataset("val", w.dataset_dir);
  const std::vector<eval::Preview> previews = eval::render_previews(w.model, w.tokenizer, *ds, 2);
  ASSERT_EQ(previews.size(), 2u);
  EXPECT_TRUE(at::equal(previews[0].image, png));
  const eval::SegMeter one = w.evaluate("val", eval::EvalMode::kTeacherForced, 8, /*limit=*/1);
  const json& ious = previews[0].info.at("iou");
  double sum = 0;
  for (const json& v : ious) sum += v.get<double>();
  EXPECT_NEAR(one.giou(), sum / (static_cast<double>(ious.size()) + 1e-5), 1e-9);
  EXPECT_FALSE(previews[0].info.at("question").get<std::string>().empty());
}

// A full disk (here a 1 KiB file size limit) while writing the report: the error names the report and the cause,
// and neither the report nor a temp file is left behind.
TEST(EvalCli, FullDiskReportIsAClearErrorWithoutPartialFiles) {
  EvalCliWorld& w = world();
  TempDir out("m2sa_eval_full");
  const fs::path file = out / "val.json";
  const CliResult r = run_cli({"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                               "--split", "val", "--limit", "1", "--out", file.string()},
                              "ulimit -f 1;");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(file.string() + ": write failed: File too large"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_empty(out.path())) << "partial files left in " << out.path();
}

TEST(EvalCli, GenerateOnATestSplitEqualsInProcessEvaluation) {
  EvalCliWorld& w = world();
  TempDir out("m2sa_eval_out");
  const fs::path file = out / "obj.json";
  const CliResult r = run_cli({"eval", "--model", w.seg_model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                               "--split", "test/obj", "--mode", "generate", "--max-new-tokens", "6", "--batch", "3",
                               "--out", file.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  eval::GenerationStats stats;
  const eval::SegMeter meter = w.evaluate("test/obj", eval::EvalMode::kGenerate, 6, -1, &stats);
  const json report = read_json(file);
  expect_report_matches(report, meter, "test/obj", "generate");
  EXPECT_EQ(report.at("extra").at("max_new_tokens"), 6);
  EXPECT_EQ(report.at("extra").at("generation"), stats.to_json());
  // Every answer is six [SEG]s: masks are matched, and the extra predictions are counted.
  EXPECT_EQ(stats.predicted_masks, 6 * stats.questions);
  EXPECT_GT(report.at("counts").at("matched").get<int64_t>(), 0);
  EXPECT_GT(report.at("counts").at("extra_predictions").get<int64_t>(), 0);
  EXPECT_GT(report.at("giou").get<double>(), 0.0);
  EXPECT_EQ(report.at("model"), w.seg_model_dir.string());
  EXPECT_NE(r.output.find("answers: " + std::to_string(stats.questions) + " questions"), std::string::npos)
      << r.output;
}

TEST(EvalCli, SeveralSplitsInOneCall) {
  EvalCliWorld& w = world();
  // Repeated and comma-separated --split; no --out: <model>/eval/<split>_<mode>.json.
  fs::remove_all(w.model_dir / "eval");
  const CliResult r = run_cli({"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                               "--split", "val", "--split", "test/part,test/mixed", "--limit", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::pair<std::string, std::string>> files = {
      {"val", "val_teacher-forced.json"}, {"test/part", "test_part_teacher-forced.json"},
      {"test/mixed", "test_mixed_teacher-forced.json"}};
  std::vector<json> reports;
  for (const auto& [split, name] : files) {
    const json report = read_json(w.model_dir / "eval" / name);
    expect_report_matches(report, w.evaluate(split, eval::EvalMode::kTeacherForced, 8, 2), split, "teacher-forced");
    EXPECT_EQ(report.at("counts").at("images_seen"), 2);
    reports.push_back(report);
  }
  EXPECT_NE(r.output.find(eval::format_summary_table(reports)), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("loaded in"), r.output.rfind("loaded in")) << "one model load expected:\n" << r.output;
  fs::remove_all(w.model_dir / "eval");

  // --out DIR for several splits.
  TempDir out("m2sa_eval_out");
  const CliResult r2 = run_cli({"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(),
                                "--split", "val,test/obj", "--limit", "1", "--out", (out / "reports").string()});
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_TRUE(fs::is_regular_file(out / "reports" / "val_teacher-forced.json"));
  EXPECT_TRUE(fs::is_regular_file(out / "reports" / "test_obj_teacher-forced.json"));
}

TEST(EvalCli, TrainingConfigGivesModelAndDatasetDefaults) {
  EvalCliWorld& w = world();
  TempDir tmp("m2sa_eval_config");
  const fs::path run_dir = tmp / "run";
  const json config = {{"model", (repo_root() / "configs" / "tiny.json").string()},
                       {"init", {{"from", "scratch"}}},
                       {"tokenizer", (repo_root() / "configs" / "tokenizer").string()},
                       {"precision", "fp32"},
                       {"data",
                        {{"dataset_dir", w.dataset_dir.string()}, {"datasets", {"mmr"}}, {"sample_rates", {1}}}},
                       {"run_dir", run_dir.string()}};
  const fs::path config_file = tmp / "train.json";
  write_json_file(config_file, config);

  // The run has not exported its model yet.
  CliResult r = run_cli({"eval", "--config", config_file.string(), "--split", "val"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find((run_dir / "model").string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("<run_dir>/model"), std::string::npos) << r.output;

  fs::create_directories(run_dir);
  fs::copy(w.model_dir, run_dir / "model", fs::copy_options::recursive);
  r = run_cli({"eval", "--config", config_file.string(), "--split", "val", "--limit", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = read_json(run_dir / "model" / "eval" / "val_teacher-forced.json");
  expect_report_matches(report, w.evaluate("val", eval::EvalMode::kTeacherForced, 8, 3), "val", "teacher-forced");
  EXPECT_EQ(report.at("extra").at("config"), config_file.string());
  EXPECT_EQ(report.at("extra").at("dataset_dir"), w.dataset_dir.string());
}

TEST(EvalCli, BadInputIsAClearError) {
  EvalCliWorld& w = world();
  TempDir tmp("m2sa_eval_bad");
  const std::vector<std::string> base = {"eval", "--model", w.model_dir.string(), "--dataset-dir",
                                         w.dataset_dir.string(), "--out", (tmp / "r.json").string()};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  struct Case {
    std::string what;
    std::vector<std::string> args;
    std::vector<std::string> needles;  // each must appear in the output
  };
  const std::vector<Case> cases = {
      {"unknown split", with({"--split", "vall"}), {"unknown evaluation split \"vall\"", "test/obj", "reasonseg/val"}},
      {"unknown split among several", with({"--split", "val,test/objects"}), {"\"test/objects\"", "test/part"}},
      {"empty split name", with({"--split", "val,"}), {"--split", "empty split name"}},
      {"duplicate split", with({"--split", "val", "--split", "val"}), {"\"val\" is given more than once"}},
      {"no split", with({}), {"--split"}},
      {"missing model dir",
       {"eval", "--model", (tmp / "nope").string(), "--dataset-dir", w.dataset_dir.string(), "--split", "val"},
       {"--model", (tmp / "nope").string(), "no such directory"}},
      {"model dir without a model",
       {"eval", "--model", tmp.path().string(), "--dataset-dir", w.dataset_dir.string(), "--split", "val", "--out",
        (tmp / "r.json").string()},
       {tmp.path().string()}},
      {"missing dataset dir",
       {"eval", "--model", w.model_dir.string(), "--dataset-dir", (tmp / "nodata").string(), "--split", "val"},
       {"--dataset-dir", (tmp / "nodata").string(), "no such directory"}},
      {"dataset dir without the split's file",
       {"eval", "--model", w.model_dir.string(), "--dataset-dir", tmp.path().string(), "--split", "val"},
       {"evaluation split \"val\"", "MMR_val.json"}},
      {"no model and no config", {"eval", "--dataset-dir", w.dataset_dir.string(), "--split", "val"},
       {"no model", "--model DIR", "--config"}},
      {"no dataset dir and no config", {"eval", "--model", w.model_dir.string(), "--split", "val"},
       {"--dataset-dir"}},
      {"config of a nonexistent file", {"eval", "--config", (tmp / "missing.json").string(), "--split", "val"},
       {"--config", (tmp / "missing.json").string(), "no such file"}},
      {"batch 0", with({"--split", "val", "--batch", "0"}), {"--batch", ">= 1", "got 0"}},
      {"negative limit", with({"--split", "val", "--limit", "-2"}), {"--limit"}},
      {"max new tokens 0", with({"--split", "val", "--mode", "generate", "--max-new-tokens", "0"}),
       {"--max-new-tokens"}},
      {"unknown mode", with({"--split", "val", "--mode", "greedy"}), {"--mode", "teacher-forced", "generate"}},
      {"unknown precision", with({"--split", "val", "--precision", "fp8"}), {"--precision", "fp8"}},
      {"unknown device", with({"--split", "val", "--device", "tpu"}), {"--device", "tpu"}},
      {"nproc 0", with({"--split", "val", "--nproc", "0"}), {"--nproc"}},
      {"--out is a file with several splits",
       {"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(), "--split", "val,test/obj",
        "--out", (w.model_dir / "config.json").string()},
       {"--out", "directory"}},
      {"report folder that cannot be created",
       {"eval", "--model", w.model_dir.string(), "--dataset-dir", w.dataset_dir.string(), "--split", "val",
        "--out", (w.model_dir / "config.json" / "r.json").string()},
       {"report", "cannot create the folder", "--out"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // No malloc-tunables re-exec: these runs end before any large allocation (halves their start-up time).
    const CliResult r = run_cli(c.args, "M2SA_NO_REEXEC=1");
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_LT(r.exit_code, 128) << "crashed:\n" << r.output;
    for (const std::string& needle : c.needles) EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "r.json")) << "a failed run wrote a report";
  }
}

}  // namespace
}  // namespace m2sa::test
