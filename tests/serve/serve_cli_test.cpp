// `m2sa serve` as users run it: a process on a loopback port, loading a tiny model exported like the trainer writes
// it. Its answers and masks equal `m2sa infer`'s on the same inputs, exactly; SIGTERM stops new connections, lets the
// request in flight finish and exits 0; and the web page works in real headless Chromium (Debian's chromium, driven
// through the DevTools protocol over a pipe by tests/tools/serve_web_page_cdp.py), which uploads an image, asks,
// waits for the overlay and writes a screenshot whose path is printed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/core/read_file.h"
#include "m2sa/infer/model_export.h"
#include "serve/serve_test_util.h"
#include "test_util.h"

extern char** environ;

namespace m2sa {
namespace {

namespace fs = std::filesystem;

const std::string kQuestion = "Which parts of the chair hold a person up? Please output segmentation mask.";
const std::string kAnswer = "Sure, the chair's leg [SEG] and the seat [SEG].";

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// `m2sa serve ARGS --port 0` in the background, its output in a log file; waits for "listening on".
class ServeProcess {
 public:
  ServeProcess(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
    std::vector<std::string> argv{M2SA_CLI_PATH, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--host", "127.0.0.1", "--port", "0"});
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return;
    }
    const std::regex listening("listening on http://127\\.0\\.0\\.1:(\\d+)");
    for (int i = 0; i < 3000 && port_ == 0; ++i) {  // up to 5 minutes on a busy machine
      std::smatch m;
      const std::string text = file_text(log_);
      if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
      else if (exited()) break;
      else std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited()) {
      ::kill(pid_, SIGKILL);
      wait_exit();
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return file_text(log_); }
  bool exited() {
    if (status_ >= 0) return true;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
    return status_ >= 0;
  }
  // Waits for the process; its exit code (-signal when killed).
  int wait_exit() {
    if (status_ < 0) {
      int st = 0;
      waitpid(pid_, &st, 0);
      status_ = st;
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300, 0);
    return c;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = -1;
};

class ServeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<test::TempDir>("m2sa_serve_cli");
    infer::Predictor p(test::tiny_model(31), test::tiny_tokenizer());
    image_ = test::random_rgb(72, 100, 11);
    write_image(*tmp_ / "a.png", image_);
    test::force(p, {{image_, kQuestion, kAnswer}});
    infer::ExportOptions eo;
    eo.dtype = at::kFloat;
    infer::export_model(*p.model(), p.tokenizer(), *tmp_ / "model", eo);
    // An untrained model: answers run to max_new_tokens (a request that stays in flight).
    infer::Predictor r(test::tiny_model(7), test::tiny_tokenizer());
    infer::export_model(*r.model(), r.tokenizer(), *tmp_ / "random", eo);
  }
  static void TearDownTestSuite() { tmp_.reset(); }
  static std::unique_ptr<test::TempDir> tmp_;
  static at::Tensor image_;
};

std::unique_ptr<test::TempDir> ServeCli::tmp_;
at::Tensor ServeCli::image_;

TEST_F(ServeCli, AnswersAndMasksEqualInferExactly) {
  const fs::path out = *tmp_ / "infer_out";
  const auto r = test::run_cli({"infer", "--model", (*tmp_ / "model").string(), "--precision", "fp32",
                                "--max-new-tokens", "30", (*tmp_ / "a.png").string(), kQuestion, "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json expected = read_json_file(out / "result.json");
  ASSERT_EQ(expected.at("targets").size(), 2u);

  ServeProcess s({"--model", (*tmp_ / "model").string(), "--precision", "fp32", "--max-new-tokens", "30"},
                 *tmp_ / "serve_exact.log");
  ASSERT_GT(s.port(), 0) << s.log();
  httplib::Client c = s.client();
  const std::string png = read_file(*tmp_ / "a.png");
  auto res = c.Post("/v1/segment",
                    httplib::MultipartFormDataItems{{"image", png, "a.png", "image/png"}, {"question", kQuestion, "", ""}});
  ASSERT_TRUE(res) << s.log();
  ASSERT_EQ(res->status, 200) << res->body;
  const json got = json::parse(res->body);
  EXPECT_EQ(got.at("answer"), expected.at("answer"));
  EXPECT_EQ(got.at("finish_reason"), expected.at("finish_reason"));
  ASSERT_EQ(got.at("targets").size(), expected.at("targets").size());
  for (std::size_t k = 0; k < got["targets"].size(); ++k) {
    const json& g = got["targets"][k];
    const json& e = expected["targets"][k];
    EXPECT_EQ(g.at("phrase"), e.at("phrase"));
    EXPECT_EQ(g.at("bbox"), e.at("bbox"));
    EXPECT_EQ(g.at("area"), e.at("area"));
    EXPECT_EQ(g.at("mask").at("size"), e.at("segmentation").at("size")) << "target " << k;
    EXPECT_EQ(g.at("mask").at("counts"), e.at("segmentation").at("counts")) << "target " << k << ": the same RLE";
  }
  ::kill(s.pid(), SIGTERM);
  EXPECT_EQ(s.wait_exit(), 0) << s.log();
}

TEST_F(ServeCli, SigtermDrainsTheRequestInFlight) {
  ServeProcess s({"--model", (*tmp_ / "random").string(), "--precision", "fp32"}, *tmp_ / "serve_term.log");
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string png = read_file(*tmp_ / "a.png");
  const json req{{"messages", json::array({json{{"role", "user"},
                                                {"content", json::array({json{{"type", "text"}, {"text", "Describe it."}},
                                                                         json{{"type", "image_url"},
                                                                              {"image_url", {{"url", test::png_data_uri(image_)}}}}})}}})},
                 {"max_tokens", 400},
                 {"stream", true}};
  // The client sends SIGTERM once the first tokens arrived: the request is in flight.
  std::promise<void> started;
  auto started_future = started.get_future();
  std::once_flag started_once;
  bool signalled = false;
  std::string body;
  auto client = std::async(std::launch::async, [&] {
    httplib::Client c = s.client();
    httplib::Request r;
    r.method = "POST";
    r.path = "/v1/chat/completions";
    r.body = req.dump();
    r.set_header("Content-Type", "application/json");
    int chunks = 0;
    r.content_receiver = [&](const char* data, std::size_t n, uint64_t, uint64_t) {
      body.append(data, n);
      if (++chunks == 3) std::call_once(started_once, [&] { started.set_value(); });
      return true;
    };
    auto result = c.send(r);
    std::call_once(started_once, [&] { started.set_value(); });  // (a stream shorter than 3 chunks)
    return result;
  });
  started_future.wait();
  ::kill(s.pid(), SIGTERM);
  signalled = true;
  auto result = client.get();
  const int exit_code = s.wait_exit();
  ASSERT_TRUE(result) << httplib::to_string(result.error()) << " (exit " << exit_code << "), received:\n"
                      << body.substr(0, 2000) << "\nlog:\n" << s.log();
  EXPECT_EQ(result->status, 200);
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << "the stream must finish: " << body.substr(body.size() > 400 ? body.size() - 400 : 0);
  EXPECT_NE(body.find("\"m2sa\":"), std::string::npos) << "the final chunk (finish_reason and masks) arrived";
  EXPECT_TRUE(signalled);
  EXPECT_EQ(exit_code, 0) << s.log();
  const std::string log = s.log();
  EXPECT_NE(log.find("signal 15 received"), std::string::npos) << log;
  EXPECT_NE(log.find("every request in flight was answered"), std::string::npos) << log;
  // Gone: no new connections.
  httplib::Client c = s.client();
  c.set_connection_timeout(2, 0);
  EXPECT_FALSE(c.Get("/health"));
}

TEST_F(ServeCli, WebPageInHeadlessChromium) {
  const char* env = std::getenv("M2SA_CHROMIUM");
  const std::string chromium = env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << chromium << " not found: scripts/setup-deps.sh installs Debian's chromium";
  ServeProcess s({"--model", (*tmp_ / "model").string(), "--precision", "fp32", "--max-new-tokens", "30"},
                 *tmp_ / "serve_web.log");
  ASSERT_GT(s.port(), 0) << s.log();
  const fs::path shot = fs::temp_directory_path() / "m2sa_serve_page_screenshot.png";
  fs::remove(shot);
  const test::CliResult r = test::run_program(
      "python3", {(test::repo_root() / "tests" / "tools" / "serve_web_page_cdp.py").string(), chromium,
                  "http://127.0.0.1:" + std::to_string(s.port()) + "/", (*tmp_ / "a.png").string(), kQuestion,
                  shot.string(), (*tmp_ / "chromium-profile").string()});
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("RESULT (\\{.*\\})"))) << r.output;
  const json page = json::parse(m[1].str());
  ASSERT_FALSE(page.contains("exception")) << page.dump(2) << "\n" << s.log();
  EXPECT_EQ(page["state"], "answered") << page.dump(2);
  EXPECT_EQ(page["masks"], 2);
  EXPECT_EQ(page["toggles"], 2);
  EXPECT_EQ(page["layers"], 2);
  const std::string answer = page["answer"];
  EXPECT_NE(answer.find("the chair's leg"), std::string::npos) << answer;
  EXPECT_NE(answer.find("the seat"), std::string::npos) << answer;
  ASSERT_EQ(page["phrases"].size(), 2u) << page.dump(2);
  EXPECT_EQ(page["phrases"][0][0], "the chair's leg");
  EXPECT_NE(page["phrases"][0][1], page["phrases"][1][1]) << "each target in its own colour";
  EXPECT_EQ(page["overlay_width"], 100);
  EXPECT_EQ(page["overlay_height"], 72);
  ASSERT_TRUE(fs::exists(shot));
  const at::Tensor png = read_image_rgb(shot);
  EXPECT_GT(png.to(at::kFloat).std().item<double>(), 1.0) << "the screenshot is blank";
  std::cout << "serve web page screenshot: " << shot.string() << "\n";
  ::kill(s.pid(), SIGTERM);
  EXPECT_EQ(s.wait_exit(), 0) << s.log();
}

}  // namespace
}  // namespace m2sa
