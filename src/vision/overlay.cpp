#include "m2sa/vision/overlay.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "m2sa/core/error.h"

namespace m2sa::vision {

namespace {

// "20 simple distinct colours" (Trubetskoy), reordered so that the first entries are the strongest hues and
// the pastels (poor on top of photographs) come last.
constexpr uint8_t kPalette[20][3] = {
    {230, 25, 75},   {60, 180, 75},   {67, 99, 216},   {255, 225, 25},  {245, 130, 49},
    {145, 30, 180},  {66, 212, 244},  {240, 50, 230},  {191, 239, 69},  {70, 153, 144},
    {128, 0, 0},     {0, 0, 117},     {128, 128, 0},   {154, 99, 36},   {250, 190, 212},
    {170, 255, 195}, {255, 216, 177}, {220, 190, 255}, {255, 250, 200}, {169, 169, 169}};

uint8_t round_u8(double v) { return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0)); }

// Printable ASCII only (Hershey fonts have nothing else): a UTF-8 sequence becomes one '?', controls a space.
std::string sanitize_label(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else if ((c & 0xC0) == 0x80) continue;  // UTF-8 continuation byte
    else if (c >= 0x80) out += '?';
    else out += ' ';
  }
  return out;
}

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

int text_width(const std::string& t, double scale, int thickness) {
  int baseline = 0;
  return cv::getTextSize(t, kFont, scale, thickness, &baseline).width;
}

// Cuts `t` (keeping its start) and appends "..." until it fits in `max_width` px.
std::string fit_text(const std::string& t, double scale, int thickness, int max_width) {
  if (text_width(t, scale, thickness) <= max_width) return t;
  // Start from a proportional guess, then step.
  size_t n = std::min(t.size(), static_cast<size_t>(static_cast<double>(t.size()) * max_width /
                                                    std::max(1, text_width(t, scale, thickness))) + 1);
  while (n > 0 && text_width(t.substr(0, n) + "...", scale, thickness) > max_width) --n;
  while (n + 1 < t.size() && text_width(t.substr(0, n + 1) + "...", scale, thickness) <= max_width) ++n;
  return n == 0 ? std::string() : t.substr(0, n) + "...";
}

