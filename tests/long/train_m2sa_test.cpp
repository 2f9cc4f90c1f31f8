// End-to-end M2SA training (CTest label `long`): the tiny model trained from scratch on the synthetic MMR-format data
// learns to segment (issue 8's learning test), 2 Gloo ranks equal 1 rank with the same global batch, and a run
// killed with SIGKILL then resumed ends with exactly the weights of an uninterrupted run.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "m2sa/core/json_reader.h"
#include "m2sa/core/runtime.h"
#include "m2sa/core/stop_request.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/synth.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/train/checkpoint.h"
#include "m2sa/train/m2sa_training.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

fs::path shipped_config() { return test::repo_root() / "configs" / "train" / "tiny-synth.json"; }

// ------------------------------------------------------------------------------------------------ learning

// The step budget of this test is the shipped config's (4 epochs x 100 steps of 4 images, lr 1e-3); it is checked
// here so that a change to the config is a deliberate change to this test.
TEST(TrainM2SALearning, TinyFromScratchLearnsSyntheticScenes) {
  init_runtime();  // the CLI's thread count, so that this run is the demo's run (same numbers)
  test::TempDir tmp("m2sa_learn");
  data::SynthOptions so;  // the default synthetic set, as the demo generates it
  data::write_synthetic_dataset(tmp / "dataset-synth", so);

  TrainingRunConfig config = TrainingRunConfig::read(shipped_config());
  ASSERT_EQ(config.train.total_steps(), 400);
  ASSERT_EQ(config.images_per_micro_batch, 4);
  ASSERT_EQ(config.train.grad_accumulation_steps, 1);
  ASSERT_EQ(config.train_mode, m2sa_model::TrainMode::kFull);
  config.data.dataset_dir = tmp / "dataset-synth";
  config.run_dir = tmp / "run";
  config.validation.limit = -1;  // the whole val split
  config.validate("learning test config");

  const auto val = data::make_eval_dataset("val", config.data.dataset_dir);
  eval::EvaluateOptions tf;
  tf.images_per_batch = 8;
  tf.log_progress = false;

  // The untrained model's score (same initialisation as the run).
  double untrained_giou = 0, untrained_ciou = 0;
  {
    TrainingModel tm = build_training_model(config, c10::Device(c10::kCPU), at::kFloat);
    tm.model->eval();
    const eval::SegMeter m = eval::evaluate(tm.model, tm.tokenizer, *val, tf);
    untrained_giou = m.giou();
    untrained_ciou = m.ciou();
  }

  const auto t0 = Clock::now();
  const TrainingRunResult r = run_training(config);
  const double train_s = seconds_since(t0);
  ASSERT_EQ(r.summary.end_step, 400);
  ASSERT_FALSE(r.model_dir.empty());
  // What a person looks at: TensorBoard (every scalar of metrics.jsonl once, previews at each validation), the
  // previews of the last validation as files, and the report.
  const test::CliResult tb = test::run_python({(test::repo_root() / "tests" / "tools" / "check_tensorboard.py").string(),
                                               config.run_dir.string(), "--min-images", "4"});
  EXPECT_EQ(tb.exit_code, 0) << tb.output;
  std::printf("tensorboard: %s", tb.output.c_str());
  const json previews = read_json_file(config.run_dir / "previews" / CheckpointManager::dir_name(400) / "previews.json");
  ASSERT_EQ(previews.size(), 4u);
  for (const json& p : previews) {
    const at::Tensor img = read_image_rgb(config.run_dir / "previews" / CheckpointManager::dir_name(400) /
                                          p.at("file").get<std::string>());
    EXPECT_GT(img.size(1), img.size(0)) << "GT | prediction side by side";
    EXPECT_FALSE(p.at("question").get<std::string>().empty());
  }
  EXPECT_EQ(r.report, config.run_dir / "report.html");
  EXPECT_GT(fs::file_size(r.report), 10000u);

  // The exported model (the best checkpoint) scores what the validation said, teacher-forced.
  infer::ModelSource src;
  src.model_dir = r.model_dir;
  const infer::LoadedModel loaded = infer::load_model(src);
  const eval::SegMeter trained = eval::evaluate(loaded.model, loaded.tokenizer, *val, tf);
  ASSERT_TRUE(r.summary.best.has_value());
  EXPECT_NEAR(trained.giou(), r.summary.best->value, 1e-6);

  // Generation: the model writes the answers itself; count how often it emits the right number of [SEG].
  eval::EvaluateOptions gen = tf;
  gen.mode = eval::EvalMode::kGenerate;
  gen.max_new_tokens = 96;
  const eval::SegMeter generated = eval::evaluate(loaded.model, loaded.tokenizer, *val, gen);
  const auto& s = generated.sums();
  const double questions = s[eval::MetricSums::kImagesSeen];
  const double exact = s[eval::MetricSums::kCountExact];

  std::printf("learning test: %d steps of %lld images in %.0f s; val (%lld items) teacher-forced gIoU %.4f cIoU %.4f "
              "(untrained: gIoU %.4f cIoU %.4f); generate: right [SEG] count on %.0f of %.0f questions (%.1f%%), "
              "gIoU %.4f cIoU %.4f\n",
              static_cast<int>(r.summary.end_step), static_cast<long long>(config.images_per_micro_batch), train_s,
              static_cast<long long>(val->size()), trained.giou(), trained.ciou(), untrained_giou, untrained_ciou,
              exact, questions, 100.0 * exact / std::max(1.0, questions), generated.giou(), generated.ciou());
  EXPECT_GE(trained.giou(), 0.40);
  EXPECT_LT(untrained_giou, 0.2);
  EXPECT_GT(exact, 0.5 * questions);
}

