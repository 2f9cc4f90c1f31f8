#pragma once
// Helpers shared by the tests: fixture lookup ($M2SA_FIXTURE_DIR), tolerance checks that report the error,
// running the CLI, temporary directories.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/nn/attention.h"

namespace m2sa::test {

// $M2SA_FIXTURE_DIR, else tests/fixtures/reference (the reference fixtures, copied from ../shared/fixtures).
std::filesystem::path fixture_dir();
std::filesystem::path fixture(const std::string& name);
std::filesystem::path repo_root();

// The device the model tests run on: $M2SA_TEST_DEVICE ("cpu", the default; "cuda" or "cuda:N" on a GPU machine,
// scripts/gpu-check.sh). Fixture readers place weights and inputs there; comparisons move results to the CPU. On
// CUDA, TF32 is off for cuBLAS and cuDNN in every test, so fp32 parity holds to the fixtures' fp32 tolerances.
c10::Device device();

// The attention mode the model tests run in: $M2SA_TEST_ATTENTION ("sdpa", the default, or "exact"). Every test
// runs under it (a guard on the test thread), and models built from a config get it as their m2sa.attention. The
// `ParityExactAttention` ctest entry runs every *Parity test again in exact mode, so both modes meet the fixtures.
nn::AttentionMode attention_mode();

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "m2sa_test");
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// max |a - b| (as double, on the CPU; shapes must agree).
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

// gtest assertion: shapes equal and max abs error <= atol; the message names `what` and the error.
::testing::AssertionResult AllClose(const at::Tensor& actual, const at::Tensor& expected, double atol,
                                    const std::string& what = "");

struct CliResult {
  int exit_code;
  std::string output;  // stdout + stderr
};
// Runs build/m2sa with the given arguments (each quoted for the shell); `env` is a prefix such as "A=1 B=2";
// `cwd`: the working directory (default: the test's).
CliResult run_cli(const std::vector<std::string>& args, const std::string& env = "",
                  const std::filesystem::path& cwd = {});

// The Python of the test environment (scripts/setup-deps.sh installs tensorboard there): $M2SA_TEST_PYTHON, else
// $M2SA_VENV/bin/python, else the checkout's .venv/bin/python, else python3. Tests that call run_python (like those
// that call run_cli) are left out of the core-tier build (CMakeLists.txt, m2sa_core_tier).
std::string test_python();
CliResult run_python(const std::vector<std::string>& args);
// Any program with arguments (each quoted for the shell), stdout + stderr.
CliResult run_program(const std::string& program, const std::vector<std::string>& args);

// The message of the exception `fn` throws ("" when it throws none), for tests of error messages.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The message of the m2sa::Error that `fn` throws ("" when it throws none). Any other exception propagates and fails
// the test: for checks that a bad input is refused by m2sa's own validation, not by a crash further in.
template <class Fn>
std::string m2sa_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Writes bytes to a file (for corrupt-input tests).
void write_bytes(const std::filesystem::path& path, const std::string& bytes);
std::string read_bytes(const std::filesystem::path& path);

}  // namespace m2sa::test
