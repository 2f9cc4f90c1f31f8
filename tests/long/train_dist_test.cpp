// Multi-process training tests (CTest label `long`): data parallel over Gloo equals one process, a dead or hung
// rank ends the others with a clear error, and SIGKILL + resume is bit-exact without half-written checkpoints.
// The ranks are this test binary re-executed by the local launcher with --gtest_filter=TrainDistWorker.Run and
// M2SA_TRAIN_WORKER set (the worker "test" is skipped in normal runs).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "m2sa/core/error.h"
#include "m2sa/dist/communicator.h"
#include "m2sa/dist/launcher.h"
#include "test_util.h"
#include "train/toy_task.h"

namespace m2sa::train {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------------ the worker

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}
int64_t env_int(const char* name, int64_t fallback) { return std::stoll(env_or(name, std::to_string(fallback))); }

int worker_main() {
  spdlog::set_level(spdlog::level::from_str(env_or("M2SA_LOG_LEVEL", "info")));
  const dist::DistEnv env = dist::DistEnv::from_environment();
  dist::CommOptions co;
  co.timeout_s = std::stod(env_or("M2SA_TOY_TIMEOUT_S", "60"));
  auto comm = dist::make_communicator(env, co);

  test::ToyOptions o;
  o.steps = env_int("M2SA_TOY_STEPS", 6);
  o.epochs = env_int("M2SA_TOY_EPOCHS", 1);
  o.grad_accumulation_steps = env_int("M2SA_TOY_GAS", 2);
  o.micro_batch = env_int("M2SA_TOY_MICRO", 2);
  o.dropout = std::stod(env_or("M2SA_TOY_DROPOUT", "0"));
  o.checkpoint_every = env_int("M2SA_TOY_CKPT_EVERY", 1);
  o.keep_last = static_cast<int>(env_int("M2SA_TOY_KEEP", 2));
  o.validate = env_int("M2SA_TOY_VALIDATE", 0) != 0;
  o.timeout_s = co.timeout_s;
  o.hidden = env_int("M2SA_TOY_HIDDEN", 64);

  // A SIGKILL at a random moment, as from outside: armed when this process completes its k-th step, it fires
  // d ms later (inside the next step's forward/backward/all-reduce or its checkpoint write).
  const int64_t kill_after_step = env_int("M2SA_TOY_KILL_AFTER_STEP", -1);
  const int64_t kill_after_ms = env_int("M2SA_TOY_KILL_AFTER_MS", 0);
  int64_t steps_here = 0;
  const std::string kill_stage = env_or("M2SA_TOY_KILL_STAGE", "");
  const int64_t kill_at = env_int("M2SA_TOY_KILL_AT_SAVE", 1);
  int64_t seen = 0;
  auto hook = [&](const std::string& stage) {
    if (stage == kill_stage && ++seen == kill_at) {
      std::printf("KILLED AT STAGE %s\n", stage.c_str());
      std::fflush(stdout);
      std::raise(SIGKILL);
    }
  };
  const int64_t die_rank = env_int("M2SA_TOY_DIE_RANK", -1), die_step = env_int("M2SA_TOY_DIE_STEP", -1);
  const int64_t hang_rank = env_int("M2SA_TOY_HANG_RANK", -1), hang_step = env_int("M2SA_TOY_HANG_STEP", -1);
  auto on_step = [&](const StepReport& r) {
    if (++steps_here == kill_after_step) {
      std::thread([kill_after_ms] {
        std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
        std::raise(SIGKILL);
      }).detach();
    }
    if (env.rank == die_rank && r.step == die_step) std::raise(SIGKILL);
    if (env.rank == hang_rank && r.step == hang_step) std::this_thread::sleep_for(std::chrono::seconds(600));
  };
  test::ToyRun run = test::run_toy(o, *comm, env_or("M2SA_TOY_DIR", ""), env_int("M2SA_TOY_RESUME", 0) != 0, hook,
                                   on_step);
  const std::string out = env_or("M2SA_TOY_OUT", "");
  if (comm->is_main() && !out.empty()) write_safetensors(out, run.masters);
  std::printf("WORKER DONE rank %d steps %lld..%lld\n", env.rank, static_cast<long long>(run.summary.start_step),
              static_cast<long long>(run.summary.end_step));
  return 0;
}