void draw_legend(cv::Mat& img, const cv::Mat& any_mask, int64_t n, const std::vector<std::string>& labels,
                 const OverlayOptions& opt, OverlayLayout& layout) {
  const int h = img.rows, w = img.cols;
  int line_h = std::clamp(std::min(h, w) / 20, 10, 28);
  auto margin_of = [](int lh) { return std::max(1, lh / 4); };
  auto pad_of = [](int lh) { return std::max(2, lh / 5); };
  // Shrink the lines (down to 10 px) until every entry fits the height.
  if (2 * margin_of(line_h) + 2 * pad_of(line_h) + static_cast<int64_t>(line_h) * n > h)
    line_h = std::max(10, static_cast<int>((h - 2 * margin_of(10) - 2 * pad_of(10)) / std::max<int64_t>(n, 1)));
  const int margin = margin_of(line_h), pad = pad_of(line_h);
  const int rows_fit = (h - 2 * margin - 2 * pad) / line_h;
  if (rows_fit < 1) return;  // image too small for even one line
  const bool more = n > rows_fit;
  const int64_t shown = more ? rows_fit - 1 : n;

  int baseline = 0;
  const int ref_h = cv::getTextSize("Ag", kFont, 1.0, 1, &baseline).height;
  const double scale = 0.6 * line_h / ref_h;
  const int thick = scale >= 1.2 ? 2 : 1;
  const int text_h = cv::getTextSize("Ag", kFont, scale, thick, &baseline).height;
  const int swatch = std::max(4, static_cast<int>(line_h * 0.7));
  const int text_x = pad + swatch + pad;
  const int max_box_w = std::min(w - 2 * margin, static_cast<int>(w * opt.legend_max_width));
  const int max_text_w = max_box_w - text_x - pad;
  if (max_text_w < 4) return;  // no room for text next to the swatches

  std::vector<std::string> lines;
  for (int64_t k = 0; k < shown; ++k) {
    std::string t = std::to_string(k);
    if (!labels.empty() && !labels[static_cast<size_t>(k)].empty())
      t += ": " + sanitize_label(labels[static_cast<size_t>(k)]);
    lines.push_back(fit_text(t, scale, thick, max_text_w));
  }
  if (more) lines.push_back(fit_text("+" + std::to_string(n - shown) + " more", scale, thick, max_text_w));
  int widest = 0;
  for (const std::string& t : lines) widest = std::max(widest, text_width(t, scale, thick));
  const int box_w = std::min(max_box_w, text_x + widest + pad);
  const int box_h = 2 * pad + static_cast<int>(lines.size()) * line_h;

  // The corner whose box covers the fewest mask pixels.
  const cv::Point corners[4] = {{margin, margin}, {w - margin - box_w, margin}, {margin, h - margin - box_h},
                                {w - margin - box_w, h - margin - box_h}};
  int best = 0, best_count = -1;
  for (int c = 0; c < 4; ++c) {
    const int count = cv::countNonZero(any_mask(cv::Rect(corners[c].x, corners[c].y, box_w, box_h)));
    if (best_count < 0 || count < best_count) {
      best = c;
      best_count = count;
    }
  }
  const cv::Rect box(corners[best].x, corners[best].y, box_w, box_h);

  // Darkened background.
  uint8_t lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = round_u8(v * opt.legend_darken);
  for (int y = box.y; y < box.y + box.height; ++y) {
    uint8_t* row = img.ptr<uint8_t>(y);
    for (int x = box.x * 3; x < (box.x + box.width) * 3; ++x) row[x] = lut[row[x]];
  }

  layout.legend = {box.x, box.y, box.width, box.height};
  layout.line_height = line_h;
  layout.shown_entries = shown;
  for (size_t i = 0; i < lines.size(); ++i) {
    const int y0 = box.y + pad + static_cast<int>(i) * line_h;
    if (static_cast<int64_t>(i) < shown) {
      const auto c = palette_color(static_cast<int64_t>(i));
      const cv::Rect sw(box.x + pad, y0 + (line_h - swatch) / 2, swatch, swatch);
      cv::rectangle(img, cv::Rect(sw.x - 1, sw.y - 1, sw.width + 2, sw.height + 2), cv::Scalar(230, 230, 230), 1,
                    cv::LINE_8);
      cv::rectangle(img, sw, cv::Scalar(c[0], c[1], c[2]), cv::FILLED, cv::LINE_8);
      layout.swatches.push_back({sw.x, sw.y, sw.width, sw.height});
    }
    const int text_baseline = y0 + (line_h + text_h) / 2;
    // Clip the text to the box: draw into the box's region only.
    cv::Mat roi = img(box);
    cv::putText(roi, lines[i], cv::Point(text_x, text_baseline - box.y), kFont, scale, cv::Scalar(255, 255, 255),
                thick, cv::LINE_AA);
  }
}

}  // namespace

std::array<uint8_t, 3> palette_color(int64_t index) {
  M2SA_CHECK(index >= 0, "palette_color: index must be >= 0, got ", index);
  if (index < 20) return {kPalette[index][0], kPalette[index][1], kPalette[index][2]};
  // Golden-angle walk around the hue circle, alternating brightness.
  const double hue = std::fmod(15.0 + 137.50776405 * static_cast<double>(index - 20), 360.0);
  const double s = 0.8, v = (index % 2) ? 0.95 : 0.75;
  const double c = v * s, hp = hue / 60.0, x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1)), m = v - c;
  double r = 0, g = 0, b = 0;
  if (hp < 1) r = c, g = x;
  else if (hp < 2) r = x, g = c;
  else if (hp < 3) g = c, b = x;
  else if (hp < 4) g = x, b = c;
  else if (hp < 5) r = x, b = c;
  else r = c, b = x;
  return {round_u8((r + m) * 255), round_u8((g + m) * 255), round_u8((b + m) * 255)};
}

