#include "m2sa/report/run_report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/base64.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/core/read_file.h"
#include "m2sa/core/strings.h"

namespace m2sa::report {
namespace fs = std::filesystem;

namespace {

std::string num(double v, int precision = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string percent(const json& v) { return v.is_number() ? num(100.0 * v.get<double>(), 4) : "-"; }

// A "nice" tick step (1, 2 or 5 x 10^k) for about `ticks` intervals over `range`.
double tick_step(double range, int ticks) {
  const double raw = range / ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

const char* const kSeriesColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

// ---------------------------------------------------------------------------------------------- inputs

std::vector<json> read_metrics(const fs::path& file) {
  std::vector<json> lines;
  std::ifstream in(file);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    try {
      lines.push_back(json::parse(line));
    } catch (const std::exception& e) {
      // The last line of a killed run may be torn; anything else is a damaged file.
      if (in.peek() != EOF) fail(file.string(), ": line ", n, " is not JSON: ", e.what());
    }
  }
  return lines;
}

// Series of `type` lines for the given keys (keys missing from every line give no series).
std::vector<Series> series_of(const std::vector<json>& lines, const std::string& type,
                              const std::vector<std::string>& keys) {
  std::vector<Series> out;
  for (const std::string& key : keys) {
    Series s{key, {}};
    for (const json& l : lines)
      if (l.value("type", "") == type && l.contains(key) && l[key].is_number() && l.contains("step"))
        s.points.emplace_back(l["step"].get<double>(), l[key].get<double>());
    if (!s.points.empty()) out.push_back(std::move(s));
  }
  return out;
}

// The numeric keys of the `type` lines that no other chart shows (the loss parts of a task: ce, mask_bce, ...).
std::vector<std::string> other_keys(const std::vector<json>& lines, const std::string& type,
                                    const std::vector<std::string>& shown) {
  std::vector<std::string> keys;
  for (const json& l : lines) {
    if (l.value("type", "") != type) continue;
    for (const auto& [k, v] : l.items())
      if (v.is_number() && std::find(shown.begin(), shown.end(), k) == shown.end() &&
          std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k);
  }
  return keys;
}

std::string data_uri_png(const fs::path& file) { return "data:image/png;base64," + base64_encode(read_file(file)); }

// ---------------------------------------------------------------------------------------------- sections

std::string charts_section(const std::vector<json>& lines) {
  const std::vector<std::string> counters = {"step", "epoch", "samples", "samples_seen", "elapsed_s", "step_time_s",
                                             "lr", "grad_norm", "samples_per_s", "loss", "time_s"};
  std::vector<std::string> loss_keys = {"loss"};
  for (const std::string& k : other_keys(lines, "train", counters)) loss_keys.push_back(k);
  std::string html = "<section id=\"charts\"><h2>Training curves</h2><div class=\"charts\">\n";
  html += svg_line_chart("loss", series_of(lines, "train", loss_keys));
  html += svg_line_chart("learning rate", series_of(lines, "train", {"lr"}));
  html += svg_line_chart("gradient norm (before clipping)", series_of(lines, "train", {"grad_norm"}));
  html += svg_line_chart("samples / s", series_of(lines, "train", {"samples_per_s"}));
  std::vector<std::string> val_keys = {"giou", "ciou"};
  for (const std::string& k : other_keys(lines, "val", {"step", "epoch", "time_s", "giou", "ciou"}))
    val_keys.push_back(k);
  html += svg_line_chart("validation", series_of(lines, "val", val_keys));
  return html + "</div></section>\n";
}

std::string category_table(const json& rows, const std::string& caption) {
  if (!rows.is_array() || rows.empty()) return "";
  std::string html = "<table class=\"cat\"><caption>" + html_escape(caption) +
                     "</caption><tr><th>category</th><th>masks</th><th>gIoU %</th><th>cIoU %</th></tr>";
  for (const json& r : rows)
    html += "<tr><td>" + html_escape(r.value("name", "?")) + "</td><td>" +
            std::to_string(r.value("masks", int64_t{0})) + "</td><td>" + percent(r.value("giou", json())) +
            "</td><td>" + percent(r.value("ciou", json())) + "</td></tr>";
  return html + "</table>";
}

std::string eval_section(const std::vector<std::pair<fs::path, json>>& reports) {
  if (reports.empty()) return "";
  std::string html = "<section id=\"eval\"><h2>Evaluation reports</h2>\n";
  for (const auto& [file, r] : reports) {
    const std::string where = file.string();
    M2SA_CHECK(r.is_object() && r.contains("giou") && r.contains("ciou"), where,
               ": not an m2sa evaluation report (no giou / ciou)");
    html += "<div class=\"eval\"><h3>" + html_escape(r.value("split", "?")) + " &middot; " +
            html_escape(r.value("mode", "?")) + "</h3><p class=\"file\">" + html_escape(where) + "</p>";
    html += "<table><tr><th>gIoU %</th><th>cIoU %</th>";
    const json counts = r.value("counts", json::object());
    for (const auto& [k, v] : counts.items()) html += "<th>" + html_escape(k) + "</th>";
    html += "</tr><tr><td>" + percent(r["giou"]) + "</td><td>" + percent(r["ciou"]) + "</td>";
    for (const auto& [k, v] : counts.items()) html += "<td>" + html_escape(v.dump()) + "</td>";
    html += "</tr></table>";
    const json cats = r.value("categories", json::object());
    for (const char* kind : {"objects", "parts"}) {
      const json t = cats.value(kind, json::object());
      html += "<div class=\"cats\">";
      html += category_table(t.value("most_frequent", json::array()), std::string(kind) + ": most frequent");
      html += category_table(t.value("least_frequent", json::array()), std::string(kind) + ": least frequent");
      html += "</div>";
    }
    if (r.contains("protocol")) html += "<p class=\"note\">" + html_escape(r.value("protocol", "")) + "</p>";
    html += "</div>\n";
  }
  return html + "</section>\n";
}

std::string figure(const std::string& src, const std::string& caption_html) {
  return "<figure><img alt=\"\" src=\"" + src + "\"><figcaption>" + caption_html + "</figcaption></figure>\n";
}

std::string text_line(const char* label, const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) return "";
  return "<div><b>" + std::string(label) + "</b> " + html_escape(j[key].get<std::string>()) + "</div>";
}

// previews/step-NNNNNN folders that hold a previews.json, oldest first.
std::vector<fs::path> preview_steps(const fs::path& run_dir) {
  std::vector<fs::path> dirs;
  const fs::path root = run_dir / "previews";
  if (!fs::is_directory(root)) return dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && starts_with(e.path().filename().string(), "step-") &&
        fs::exists(e.path() / "previews.json"))
      dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

std::string previews_gallery(const fs::path& dir) {
  const json index = read_json_file(dir / "previews.json");
  M2SA_CHECK(index.is_array(), (dir / "previews.json").string(), ": expected a list of previews");
  std::string html = "<h3>Validation items at " + html_escape(dir.filename().string()) +
                     " <span class=\"note\">(left: ground truth, right: prediction; teacher-forced)</span></h3>"
                     "<div class=\"gallery\">\n";
  for (const json& p : index) {
    std::string caption = text_line("source", p, "source") + text_line("Q:", p, "question") +
                          text_line("A (ground truth fed):", p, "answer");
    if (p.contains("iou") && p["iou"].is_array()) {
      std::string ious;
      for (const json& v : p["iou"]) ious += (ious.empty() ? "" : ", ") + num(v.get<double>(), 3);
      caption += "<div><b>IoU per target</b> " + (ious.empty() ? std::string("-") : ious) + "</div>";
    }
    html += figure(data_uri_png(dir / p.at("file").get<std::string>()), caption);
  }
  return html + "</div>\n";
}

// result.json folders: the folder itself, or its immediate subfolders.
std::vector<fs::path> infer_results(const fs::path& dir) {
  M2SA_CHECK(fs::is_directory(dir), dir.string(), ": not a folder (expected an `m2sa infer --out` folder)");
  if (fs::exists(dir / "result.json")) return {dir};
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "result.json")) found.push_back(e.path());
  std::sort(found.begin(), found.end());
  M2SA_CHECK(!found.empty(), dir.string(), ": holds no result.json (expected an `m2sa infer --out` folder)");
  return found;
}