TEST(TrainDistWorker, Run) {
  if (!std::getenv("M2SA_TRAIN_WORKER")) GTEST_SKIP() << "helper process of the TrainDist tests";
  int code = 0;
  try {
    code = worker_main();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "WORKER ERROR: %s\n", e.what());
    code = 3;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);  // no gtest epilogue, no destructors that could wait on a dead peer
}

// ------------------------------------------------------------------------------------------------ the tests

struct Launch {
  int code = -1;
  double seconds = 0;
  std::vector<std::string> lines;  // "[rank r] ..."
  std::string text() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
  bool contains(const std::string& needle) const { return text().find(needle) != std::string::npos; }
  void print_errors() const {
    for (const auto& l : lines)
      if (l.find("ERROR") != std::string::npos) std::printf("  %s\n", l.c_str());
  }
};

Launch launch(int nproc, std::vector<std::pair<std::string, std::string>> env, bool stop_others = true) {
  dist::LaunchOptions o;
  o.args = {"--gtest_filter=TrainDistWorker.Run"};
  env.emplace_back("M2SA_TRAIN_WORKER", "1");
  env.emplace_back("M2SA_LOG_LEVEL", "warn");
  o.env = env;
  o.stop_others_on_failure = stop_others;
  o.kill_grace_s = 2;
  Launch out;
  std::mutex mu;
  o.on_line = [&](int rank, const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    out.lines.push_back("[rank " + std::to_string(rank) + "] " + line);
  };
  const auto t0 = Clock::now();
  out.code = dist::launch_local(nproc, o);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

NamedTensors load_all(const fs::path& p) {
  SafetensorsReader r(p);
  NamedTensors out;
  for (const auto& info : r.tensors()) out.emplace_back(info.name, r.load(info.name).clone());
  return out;
}

double max_diff(const NamedTensors& a, const NamedTensors& b, double* max_rel = nullptr) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0, rel = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    worst = std::max(worst, test::max_abs_diff(a[i].second, b[i].second));
    rel = std::max(rel, test::max_abs_diff(a[i].second, b[i].second) /
                            std::max(1e-30, b[i].second.abs().max().item<double>()));
  }
  if (max_rel) *max_rel = rel;
  return worst;
}

TEST(TrainDist, TwoGlooRanksMatchOneRankWithTheSameGlobalBatch) {
  test::TempDir tmp;
  // Global batch 8 images per step: 1 rank x 4 micro-batches x 2 images vs 2 ranks x 2 x 2.
  std::vector<std::pair<std::string, std::string>> common = {
      {"M2SA_TOY_STEPS", "8"}, {"M2SA_TOY_MICRO", "2"}, {"M2SA_TOY_CKPT_EVERY", "4"}, {"M2SA_TOY_VALIDATE", "1"}};
  auto one_env = common, two_env = common;
  one_env.insert(one_env.end(), {{"M2SA_TOY_GAS", "4"}, {"M2SA_TOY_DIR", (tmp / "one").string()},
                                 {"M2SA_TOY_OUT", (tmp / "one.safetensors").string()}});
  two_env.insert(two_env.end(), {{"M2SA_TOY_GAS", "2"}, {"M2SA_TOY_DIR", (tmp / "two").string()},
                                 {"M2SA_TOY_OUT", (tmp / "two.safetensors").string()}});
  Launch one = launch(1, one_env);
  ASSERT_EQ(one.code, 0) << one.text();
  Launch two = launch(2, two_env);
  ASSERT_EQ(two.code, 0) << two.text();
  EXPECT_TRUE(two.contains("[rank 1] WORKER DONE rank 1 steps 0..8")) << two.text();

  const NamedTensors a = load_all(tmp / "one.safetensors"), b = load_all(tmp / "two.safetensors");
  double rel = 0;
  const double diff = max_diff(a, b, &rel);
  // Not bitwise: the mean gradient is the same sum of the same 4 micro-batch gradients, but 1 rank adds them as
  // ((g0+g1)+g2)+g3 and 2 ranks as (g0+g1)+(g2+g3) (local accumulation, then the all-reduce), so fp32 rounding
  // differs in the last bits; Adam's normalisation carries that through 8 steps.
  std::printf("2 ranks vs 1 rank after 8 steps: max abs diff %.3g, max rel diff %.3g\n", diff, rel);
  RecordProperty("max_abs_diff", std::to_string(diff));
  EXPECT_LE(diff, 1e-5);
  // The weights did move (a vacuous comparison would also pass).
  test::ToyOptions o;
  test::ToyTask initial(o);
  double moved = 0;
  for (const auto& item : initial.net()->named_parameters())
    for (const auto& [name, t] : a)
      if (name == item.key()) moved = std::max(moved, test::max_abs_diff(t, item.value().detach()));
  EXPECT_GT(moved, 1e-3);
  // Only rank 0 writes: one metrics line per step plus the validation. The validation metrics, summed over the
  // two ranks' disjoint shards, equal the single rank's (up to a pixel flipped by the last-bit differences).
  auto read = [](const fs::path& p) {
    std::vector<json> out;
    std::ifstream in(p);
    for (std::string l; std::getline(in, l);) out.push_back(json::parse(l));
    return out;
  };
  const std::vector<json> m1 = read(tmp / "one" / "metrics.jsonl"), m2 = read(tmp / "two" / "metrics.jsonl");
  ASSERT_EQ(m2.size(), 9u);
  ASSERT_EQ(m1.size(), 9u);
  EXPECT_EQ(m2[8]["type"], "val");
  std::printf("validation giou 1 rank %.6f, 2 ranks %.6f\n", m1[8]["giou"].get<double>(), m2[8]["giou"].get<double>());
  EXPECT_NEAR(m1[8]["giou"].get<double>(), m2[8]["giou"].get<double>(), 1e-3);
  EXPECT_NEAR(m1[8]["ciou"].get<double>(), m2[8]["ciou"].get<double>(), 1e-3);
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(m1[i]["loss"].get<double>(), m2[i]["loss"].get<double>(), 1e-5) << i;
}