// ------------------------------------------------------------------------------------------------ CLI runs

struct SmallRun {
  fs::path dir;
  fs::path config;
};

// A small config for the multi-process and resume tests: few tiny images, 2 images per micro-batch, checkpoints
// every step, no validation and no export (they are not what these tests check).
fs::path write_small_config(const fs::path& dir, const fs::path& dataset, const std::string& name, int64_t steps,
                            int64_t gas, int64_t checkpoint_every) {
  json c = read_json_file(shipped_config());
  c["model"] = (test::repo_root() / "configs" / "tiny.json").string();
  c["tokenizer"] = (test::repo_root() / "configs" / "tokenizer").string();
  c["images_per_micro_batch"] = 2;
  c["data"]["dataset_dir"] = dataset.string();
  c["train"]["epochs"] = 1;
  c["train"]["steps_per_epoch"] = steps;
  c["train"]["grad_accumulation_steps"] = gas;
  c["train"]["warmup_num_steps"] = 2;
  c["train"]["checkpoint_every"] = checkpoint_every;
  c["train"]["keep_last_checkpoints"] = 100;
  c["validation"] = json{{"split", "none"}};
  c["export"] = "none";
  c["run_dir"] = (dir / name).string();
  const fs::path file = dir / (name + ".json");
  write_json_file(file, c);
  return file;
}

fs::path small_dataset(const test::TempDir& tmp) {
  data::SynthOptions so;
  so.train_images = 24;
  so.val_images = 2;
  so.test_images = 1;
  so.min_size = 96;
  so.max_size = 160;
  data::write_synthetic_dataset(tmp / "data", so);
  return tmp / "data";
}

std::map<std::string, at::Tensor> final_weights(const fs::path& run_dir) {
  CheckpointOptions co;
  co.dir = run_dir / "checkpoints";
  CheckpointManager cm(co);
  const auto latest = cm.latest();
  EXPECT_TRUE(latest.has_value()) << run_dir;
  std::map<std::string, at::Tensor> out;
  if (!latest) return out;
  const SafetensorsReader reader(*latest / "trainable.safetensors");
  for (const auto& info : reader.tensors()) out.emplace(info.name, reader.load(info.name).clone());
  return out;
}

double max_abs_diff(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    worst = std::max(worst, (t - it->second).abs().max().item<double>());
  }
  return worst;
}

const std::string kThreads = "M2SA_NUM_THREADS=1 OMP_NUM_THREADS=1";