std::string infer_gallery(const std::vector<fs::path>& dirs) {
  std::string html = "<h3>m2sa infer results</h3><div class=\"gallery\">\n";
  for (const fs::path& d : dirs) {
    const json r = read_json_file(d / "result.json");
    std::string caption = "<div class=\"file\">" + html_escape(d.string()) + "</div>" + text_line("Q:", r, "question") +
                          text_line("A:", r, "answer");
    const std::string overlay = r.value("overlay_file", "");
    const fs::path image = overlay.empty() ? fs::path() : d / overlay;
    html += image.empty() || !fs::exists(image) ? "<figure><figcaption>" + caption + " (no overlay)</figcaption></figure>\n"
                                                : figure(data_uri_png(image), caption);
  }
  return html + "</div>\n";
}

const char* const kStyle = R"(
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #ddd}
svg.chart text{font-size:11px;fill:#444}
table{border-collapse:collapse;margin:6px 12px 6px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}
td:first-child{text-align:left}caption{font-weight:600;text-align:left}
.cats{display:flex;flex-wrap:wrap}.note,.file{color:#777;font-size:12px}
pre{background:#f7f7f7;padding:8px;font-size:12px;max-height:480px;overflow:auto}
.gallery{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;max-width:820px}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px}
)";

// Once everything has loaded: what rendered, for a headless browser to read back.
const char* const kCheckScript = R"(<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('figure img'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  var lines = document.querySelectorAll('svg.chart polyline').length;
  document.body.setAttribute('data-rendered', 'charts=' + document.querySelectorAll('svg.chart').length +
    ' lines=' + lines + ' images=' + imgs.length + ' decoded=' + ok);
});
</script>)";

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_line_chart(const std::string& title, const std::vector<Series>& series, int width, int height) {
  const double left = 64, right = 12, top = 28, bottom = 40;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& s : series)
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) {
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  std::string svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
                    "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " +
                    std::to_string(height) + "\" role=\"img\" aria-label=\"" + html_escape(title) + "\">";
  svg += "<text x=\"" + num(left, 6) + "\" y=\"16\" style=\"font-size:13px;font-weight:600\">" + html_escape(title) +
         "</text>";
  if (!std::isfinite(x0)) return svg + "<text x=\"" + num(left, 6) + "\" y=\"60\">no data</text></svg>\n";
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) y0 -= std::abs(y0) * 0.1 + 1e-12, y1 += std::abs(y1) * 0.1 + 1e-12;
  const double pw = width - left - right, ph = height - top - bottom;
  auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return top + (y1 - y) / (y1 - y0) * ph; };
  // Axes and ticks.
  svg += "<rect x=\"" + num(left, 6) + "\" y=\"" + num(top, 6) + "\" width=\"" + num(pw, 6) + "\" height=\"" +
         num(ph, 6) + "\" fill=\"none\" stroke=\"#bbb\"/>";
  const double ys = tick_step(y1 - y0, 4);
  for (double y = std::ceil(y0 / ys) * ys; y <= y1 + ys * 1e-9; y += ys)
    svg += "<line x1=\"" + num(left, 6) + "\" x2=\"" + num(left + pw, 6) + "\" y1=\"" + num(sy(y), 6) + "\" y2=\"" +
           num(sy(y), 6) + "\" stroke=\"#eee\"/><text x=\"" + num(left - 4, 6) + "\" y=\"" + num(sy(y) + 4, 6) +
           "\" text-anchor=\"end\">" + num(std::abs(y) < ys * 1e-9 ? 0.0 : y, 3) + "</text>";
  const double xs = tick_step(x1 - x0, 5);
  for (double x = std::ceil(x0 / xs) * xs; x <= x1 + xs * 1e-9; x += xs)
    svg += "<text x=\"" + num(sx(x), 6) + "\" y=\"" + num(top + ph + 14, 6) + "\" text-anchor=\"middle\">" +
           num(x, 6) + "</text>";
  svg += "<text x=\"" + num(left + pw / 2, 6) + "\" y=\"" + num(height - 6.0, 6) + "\" text-anchor=\"middle\">step</text>";
  // Lines and legend.
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kSeriesColors[i % (sizeof kSeriesColors / sizeof kSeriesColors[0])];
    std::string pts;
    for (const auto& [x, y] : series[i].points)
      if (std::isfinite(x) && std::isfinite(y)) pts += num(sx(x), 6) + "," + num(sy(y), 6) + " ";
    svg += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"1.5\" points=\"" + pts +
           "\"><title>" + html_escape(series[i].name) + "</title></polyline>";
    if (series[i].points.size() == 1)
      svg += "<circle r=\"3\" fill=\"" + std::string(color) + "\" cx=\"" + num(sx(series[i].points[0].first), 6) +
             "\" cy=\"" + num(sy(series[i].points[0].second), 6) + "\"/>";
    const double lx = left + pw - 110, ly = top + 14 + 14 * static_cast<double>(i);
    svg += "<line x1=\"" + num(lx, 6) + "\" x2=\"" + num(lx + 16, 6) + "\" y1=\"" + num(ly - 4, 6) + "\" y2=\"" +
           num(ly - 4, 6) + "\" stroke=\"" + color + "\" stroke-width=\"2\"/><text x=\"" + num(lx + 20, 6) +
           "\" y=\"" + num(ly, 6) + "\">" + html_escape(series[i].name) + "</text>";
  }
  return svg + "</svg>\n";
}