TEST(TrainDist, DeadRankEndsTheOtherRankWithAClearError) {
  test::TempDir tmp;
  // Rank 1 is SIGKILLed after step 3; rank 0 must notice on its own (the launcher does not stop it here).
  Launch r = launch(2,
                    {{"M2SA_TOY_STEPS", "50"}, {"M2SA_TOY_DIR", (tmp / "run").string()},
                     {"M2SA_TOY_DIE_RANK", "1"}, {"M2SA_TOY_DIE_STEP", "3"}, {"M2SA_TOY_TIMEOUT_S", "30"}},
                    /*stop_others=*/false);
  std::printf("dead rank: launcher returned %d after %.1f s\n", r.code, r.seconds);
  r.print_errors();
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(r.contains("[rank 0] WORKER ERROR: ")) << r.text();
  EXPECT_TRUE(r.contains("failed on rank 0 of 2 (gloo, timeout 30 s)")) << r.text();
  EXPECT_FALSE(r.contains("WORKER DONE")) << r.text();
  // Rank 0 fails on the closed connection, not by waiting out the timeout (told apart by the message, not a clock).
  EXPECT_FALSE(r.contains("timed out")) << r.text();
}

TEST(TrainDist, HungRankTimesOutEveryRank) {
  test::TempDir tmp;
  // Rank 1 hangs (alive, silent) after step 2: rank 0's next collective times out after 5 s.
  Launch r = launch(2, {{"M2SA_TOY_STEPS", "50"}, {"M2SA_TOY_DIR", (tmp / "run").string()},
                        {"M2SA_TOY_HANG_RANK", "1"}, {"M2SA_TOY_HANG_STEP", "2"}, {"M2SA_TOY_TIMEOUT_S", "5"}});
  std::printf("hung rank: launcher returned %d after %.1f s\n", r.code, r.seconds);
  r.print_errors();
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(r.contains("[rank 0] WORKER ERROR: ")) << r.text();
  EXPECT_TRUE(r.contains("failed on rank 0 of 2 (gloo, timeout 5 s): Operation timed out!")) << r.text();
}