at::Tensor overlay_masks(const at::Tensor& rgb, const at::Tensor& masks, const std::vector<std::string>& labels,
                         const OverlayOptions& opt, OverlayLayout* layout_out) {
  M2SA_CHECK(rgb.defined() && rgb.scalar_type() == at::kByte && rgb.dim() == 3 && rgb.size(2) == 3,
             "overlay_masks: image must be uint8 [H, W, 3], got ",
             rgb.defined() ? c10::str(rgb.scalar_type(), " ", rgb.sizes()) : std::string("undefined"));
  M2SA_CHECK(masks.defined() && masks.dim() == 3 && masks.size(1) == rgb.size(0) && masks.size(2) == rgb.size(1),
             "overlay_masks: masks must be [N, ", rgb.size(0), ", ", rgb.size(1), "] to match the image, got ",
             masks.defined() ? c10::str(masks.sizes()) : std::string("undefined"));
  M2SA_CHECK(masks.scalar_type() == at::kBool || at::isIntegralType(masks.scalar_type(), false),
             "overlay_masks: masks must be bool or integer, got ", masks.scalar_type(),
             " (threshold logits first: logits > 0)");
  const int64_t n = masks.size(0);
  M2SA_CHECK(labels.empty() || static_cast<int64_t>(labels.size()) == n, "overlay_masks: got ", labels.size(),
             " labels for ", n, " masks (expected one per mask, or none)");
  M2SA_CHECK(opt.alpha >= 0 && opt.alpha <= 1, "overlay_masks: alpha must be in [0, 1], got ", opt.alpha);
  M2SA_CHECK(opt.legend_max_width > 0 && opt.legend_max_width <= 1,
             "overlay_masks: legend_max_width must be in (0, 1], got ", opt.legend_max_width);
  M2SA_CHECK(opt.legend_darken >= 0 && opt.legend_darken <= 1, "overlay_masks: legend_darken must be in [0, 1], got ",
             opt.legend_darken);
  const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
  M2SA_CHECK(rgb.size(0) <= 1 << 15 && rgb.size(1) <= 1 << 15, "overlay_masks: image of ", rgb.size(1), "x",
             rgb.size(0), " is too large (at most 32768 per side)");

  at::Tensor out = rgb.to(at::kCPU).contiguous().clone();  // [H, W, 3], RGB
  OverlayLayout layout;
  if (n == 0 || h == 0 || w == 0) {
    if (layout_out) *layout_out = layout;
    return out;
  }
  // One-byte masks are read in place (nonzero = inside); wider integers are converted once. Large fresh
  // allocations are slow on some machines (page faults), so nothing else of size N x H x W is allocated.
  at::Tensor m = masks.to(at::kCPU);
  m = (m.scalar_type() == at::kBool || m.scalar_type() == at::kByte) ? m.contiguous() : m.ne(0).contiguous();
  const uint8_t* mask_bytes = static_cast<const uint8_t*>(m.data_ptr());
  cv::Mat img(h, w, CV_8UC3, out.data_ptr<uint8_t>());  // channel order RGB throughout
  cv::Mat any_mask = cv::Mat::zeros(h, w, CV_8UC1);     // union of the masks (legend placement)
  const size_t plane = static_cast<size_t>(h) * static_cast<size_t>(w);

  // Fills, in index order; remember each mask's bounding box for the contour search.
  std::vector<cv::Rect> bbox(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const auto c = palette_color(k);
    uint8_t lut[3][256];
    for (int ch = 0; ch < 3; ++ch)
      for (int v = 0; v < 256; ++v) lut[ch][v] = round_u8((1.0 - opt.alpha) * v + opt.alpha * c[ch]);
    const uint8_t* mk = mask_bytes + static_cast<size_t>(k) * plane;
    uint8_t* px = out.data_ptr<uint8_t>();
    uint8_t* any = any_mask.ptr<uint8_t>();
    int y0 = h, y1 = -1, x0 = w, x1 = -1;
    for (int y = 0; y < h; ++y) {
      const size_t row = static_cast<size_t>(y) * static_cast<size_t>(w);
      for (int x = 0; x < w; ++x) {
        const size_t i = row + static_cast<size_t>(x);
        if (!mk[i]) continue;
        for (int ch = 0; ch < 3; ++ch) px[3 * i + ch] = lut[ch][px[3 * i + ch]];
        any[i] = 1;
        y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
      }
    }
    bbox[static_cast<size_t>(k)] = y1 < 0 ? cv::Rect() : cv::Rect(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }

  // Contours, after all fills so that they stay crisp. Searched inside each mask's bounding box only (OpenCV
  // pads the region with zeros, which is exactly what surrounds the box).
  const int thickness = opt.contour_thickness == 0 ? std::max(1, std::min(h, w) / 200) : opt.contour_thickness;
  layout.contour_thickness = std::max(0, thickness);
  if (thickness > 0) {
    for (int64_t k = 0; k < n; ++k) {
      const cv::Rect& box = bbox[static_cast<size_t>(k)];
      if (box.empty()) continue;
      cv::Mat mk(h, w, CV_8UC1, const_cast<uint8_t*>(mask_bytes) + static_cast<size_t>(k) * plane);
      std::vector<std::vector<cv::Point>> contours;
      cv::findContours(mk(box), contours, cv::RETR_LIST, cv::CHAIN_APPROX_NONE, box.tl());
      const auto c = palette_color(k);
      cv::drawContours(img, contours, -1, cv::Scalar(c[0], c[1], c[2]), thickness, cv::LINE_8);
    }
  }

  if (opt.legend) draw_legend(img, any_mask, n, labels, opt, layout);
  if (layout_out) *layout_out = layout;
  return out;
}

}  // namespace m2sa::vision