std::string render_run_report(const ReportInputs& in) {
  const fs::path metrics = in.run_dir / "metrics.jsonl", config = in.run_dir / "train_config.json";
  std::vector<std::pair<fs::path, json>> reports;
  std::vector<fs::path> eval_files = in.eval_reports;
  if (fs::is_directory(in.run_dir / "eval")) {
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(in.run_dir / "eval"))
      if (e.path().extension() == ".json") found.push_back(e.path());
    std::sort(found.begin(), found.end());
    eval_files.insert(eval_files.begin(), found.begin(), found.end());
  }
  for (const fs::path& f : eval_files) reports.emplace_back(f, read_json_file(f));
  const std::vector<fs::path> steps = preview_steps(in.run_dir);
  std::vector<fs::path> infer_dirs;
  for (const fs::path& d : in.infer_dirs)
    for (const fs::path& r : infer_results(d)) infer_dirs.push_back(r);
  const bool have_run = fs::exists(metrics) || fs::exists(config) || !steps.empty();
  M2SA_CHECK(have_run || !reports.empty() || !infer_dirs.empty(), in.run_dir.string(),
             ": nothing to report (no metrics.jsonl, train_config.json, previews/ or eval/ here, and no --eval or "
             "--infer given)");

  const std::vector<json> lines = fs::exists(metrics) ? read_metrics(metrics) : std::vector<json>{};
  const std::string name = fs::absolute(in.run_dir).lexically_normal().filename().string();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));

  std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>m2sa report: " +
                     html_escape(name) + "</title><style>" + kStyle + "</style></head><body>\n";
  html += "<h1>m2sa run report: " + html_escape(name) + "</h1><p class=\"note\">" +
          html_escape(fs::absolute(in.run_dir).lexically_normal().string()) + " &middot; generated " + when + "</p>\n";
  int64_t last_step = 0;
  const json* last_val = nullptr;
  for (const json& l : lines) {
    last_step = std::max(last_step, l.value("step", int64_t{0}));
    if (l.value("type", "") == "val") last_val = &l;
  }
  if (!lines.empty()) {
    html += "<p>" + std::to_string(last_step) + " steps logged";
    if (last_val != nullptr)
      html += "; last validation (step " + std::to_string(last_val->value("step", int64_t{0})) + "): gIoU " +
              percent(last_val->value("giou", json())) + "%, cIoU " + percent(last_val->value("ciou", json())) + "%";
    html += "</p>\n" + charts_section(lines);
  }
  html += eval_section(reports);
  if (!steps.empty() || !infer_dirs.empty()) {
    html += "<section id=\"gallery\"><h2>Gallery</h2>\n";
    if (!steps.empty()) html += previews_gallery(steps.back());
    if (steps.size() > 1) html += previews_gallery(steps.front());
    if (!infer_dirs.empty()) html += infer_gallery(infer_dirs);
    html += "</section>\n";
  }
  if (fs::exists(config))
    html += "<section id=\"config\"><h2>Config</h2><pre>" + html_escape(read_json_file(config).dump(2)) +
            "</pre></section>\n";
  return html + kCheckScript + "</body></html>\n";
}

fs::path write_run_report(const ReportInputs& inputs, const fs::path& out) {
  const fs::path file = out.empty() ? inputs.run_dir / "report.html" : out;
  write_file_atomic(file, render_run_report(inputs));
  return file;
}

}  // namespace m2sa::report