// Every visible checkpoint directory is complete and loadable; `latest` names one of them.
void check_checkpoints(const fs::path& dir, const std::string& when) {
  if (!fs::exists(dir)) return;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' || name == "latest" || name == "best.json") continue;
    ASSERT_EQ(name.rfind("step-", 0), 0u) << when << ": unexpected entry " << name;
    try {
      LoadedCheckpoint ck = load_checkpoint(e.path());
      EXPECT_EQ(CheckpointManager::dir_name(ck.state.at("step").get<int64_t>()), name) << when;
      for (const auto& info : ck.weights->tensors()) (void)ck.weights->load(info.name).sum();
      for (const auto& info : ck.optimizer->tensors()) (void)ck.optimizer->load(info.name).sum();
    } catch (const std::exception& ex) {
      ADD_FAILURE() << when << ": checkpoint " << name << " is not complete: " << ex.what();
    }
  }
  CheckpointManager m({dir, 1, {}});
  EXPECT_NO_THROW(m.latest()) << when;
  if (fs::exists(dir / "best.json")) {
    auto best = m.best();
    ASSERT_TRUE(best.has_value());
    EXPECT_TRUE(fs::is_directory(dir / CheckpointManager::dir_name(best->step))) << when;
  }
}

TEST(TrainDist, SigkillAtRandomPointsThenResumeIsBitwiseIdentical) {
  test::TempDir tmp;
  // 3 epochs of 40 steps, dropout on (torch CPU generator), validation + best at epoch ends, a checkpoint every
  // step, the last 2 kept.
  const std::vector<std::pair<std::string, std::string>> common = {
      {"M2SA_TOY_STEPS", "40"}, {"M2SA_TOY_EPOCHS", "3"}, {"M2SA_TOY_DROPOUT", "0.2"}, {"M2SA_TOY_VALIDATE", "1"},
      {"M2SA_TOY_KEEP", "2"},   {"M2SA_TOY_HIDDEN", "256"}};
  auto ref_env = common;
  ref_env.insert(ref_env.end(), {{"M2SA_TOY_DIR", (tmp / "ref").string()},
                                 {"M2SA_TOY_OUT", (tmp / "ref.safetensors").string()}});
  Launch ref = launch(1, ref_env);
  ASSERT_EQ(ref.code, 0) << ref.text();

  const fs::path run = tmp / "run", ckdir = run / "checkpoints";
  const std::vector<std::string> stages = {"weights", "optimizer", "state", "renamed", "latest", "best", "pruned"};
  std::mt19937 rng(12345);
  int kills = 0, stage_kills = 0, attempts = 0, planned_stage_kills = 0;
  bool done = false;
  while (!done && attempts < 40) {
    auto env = common;
    env.insert(env.end(), {{"M2SA_TOY_DIR", run.string()}, {"M2SA_TOY_RESUME", "1"},
                           {"M2SA_TOY_OUT", (tmp / "run.safetensors").string()}});
    std::string how = "no kill";
    if (kills < 14) {
      // Every other attempt is killed by its fault hook at an exact stage of a checkpoint write (within its first
      // 3 saves: a checkpoint is written every step); the others by a SIGKILL at a random time (a random step plus
      // a random delay). Only "best", written at epoch ends, may not be reached by its hook, so it also gets the
      // timed kill, and it is not counted among the stage kills that must happen.
      const int step = 1 + static_cast<int>(rng() % 8), ms = static_cast<int>(rng() % 40);
      const bool staged = attempts % 2 == 0;
      const std::string stage = stages[(attempts / 2) % stages.size()];
      if (!staged || stage == "best") {
        env.insert(env.end(), {{"M2SA_TOY_KILL_AFTER_STEP", std::to_string(step)},
                               {"M2SA_TOY_KILL_AFTER_MS", std::to_string(ms)}});
        how = "SIGKILL " + std::to_string(ms) + " ms after step " + std::to_string(step);
      }
      if (staged) {
        const int at = 1 + static_cast<int>(rng() % 3);
        env.insert(env.end(), {{"M2SA_TOY_KILL_STAGE", stage}, {"M2SA_TOY_KILL_AT_SAVE", std::to_string(at)}});
        how = (stage == "best" ? how + " or at" : "SIGKILL at") + " save " + std::to_string(at) + " stage " + stage;
        if (stage != "best") ++planned_stage_kills;
      }
    }
    ++attempts;
    Launch r = launch(1, env);
    if (r.code == 0) {
      done = true;
    } else {
      ASSERT_EQ(r.code, 128 + SIGKILL) << how << "\n" << r.text();
      ++kills;
      if (r.contains("KILLED AT STAGE")) ++stage_kills;
    }
    std::string latest = "none";
    if (fs::exists(ckdir / "latest")) latest = test::read_bytes(ckdir / "latest");
    while (!latest.empty() && latest.back() == '\n') latest.pop_back();
    std::printf("attempt %d: %s -> exit %d%s, latest %s\n", attempts, how.c_str(), r.code,
                r.contains("KILLED AT STAGE") ? " (killed at the stage)" : "", latest.c_str());
    check_checkpoints(ckdir, "after attempt " + std::to_string(attempts) + " (" + how + ")");
  }
  ASSERT_TRUE(done) << "the run never finished";
  EXPECT_GE(kills, 14);
  EXPECT_GE(stage_kills, planned_stage_kills);
  EXPECT_GE(planned_stage_kills, 6);
  const double diff = max_diff(load_all(tmp / "run.safetensors"), load_all(tmp / "ref.safetensors"));
  std::printf("%d kills (%d inside checkpoint writes); resumed run vs uninterrupted: max abs diff %g\n", kills,
              stage_kills, diff);
  EXPECT_EQ(diff, 0.0) << "resume must be bit-exact";
  // The optimizer state and the best checkpoint match the uninterrupted run too.
  LoadedCheckpoint a = load_checkpoint(*CheckpointManager({ckdir, 1, {}}).latest());
  LoadedCheckpoint b = load_checkpoint(*CheckpointManager({tmp / "ref" / "checkpoints", 1, {}}).latest());
  for (const auto& info : b.optimizer->tensors())
    EXPECT_TRUE(at::equal(a.optimizer->load(info.name), b.optimizer->load(info.name))) << info.name;
  EXPECT_EQ(test::read_bytes(ckdir / "best.json"), test::read_bytes(tmp / "ref" / "checkpoints" / "best.json"));
  // The metrics file reads like one run.
  std::ifstream in(run / "metrics.jsonl");
  int64_t expected = 1;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j["type"] == "train") {
      EXPECT_EQ(j["step"].get<int64_t>(), expected++);
    }
  }
  EXPECT_EQ(expected, 121);
}