TEST(TrainM2SADist, TwoGlooRanksEqualOneRankWithTheSameGlobalBatch) {
  test::TempDir tmp("m2sa_train_dist");
  const fs::path data = small_dataset(tmp);
  // 1 rank x 2 micro-batches == 2 ranks x 1 micro-batch: the same 4 images per optimizer step.
  const fs::path one = write_small_config(tmp.path(), data, "one", 4, 2, 0);
  const fs::path two = write_small_config(tmp.path(), data, "two", 4, 1, 0);
  const auto r1 = test::run_cli({"train", "--config", one.string()}, kThreads);
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  const auto t0 = Clock::now();
  const auto r2 = test::run_cli({"train", "--config", two.string(), "--nproc", "2"}, kThreads);
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto w1 = final_weights(tmp / "one");
  const double diff = max_abs_diff(w1, final_weights(tmp / "two"));
  // The steps did move the weights (else the comparison says nothing).
  const TrainingModel init = build_training_model(TrainingRunConfig::read(one), c10::Device(c10::kCPU), at::kFloat);
  std::map<std::string, at::Tensor> w0;
  for (const auto& p : init.model->named_parameters()) w0.emplace(p.key(), p.value());
  EXPECT_GT(max_abs_diff(w0, w1), 1e-4);
  std::printf("2 Gloo ranks vs 1 rank after 4 AdamW steps (lr 1e-3): max |w2 - w1| = %.3g (2-rank run %.1f s)\n", diff,
              seconds_since(t0));
  // The fp32 gradient sums are associated differently (per rank, then all-reduced): not bitwise, but AdamW
  // normalises the update, so the weights agree to a few ulps of the lr scale.
  EXPECT_LT(diff, 1e-5);
}

// --skip-bad covers the validation split too (issue 16): a val item whose image is missing stops the run without it
// and is left out (and counted in the validation line of metrics.jsonl) with it.
TEST(TrainM2SAValidation, SkipBadCoversTheValidationSplit) {
  test::TempDir tmp("m2sa_train_val_skip");
  const fs::path data = small_dataset(tmp);
  const json val = read_json_file(data / "MMR" / "MMR_val.json");
  ASSERT_EQ(val.size(), 2u);
  fs::remove(data / "refer_seg" / "images" / "mscoco" / "images" / val[0].at("file_name").get<std::string>());
  const fs::path file = write_small_config(tmp.path(), data, "run", 1, 1, 0);
  json c = read_json_file(file);
  c["validation"] = json{{"split", "val"}, {"previews", 0}};
  write_json_file(file, c);
  const auto stopped = test::run_cli({"train", "--config", file.string()}, kThreads);
  EXPECT_NE(stopped.exit_code, 0) << stopped.output;
  EXPECT_NE(stopped.output.find(val[0].at("file_name").get<std::string>()), std::string::npos) << stopped.output;
  const auto skipped = test::run_cli({"train", "--config", file.string(), "--skip-bad"}, kThreads);
  ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
  std::ifstream in(tmp / "run" / "metrics.jsonl");
  std::string line;
  int validations = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    if (!j.contains("giou")) continue;
    ++validations;
    EXPECT_EQ(j.value("skipped_items", 0.0), 1.0) << line;
  }
  EXPECT_EQ(validations, 1);
}

// Starts `m2sa train` in the background; returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("M2SA_NUM_THREADS", "1", 1);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    std::FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(::fileno(stdout), 2);
    std::vector<char*> argv;
    std::string cli = M2SA_CLI_PATH;
    argv.push_back(cli.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(cli.c_str(), argv.data());
    std::_Exit(127);
  }
  return pid;
}

// The highest step in <run_dir>/metrics.jsonl (0 while there is none): the trigger of the signal tests, so that they
// wait for the run's own progress, not for a wall-clock delay.
int64_t logged_step(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  int64_t step = 0;
  for (std::string line; std::getline(in, line);) {
    try {
      step = std::max(step, json::parse(line).value("step", int64_t{0}));
    } catch (const std::exception&) {
    }
  }
  return step;
}

bool wait_for_step(const fs::path& run_dir, int64_t step, pid_t pid) {
  const auto t0 = Clock::now();
  while (logged_step(run_dir) < step && seconds_since(t0) < 300) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return logged_step(run_dir) >= step;
}

