#pragma once
// `m2sa report`: one self-contained HTML page about a training run (no network, no CDN, no script libraries):
//   - line charts (inline SVG) of every metrics.jsonl series against the step: loss and its parts, lr, grad norm,
//     throughput, and the validation gIoU / cIoU;
//   - the resolved config (train_config.json);
//   - the tables of each evaluation report (eval/report.h layout): scores, counts and the most and least frequent
//     object and part categories;
//   - a gallery (PNG data URIs): the validation previews of the newest and the first validated step (GT | prediction,
//     with question, answer and IoU), and `m2sa infer --out` results (overlay, question, answer) when given.
// The page carries a small inline script that, once loaded, records what rendered in <body data-rendered="..."> so
// that a headless browser can check it (tests/report/run_report_test.cpp).
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace m2sa::report {

struct ReportInputs {
  std::filesystem::path run_dir;  // metrics.jsonl, train_config.json, previews/, eval/*.json (all optional)
  std::vector<std::filesystem::path> eval_reports;  // more evaluation report files
  std::vector<std::filesystem::path> infer_dirs;    // `m2sa infer --out` folders (result.json), or their parents
};

// A line chart: one polyline per series of (x, y) points; non-finite points are left out.
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};
std::string svg_line_chart(const std::string& title, const std::vector<Series>& series, int width = 560,
                           int height = 280);

std::string html_escape(const std::string& text);

// The page. Unreadable inputs are m2sa::Errors naming the file; a run folder without any of its files is an error.
std::string render_run_report(const ReportInputs& inputs);

// Writes the page atomically to `out` (default <run_dir>/report.html) and returns its path.
std::filesystem::path write_run_report(const ReportInputs& inputs, const std::filesystem::path& out = {});

}  // namespace m2sa::report
