// `m2sa report`: the page's parts, and the page rendered in real headless Chromium (Debian's chromium, installed by
// scripts/setup-deps.sh), which must draw every chart and decode every gallery image. The screenshot's path is
// printed.
#include "m2sa/report/run_report.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <regex>

#include "m2sa/core/json_reader.h"
#include "m2sa/core/read_file.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"
#include "train/toy_task.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// A toy run with validations and previews, an evaluation report, and an `m2sa infer` output folder.
void make_run(const fs::path& root) {
  test::ToyOptions o;
  o.steps = 3;
  o.epochs = 2;
  o.validate = true;
  o.val_samples = 8;
  o.previews = [](const train::StepInfo& info) {
    at::Tensor img = at::zeros({24, 40, 3}, at::kByte);
    img.slice(1, 0, 20).fill_(40 * info.step);
    return std::vector<train::PreviewImage>{
        {"item-0", encode_image(img, ".png"), 24, 40, 3, json{{"question", "Where is <the> mug?"}, {"iou", {0.5}}}}};
  };
  auto comm = dist::make_local_communicator();
  test::run_toy(o, *comm, root / "run");
  write_json_file(root / "run" / "train_config.json", json{{"model", "toy"}, {"lr", 0.01}});
  const json report = json::parse(R"({
    "split": "val", "mode": "teacher-forced", "giou": 0.4321, "ciou": 0.5, "counts": {"images_seen": 3},
    "categories": {
      "objects": {"most_frequent": [{"name": "zebra-category", "masks": 4, "giou": 0.1, "ciou": 0.2}],
                  "least_frequent": []},
      "parts": {"most_frequent": [{"name": "mug:handle", "masks": 2, "giou": 0.3, "ciou": 0.4}]}}})");
  write_json_file(root / "eval_val.json", report);
  fs::create_directories(root / "infer");
  write_image(root / "infer" / "overlay.png", at::full({16, 16, 3}, 200, at::kByte));
  write_json_file(root / "infer" / "result.json",
                  json{{"question", "what opens the door?"}, {"answer", "the handle [SEG]"}, {"overlay_file", "overlay.png"}});
}

TEST(RunReport, PageHoldsChartsTablesGalleryAndConfig) {
  test::TempDir dir;
  make_run(dir.path());
  const test::CliResult r = test::run_cli({"report", (dir / "run").string(), "--eval", (dir / "eval_val.json").string(),
                                           "--infer", (dir / "infer").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string html = read_file(dir / "run" / "report.html");
  EXPECT_EQ(count_of(html, "<svg class=\"chart\""), 5u);  // loss, lr, grad norm, samples/s, validation
  EXPECT_GE(count_of(html, "<polyline"), 7u);            // loss + 2 parts, lr, grad norm, samples/s, gIoU, cIoU
  EXPECT_NE(html.find("zebra-category"), std::string::npos);
  EXPECT_NE(html.find("mug:handle"), std::string::npos);
  EXPECT_NE(html.find("43.21"), std::string::npos);  // the gIoU as a percentage
  EXPECT_EQ(count_of(html, "<figure>"), 3u);         // previews of the last and first validation, the infer result
  EXPECT_NE(html.find("Where is &lt;the&gt; mug?"), std::string::npos);  // escaped
  EXPECT_NE(html.find("what opens the door?"), std::string::npos);
  EXPECT_NE(html.find("&quot;lr&quot;: 0.01"), std::string::npos);  // the config
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no other network reference
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST(RunReport, NothingToReportIsAClearError) {
  test::TempDir dir;
  const test::CliResult r = test::run_cli({"report", dir.path().string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nothing to report"), std::string::npos) << r.output;
  write_json_file(dir / "bad.json", json{{"split", "val"}});
  const test::CliResult bad = test::run_cli({"report", dir.path().string(), "--eval", (dir / "bad.json").string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("bad.json: not an m2sa evaluation report"), std::string::npos) << bad.output;
}

TEST(RunReport, SvgChartScalesAndSkipsNonFinitePoints) {
  const std::string svg =
      report::svg_line_chart("t", {{"a", {{0, 1}, {10, 3}, {5, NAN}}}, {"b", {{2, 2}}}}, 200, 100);
  EXPECT_EQ(count_of(svg, "<polyline"), 2u);
  EXPECT_EQ(count_of(svg, "<circle"), 1u);  // a one-point series is drawn as a dot
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_NE(report::svg_line_chart("empty", {}).find("no data"), std::string::npos);
  EXPECT_EQ(report::html_escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

TEST(RunReport, RendersInHeadlessChromium) {
  const char* env = std::getenv("M2SA_CHROMIUM");
  const std::string chromium = env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << chromium << " not found: scripts/setup-deps.sh installs Debian's chromium";
  test::TempDir dir;
  make_run(dir.path());
  ASSERT_EQ(test::run_cli({"report", (dir / "run").string(), "--infer", (dir / "infer").string()}).exit_code, 0);
  const std::string url = "file://" + (dir / "run" / "report.html").string();
  // The flags that keep Chromium off the (closed) network and out of the user's profile.
  const std::vector<std::string> base = {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                         "--no-first-run", "--disable-background-networking",
                                         "--disable-component-update", "--disable-sync",
                                         "--user-data-dir=" + (dir / "profile").string(), "--virtual-time-budget=5000"};
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--dump-dom", url});
  const test::CliResult dom = test::run_program(chromium, args);
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom.output, m, std::regex("data-rendered=\"charts=(\\d+) lines=(\\d+) images=(\\d+) "
                                                          "decoded=(\\d+)\"")))
      << "the page's load script did not run:\n" << dom.output.substr(0, 2000);
  EXPECT_EQ(std::stoi(m[1]), 5);
  EXPECT_GE(std::stoi(m[2]), 7);
  EXPECT_EQ(std::stoi(m[3]), 3);
  EXPECT_EQ(std::stoi(m[4]), 3) << "every gallery image decodes";

  const fs::path shot = fs::temp_directory_path() / "m2sa_report_screenshot.png";
  fs::remove(shot);
  args = base;
  args.insert(args.end(), {"--window-size=1280,2400", "--screenshot=" + shot.string(), url});
  const test::CliResult s = test::run_program(chromium, args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  ASSERT_TRUE(fs::exists(shot));
  const at::Tensor png = read_image_rgb(shot);
  EXPECT_EQ(png.size(1), 1280);
  EXPECT_GT(png.to(at::kFloat).std().item<double>(), 1.0) << "the screenshot is blank";
  std::cout << "report screenshot: " << shot.string() << "\n";
}

}  // namespace
}  // namespace m2sa