TEST(TrainM2SAResume, SigkillMidRunThenResumeEndsWithIdenticalWeights) {
  test::TempDir tmp("m2sa_train_resume");
  const fs::path data = small_dataset(tmp);
  const fs::path ref = write_small_config(tmp.path(), data, "ref", 6, 1, 1);
  const auto r = test::run_cli({"train", "--config", ref.string()}, kThreads);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto reference = final_weights(tmp / "ref");

  const fs::path run = write_small_config(tmp.path(), data, "killed", 6, 1, 1);
  const pid_t pid = spawn_cli({"train", "--config", run.string()}, tmp / "killed.log");
  // Kill as soon as step 4 is logged: during the checkpoint write of step 4 or early in step 5 (the run's own
  // progress is the trigger, not a delay).
  ASSERT_TRUE(wait_for_step(tmp / "killed", 4, pid)) << test::read_bytes(tmp / "killed.log");
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before the kill: " << test::read_bytes(tmp / "killed.log");

  // Every step directory on disk is complete.
  CheckpointOptions co;
  co.dir = tmp / "killed" / "checkpoints";
  CheckpointManager cm(co);
  const auto steps = cm.step_dirs();
  ASSERT_FALSE(steps.empty());
  for (const auto& d : steps) {
    for (const char* f : {"trainable.safetensors", "optimizer.safetensors", "state.json"})
      EXPECT_TRUE(fs::exists(d / f)) << d / f;
    EXPECT_NO_THROW(SafetensorsReader(d / "trainable.safetensors")) << d;
  }
  const auto resumed = test::run_cli({"train", "--config", run.string(), "--resume"}, kThreads);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resum"), std::string::npos) << resumed.output;
  EXPECT_EQ(max_abs_diff(reference, final_weights(tmp / "killed")), 0.0);
  // The steps logged before the kill and replayed after the resume appear once in TensorBoard.
  const test::CliResult tb = test::run_python(
      {(test::repo_root() / "tests" / "tools" / "check_tensorboard.py").string(), (tmp / "killed").string()});
  EXPECT_EQ(tb.exit_code, 0) << tb.output;
}


// ------------------------------------------------------------------------------------------------ stop and full disk

// The ranks the local launcher started (its children).
std::vector<pid_t> child_pids(pid_t pid) {
  std::vector<pid_t> out;
  const auto t0 = Clock::now();
  while (out.size() < 2 && seconds_since(t0) < 60) {
    out.clear();
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    for (pid_t c; in >> c;) out.push_back(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return out;
}

std::vector<std::string> leftovers(const fs::path& checkpoints) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(checkpoints))
    if (e.path().filename().string().rfind(".tmp", 0) == 0) out.push_back(e.path().filename().string());
  return out;
}

