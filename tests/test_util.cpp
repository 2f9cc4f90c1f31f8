#include "test_util.h"

#include <ATen/ATen.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

namespace m2sa::test {
namespace fs = std::filesystem;

fs::path repo_root() { return fs::path(M2SA_SOURCE_DIR); }

fs::path fixture_dir() {
  if (const char* d = std::getenv("M2SA_FIXTURE_DIR"); d && *d) return fs::path(d);
  return fs::path(M2SA_FIXTURE_DIR_DEFAULT);
}

fs::path fixture(const std::string& name) {
  fs::path p = fixture_dir() / name;
  if (!fs::exists(p)) ADD_FAILURE() << "fixture missing: " << p << " (set M2SA_FIXTURE_DIR)";
  return p;
}

c10::Device device() {
  static const c10::Device d = [] {
    const char* v = std::getenv("M2SA_TEST_DEVICE");
    const std::string name = v && *v ? v : "cpu";
    try {
      const c10::Device parsed(name);
      if (parsed.is_cuda() && !at::hasCUDA())
        throw std::runtime_error("this LibTorch or this machine has no CUDA");
      if (!parsed.is_cpu() && !parsed.is_cuda()) throw std::runtime_error("expected cpu, cuda or cuda:N");
      return parsed;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "M2SA_TEST_DEVICE=\"%s\": %s\n", name.c_str(), e.what());
      std::exit(2);
    }
  }();
  return d;
}

nn::AttentionMode attention_mode() {
  static const nn::AttentionMode mode = [] {
    const char* v = std::getenv("M2SA_TEST_ATTENTION");
    try {
      return nn::parse_attention_mode(v && *v ? v : "sdpa", "M2SA_TEST_ATTENTION");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::exit(2);
    }
  }();
  return mode;
}

namespace {

// Registered before main(): on CUDA, fp32 matmuls and convolutions stay fp32 (cuDNN allows TF32 by default); the
// test thread computes attention in attention_mode().
class DeviceEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (device().is_cuda()) {
      at::globalContext().setAllowTF32CuBLAS(false);
      at::globalContext().setAllowTF32CuDNN(false);
    }
    mode_ = std::make_unique<nn::AttentionModeGuard>(attention_mode());
  }
  void TearDown() override { mode_.reset(); }

 private:
  std::unique_ptr<nn::AttentionModeGuard> mode_;
};
const auto* const device_environment = ::testing::AddGlobalTestEnvironment(new DeviceEnvironment);

}  // namespace

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / (tag + "_" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temp dir");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0.0;
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

::testing::AssertionResult AllClose(const at::Tensor& actual, const at::Tensor& expected, double atol,
                                    const std::string& what) {
  if (!actual.defined()) return ::testing::AssertionFailure() << what << ": result is undefined";
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << actual.sizes() << " != expected " << expected.sizes();
  const double err = max_abs_diff(actual, expected);
  if (!(err <= atol))
    return ::testing::AssertionFailure() << what << ": max abs error " << err << " > atol " << atol;
  return ::testing::AssertionSuccess() << what << ": max abs error " << err << " <= " << atol;
}

namespace {
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}
}  // namespace

namespace {
CliResult run_shell(const std::string& program, const std::vector<std::string>& args, const std::string& env,
                    const fs::path& cwd) {
  std::string cmd = (cwd.empty() ? "" : "cd " + shell_quote(cwd.string()) + " && ") + env + (env.empty() ? "" : " ") +
                    shell_quote(program);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  CliResult r{-1, ""};
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}
}  // namespace

CliResult run_cli(const std::vector<std::string>& args, const std::string& env, const fs::path& cwd) {
  return run_shell(M2SA_CLI_PATH, args, env, cwd);
}

std::string test_python() {
  if (const char* p = std::getenv("M2SA_TEST_PYTHON"); p != nullptr && *p != '\0') return p;
  const char* venv = std::getenv("M2SA_VENV");
  const fs::path py = (venv != nullptr && *venv != '\0' ? fs::path(venv) : fs::path(M2SA_SOURCE_DIR) / ".venv") /
                      "bin" / "python";
  return fs::exists(py) ? py.string() : "python3";
}

CliResult run_python(const std::vector<std::string>& args) { return run_shell(test_python(), args, "", {}); }

CliResult run_program(const std::string& program, const std::vector<std::string>& args) {
  return run_shell(program, args, "", {});
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace m2sa::test
