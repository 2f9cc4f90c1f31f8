// Every `build/m2sa` command in the README's code blocks is run: either the demo runs it verbatim (scripts/demo.sh),
// or this test runs it from the repository root, where the real weights and datasets it names are absent. Such a
// command must get past argument parsing and fail only because a file it names is missing (or succeed, like
// `m2sa inspect`). So a README that drifts from the CLI (a renamed flag, a wrong split name) fails here.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <regex>
#include <sstream>

#include "m2sa/core/json_reader.h"
#include "test_util.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string squeeze(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// The `build/m2sa ...` part of every line in a ``` block.
std::vector<std::string> readme_commands() {
  std::vector<std::string> out;
  std::istringstream in(read_text(test::repo_root() / "README.md"));
  std::string line;
  bool in_block = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      in_block = !in_block;
      continue;
    }
    const auto at = line.find("build/m2sa ");
    if (in_block && at != std::string::npos) out.push_back(squeeze(line.substr(at)));
  }
  return out;
}

// The demo's commands with continuation lines joined and `run` prefixes dropped.
std::string demo_text() {
  std::string s = read_text(test::repo_root() / "scripts" / "demo.sh");
  s = std::regex_replace(s, std::regex("\\\\\\n\\s*"), " ");
  return squeeze(std::regex_replace(s, std::regex("\\n"), " ; "));
}

// A minimal shell-word splitter for the README's commands (double quotes only).
std::vector<std::string> split_words(const std::string& cmd) {
  std::vector<std::string> words;
  std::string cur;
  bool quoted = false, any = false;
  for (char c : cmd) {
    if (c == '"') {
      quoted = !quoted;
      any = true;
    } else if (c == ' ' && !quoted) {
      if (any) words.push_back(cur);
      cur.clear();
      any = false;
    } else {
      cur += c;
      any = true;
    }
  }
  if (any) words.push_back(cur);
  return words;
}

TEST(ReadmeCommands, EveryCommandIsRunByTheDemoOrParsesAndNamesTheMissingInput) {
  const std::vector<std::string> commands = readme_commands();
  ASSERT_GE(commands.size(), 10u) << "the README lost its commands?";
  const std::string demo = demo_text();
  int by_demo = 0, run_here = 0;
  for (const std::string& cmd : commands) {
    SCOPED_TRACE(cmd);
    if (demo.find(cmd) != std::string::npos) {
      ++by_demo;
      continue;
    }
    std::vector<std::string> words = split_words(cmd);
    ASSERT_EQ(words.front(), "build/m2sa");
    words.erase(words.begin());
    // Paths the command names that do not exist here (weights, datasets): the error must name one of them.
    // Configs given on the command line count with the paths they name (a training config's weights).
    std::vector<std::string> missing;
    auto consider = [&](const std::string& w) {
      const bool path_like = w.find('/') != std::string::npos || fs::path(w).has_extension();
      if (path_like && !fs::exists(test::repo_root() / w)) missing.push_back(w);
    };
    for (const auto& w : words) {
      consider(w);
      if (fs::path(w).extension() == ".json" && fs::is_regular_file(test::repo_root() / w)) {
        const json j = read_json_file(test::repo_root() / w);
        std::function<void(const json&)> walk = [&](const json& v) {
          if (v.is_string()) consider(v.get<std::string>());
          if (v.is_structured())
            for (const auto& x : v) walk(x);
        };
        walk(j);
      }
    }
    const test::CliResult r = test::run_cli(words, "", test::repo_root());
    ++run_here;
    for (const char* parse_error : {"was not expected", "is required", "Could not convert", "not in {", "Run with --help",
                                    "The following arguments were not expected", "unknown split", "Unknown split"})
      EXPECT_EQ(r.output.find(parse_error), std::string::npos) << r.output;
    if (r.exit_code == 0) continue;
    bool named = false;
    for (const auto& m : missing) named = named || r.output.find(m) != std::string::npos;
    EXPECT_TRUE(named) << "exit " << r.exit_code << " without naming a missing input (" << missing.size()
                       << " candidates):\n" << r.output;
  }
  std::printf("README: %d commands run by the demo, %d run here\n", by_demo, run_here);
  EXPECT_GE(by_demo, 3);
}