// SIGTERM to one rank: every rank finishes the step, the checkpoint of that step is written, the job exits 75, and
// --resume ends with the weights of an uninterrupted run.
void sigterm_then_resume(int nproc) {
  test::TempDir tmp("m2sa_train_stop");
  const fs::path data = small_dataset(tmp);
  const std::vector<std::string> procs = {"--nproc", std::to_string(nproc)};
  const fs::path ref = write_small_config(tmp.path(), data, "ref", 8, 1, 100);
  std::vector<std::string> args = {"train", "--config", ref.string()};
  args.insert(args.end(), procs.begin(), procs.end());
  const auto r = test::run_cli(args, kThreads);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const fs::path run = write_small_config(tmp.path(), data, "stopped", 8, 1, 100);
  args = {"train", "--config", run.string()};
  args.insert(args.end(), procs.begin(), procs.end());
  const pid_t pid = spawn_cli(args, tmp / "stopped.log");
  ASSERT_TRUE(wait_for_step(tmp / "stopped", 2, pid)) << test::read_bytes(tmp / "stopped.log");
  pid_t target = pid;
  if (nproc > 1) {
    const std::vector<pid_t> ranks = child_pids(pid);
    ASSERT_EQ(ranks.size(), static_cast<size_t>(nproc)) << "the launcher's ranks";
    target = ranks.back();  // one rank only, not rank 0 (which writes the checkpoint)
  }
  ::kill(target, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string log = test::read_bytes(tmp / "stopped.log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_EQ(WEXITSTATUS(status), kExitStopped) << log;
  EXPECT_NE(log.find("stopped on request after step"), std::string::npos) << log;
  CheckpointOptions co;
  co.dir = tmp / "stopped" / "checkpoints";
  CheckpointManager cm(co);
  ASSERT_TRUE(cm.latest().has_value()) << log;
  const int64_t stopped_at = std::stoll(cm.latest()->filename().string().substr(5));
  EXPECT_GE(stopped_at, 2);
  EXPECT_LT(stopped_at, 8);
  EXPECT_EQ(cm.step_dirs().size(), 1u) << "checkpoint_every 100: only the stop wrote one";
  std::printf("SIGTERM to rank %d of %d: stopped after step %lld, exit status %d\n", nproc - 1, nproc,
              static_cast<long long>(stopped_at), WEXITSTATUS(status));

  args.push_back("--resume");
  const auto resumed = test::run_cli(args, kThreads);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(max_abs_diff(final_weights(tmp / "ref"), final_weights(tmp / "stopped")), 0.0);
  const test::CliResult tb = test::run_python(
      {(test::repo_root() / "tests" / "tools" / "check_tensorboard.py").string(), (tmp / "stopped").string()});
  EXPECT_EQ(tb.exit_code, 0) << tb.output;
}

TEST(TrainM2SAStop, SigtermStopsAtAStepBoundaryAndResumesBitExactly) { sigterm_then_resume(1); }

TEST(TrainM2SAStop, SigtermToOneOfTwoGlooRanksStopsBothAndResumesBitExactly) { sigterm_then_resume(2); }

// A second signal ends the job at once; the last complete checkpoint is still whole and resumable. Then a resume
// under a file size limit (a full disk for the checkpoint) fails naming the file, leaves no partial checkpoint and
// keeps `latest`; the next resume finishes with the uninterrupted run's weights.
TEST(TrainM2SAStop, SecondSignalEndsAtOnceAndAFullDiskKeepsTheLastCheckpoint) {
  test::TempDir tmp("m2sa_train_stop2");
  const fs::path data = small_dataset(tmp);
  const fs::path ref = write_small_config(tmp.path(), data, "ref", 8, 1, 1);
  const auto r = test::run_cli({"train", "--config", ref.string()}, kThreads);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const fs::path run = write_small_config(tmp.path(), data, "run", 8, 1, 1);
  const pid_t pid = spawn_cli({"train", "--config", run.string()}, tmp / "run.log");
  ASSERT_TRUE(wait_for_step(tmp / "run", 3, pid)) << test::read_bytes(tmp / "run.log");
  ::kill(pid, SIGTERM);
  // The handler has run once the stop message is in the log; the second signal then takes the default action.
  const auto t0 = Clock::now();
  while (test::read_bytes(tmp / "run.log").find("stop requested") == std::string::npos && seconds_since(t0) < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << test::read_bytes(tmp / "run.log");

  const fs::path checkpoints = tmp / "run" / "checkpoints";
  CheckpointOptions co;
  co.dir = checkpoints;
  CheckpointManager cm(co);
  ASSERT_TRUE(cm.latest().has_value());
  const fs::path latest = *cm.latest();
  EXPECT_NO_THROW(SafetensorsReader(latest / "trainable.safetensors")) << latest;

  // A full disk for the next checkpoint: files may not grow past half of trainable.safetensors.
  const auto limit_kb = fs::file_size(latest / "trainable.safetensors") / 2048;
  const auto full = test::run_cli({"train", "--config", run.string(), "--resume"},
                                  kThreads + "; ulimit -f " + std::to_string(limit_kb) + ";");
  EXPECT_NE(full.exit_code, 0) << full.output;
  EXPECT_NE(full.output.find("trainable.safetensors: write failed: File too large"), std::string::npos) << full.output;
  EXPECT_EQ(*CheckpointManager(co).latest(), latest) << "latest must still name the last complete checkpoint";
  EXPECT_TRUE(leftovers(checkpoints).empty()) << "partial checkpoint left: " << leftovers(checkpoints).front();

  const auto resumed = test::run_cli({"train", "--config", run.string(), "--resume"}, kThreads);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + latest.string()), std::string::npos) << resumed.output;
  EXPECT_EQ(max_abs_diff(final_weights(tmp / "ref"), final_weights(tmp / "run")), 0.0);
}

}  // namespace
}  // namespace m2sa::train