TEST(TrainDist, TwoRanksKilledAndResumedMatchAnUninterruptedTwoRankRun) {
  test::TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> common = {{"M2SA_TOY_STEPS", "8"},
                                                                   {"M2SA_TOY_DROPOUT", "0.2"}};
  auto ref_env = common;
  ref_env.insert(ref_env.end(), {{"M2SA_TOY_DIR", (tmp / "ref").string()},
                                 {"M2SA_TOY_OUT", (tmp / "ref.safetensors").string()}});
  Launch ref = launch(2, ref_env);
  ASSERT_EQ(ref.code, 0) << ref.text();
  // Rank 1 is SIGKILLed after step 5 (before its checkpoint); the launcher stops rank 0; then resume.
  auto env = common;
  env.insert(env.end(), {{"M2SA_TOY_DIR", (tmp / "run").string()}, {"M2SA_TOY_RESUME", "1"},
                         {"M2SA_TOY_OUT", (tmp / "run.safetensors").string()}});
  auto killed = env;
  killed.insert(killed.end(), {{"M2SA_TOY_DIE_RANK", "1"}, {"M2SA_TOY_DIE_STEP", "5"}});
  Launch k = launch(2, killed);
  EXPECT_EQ(k.code, 128 + SIGKILL) << k.text();
  Launch r = launch(2, env);
  ASSERT_EQ(r.code, 0) << r.text();
  EXPECT_TRUE(r.contains("WORKER DONE rank 1 steps 4..8")) << r.text();
  EXPECT_EQ(max_diff(load_all(tmp / "run.safetensors"), load_all(tmp / "ref.safetensors")), 0.0);
}

TEST(TrainDist, LauncherForwardsOutputAndReportsTheFailingRank) {
  test::TempDir tmp;
  // A worker that cannot start (no run directory) fails on every rank with a readable error.
  Launch r = launch(2, {{"M2SA_TOY_DIR", ""}});
  EXPECT_EQ(r.code, 3) << r.text();
  EXPECT_TRUE(r.contains("WORKER ERROR: Trainer: no run directory")) << r.text();
}

}  // namespace
}  // namespace m2sa::train