TEST(ReadmeCommands, SlurmEnvMapsTheTaskToTheRendezvousVariables) {
  const std::string script = (test::repo_root() / "scripts" / "slurm-env.sh").string();
  const std::string cmd = "env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE -u MASTER_ADDR -u MASTER_PORT "
                          "SLURM_PROCID=5 SLURM_NTASKS=16 SLURM_LOCALID=1 SLURM_TASKS_PER_NODE='8(x2)' "
                          "SLURM_JOB_ID=1234 SLURM_JOB_NODELIST=gpu07 SLURMD_NODENAME=gpu07 bash " + script +
                          " env 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ASSERT_EQ(::pclose(pipe), 0) << out;
  for (const char* expected : {"\nRANK=5\n", "\nWORLD_SIZE=16\n", "\nLOCAL_RANK=1\n", "\nLOCAL_WORLD_SIZE=8\n",
                               "\nMASTER_ADDR=gpu07\n", "\nMASTER_PORT=21234\n"})
    EXPECT_NE(("\n" + out).find(expected), std::string::npos) << expected << " in\n" << out;
  // Outside srun it refuses with a clear message.
  const std::string bad = "env -u SLURM_PROCID bash " + script + " true 2>&1";
  pipe = ::popen(bad.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  out.clear();
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  EXPECT_NE(::pclose(pipe), 0);
  EXPECT_NE(out.find("SLURM_PROCID is not set"), std::string::npos) << out;
}

// Runs `command` through the shell; returns its exit status and fills `out` with stdout + stderr.
int run_shell(const std::string& command, std::string& out) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  out.clear();
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  return ::pclose(pipe);
}

TEST(ReadmeCommands, BuildScriptReconfiguresWhenGivenCmakeArguments) {
  // `bash scripts/build.sh -DM2SA_WITH_NCCL=OFF` used to pass its arguments to cmake only when build/ was new:
  // on an existing build folder they were silently dropped. Run against a stub cmake that logs its calls.
  test::TempDir t;
  fs::create_directories(t / "scripts");
  fs::create_directories(t / "bin");
  fs::create_directories(t / "build");
  fs::copy_file(test::repo_root() / "scripts" / "build.sh", t / "scripts" / "build.sh");
  test::write_bytes(t / "scripts" / "torch-cmake-args.sh", "echo -DCMAKE_PREFIX_PATH=/fake/torch\n");
  test::write_bytes(t / "build" / "build.ninja", "");
  test::write_bytes(t / "build" / "CMakeCache.txt", "Torch_DIR:PATH=/fake/torch/Torch\n");
  test::write_bytes(t / "bin" / "cmake", "#!/bin/sh\necho \"cmake $*\" >> \"$CMAKE_LOG\"\n");
  fs::permissions(t / "bin" / "cmake", fs::perms::owner_all);
  const std::string env = "PATH='" + (t / "bin").string() + "':\"$PATH\" CMAKE_LOG='" + (t / "log").string() +
                          "' JOBS=1 ";
  const std::string script = "bash '" + (t / "scripts" / "build.sh").string() + "'";
  std::string out;
  ASSERT_EQ(run_shell(env + script + " -DM2SA_WITH_NCCL=OFF", out), 0) << out;
  std::string log = test::read_bytes(t / "log");
  EXPECT_NE(log.find("cmake -S . -B build -G Ninja"), std::string::npos) << log;
  EXPECT_NE(log.find("-DM2SA_WITH_NCCL=OFF"), std::string::npos) << log;
  EXPECT_NE(log.find("cmake --build build -j 1"), std::string::npos) << log;
  // Without arguments an existing build folder is only built, not configured again.
  fs::remove(t / "log");
  ASSERT_EQ(run_shell(env + script, out), 0) << out;
  log = test::read_bytes(t / "log");
  EXPECT_EQ(log.find("-S ."), std::string::npos) << log;
  EXPECT_NE(log.find("cmake --build build -j 1"), std::string::npos) << log;
}

}  // namespace
}  // namespace m2sa
