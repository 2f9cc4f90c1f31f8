#include "m2sa/vision/overlay.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::vision {
namespace {

// A non-constant test image, so that "unchanged" and "blended" are checked against varying values.
at::Tensor pattern_image(int64_t h, int64_t w) {
  at::Tensor img = at::empty({h, w, 3}, at::kByte);
  auto a = img.accessor<uint8_t, 3>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      a[y][x][0] = static_cast<uint8_t>((x * 7 + y * 3) % 256);
      a[y][x][1] = static_cast<uint8_t>((x * 5 + y * 11) % 256);
      a[y][x][2] = static_cast<uint8_t>((x + y) % 256);
    }
  return img;
}

at::Tensor box_mask(int64_t h, int64_t w, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  at::Tensor m = at::zeros({h, w}, at::kBool);
  m.narrow(0, y0, y1 - y0).narrow(1, x0, x1 - x0).fill_(true);
  return m;
}

// floor((1 - a) v + a c + 0.5), the documented fill rule.
uint8_t blend(uint8_t v, uint8_t c, double a = 0.5) {
  return static_cast<uint8_t>(std::floor((1 - a) * v + a * c + 0.5));
}

std::array<uint8_t, 3> pixel(const at::Tensor& img, int64_t y, int64_t x) {
  auto a = img.accessor<uint8_t, 3>();
  return {a[y][x][0], a[y][x][1], a[y][x][2]};
}

TEST(Overlay, FillContourLegendPixels) {
  const int64_t h = 200, w = 240;
  at::Tensor img = pattern_image(h, w);
  at::Tensor img_before = img.clone();
  // mask0: rows 60-119, cols 50-109; mask1: rows 90-149, cols 90-169 (overlaps mask0); mask2: empty.
  at::Tensor masks = at::stack({box_mask(h, w, 60, 120, 50, 110), box_mask(h, w, 90, 150, 90, 170),
                                at::zeros({h, w}, at::kBool)});
  std::vector<std::string> labels = {"the red mug",
                                     "a label far too long to fit in the legend box of a small image, cut short",
                                     "\xc3\x9c" "n" "\xc3\xaf" "code"};
  OverlayLayout layout;
  at::Tensor out = overlay_masks(img, masks, labels, {}, &layout);
  ASSERT_EQ(out.sizes(), img.sizes());
  EXPECT_TRUE(at::equal(img, img_before));  // input untouched
  const auto c0 = palette_color(0), c1 = palette_color(1), c2 = palette_color(2);
  EXPECT_EQ(layout.contour_thickness, 1);  // min(200, 240) / 200

  // Deep inside mask0 only: one blend with colour 0.
  auto in0 = pixel(img, 70, 60), got0 = pixel(out, 70, 60);
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(got0[ch], blend(in0[ch], c0[ch])) << "channel " << ch;
  // Deep inside the overlap: mask0's blend, then mask1's on top.
  auto inx = pixel(img, 100, 100), gotx = pixel(out, 100, 100);
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(gotx[ch], blend(blend(inx[ch], c0[ch]), c1[ch])) << "channel " << ch;
  // Deep inside mask1 only.
  auto in1 = pixel(img, 130, 150), got1 = pixel(out, 130, 150);
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(got1[ch], blend(in1[ch], c1[ch])) << "channel " << ch;
  // On mask0's top boundary: the contour, in colour 0.
  EXPECT_EQ(pixel(out, 60, 80), c0);
  EXPECT_EQ(pixel(out, 119, 70), c0);  // bottom boundary
  // Every pixel outside the masks and outside the legend box is unchanged (1-px contours lie inside the masks).
  at::Tensor outside = masks.any(0).logical_not();
  const Box& lg = layout.legend;
  ASSERT_FALSE(lg.empty());
  outside.narrow(0, lg.y, lg.height).narrow(1, lg.x, lg.width).fill_(false);
  at::Tensor changed = (out.to(at::kInt) - img.to(at::kInt)).abs().sum(2).gt(0);
  EXPECT_EQ((changed & outside).sum().item<int64_t>(), 0);
  EXPECT_GT(outside.sum().item<int64_t>(), h * w / 2);

  // Legend: top-left (no mask there), within the image and at most 60 % of the width.
  EXPECT_EQ(lg.x, 2);
  EXPECT_EQ(lg.y, 2);
  EXPECT_LE(lg.x + lg.width, w);
  EXPECT_LE(lg.width, static_cast<int>(0.6 * w));
  EXPECT_EQ(layout.shown_entries, 3);
  ASSERT_EQ(layout.swatches.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    const Box& s = layout.swatches[k];
    EXPECT_TRUE(lg.contains(s.x, s.y) && lg.contains(s.x + s.width - 1, s.y + s.height - 1));
    EXPECT_EQ(pixel(out, s.y + s.height / 2, s.x + s.width / 2), palette_color(static_cast<int64_t>(k)));
  }
  EXPECT_EQ(pixel(out, layout.swatches[2].y, layout.swatches[2].x), c2);
  // Background: the corner pixel is darkened to floor(0.35 v + 0.5).
  auto bg_in = pixel(img, lg.y, lg.x), bg = pixel(out, lg.y, lg.x);
  for (int ch = 0; ch < 3; ++ch)
    EXPECT_EQ(bg[ch], static_cast<uint8_t>(std::floor(0.35 * bg_in[ch] + 0.5))) << "channel " << ch;
  // Text: in every line, right of the swatch, pixels brighter than the darkened background (white text).
  at::Tensor darkened = (img.to(at::kDouble) * 0.35 + 0.5).floor().to(at::kInt);
  for (size_t k = 0; k < 3; ++k) {
    const Box& s = layout.swatches[k];
    const int64_t x0 = s.x + s.width + 2, len = lg.x + lg.width - x0;
    at::Tensor brighter = out.narrow(0, s.y, s.height).narrow(1, x0, len).to(at::kInt) -
                          darkened.narrow(0, s.y, s.height).narrow(1, x0, len);
    EXPECT_GT(brighter.amin(2).gt(40).sum().item<int64_t>(), 5) << "no text in legend line " << k;
  }
}

TEST(Overlay, ManyTargetsAndSmallImages) {
  // 30 targets on 64 x 64: the lines shrink to the 10-px minimum, 5 fit: 4 entries and "+26 more".
  const int64_t h = 64, w = 64;
  std::vector<at::Tensor> list;
  std::vector<std::string> labels;
  for (int64_t k = 0; k < 30; ++k) {
    list.push_back(box_mask(h, w, 20 + (k / 6) * 8, 22 + (k / 6) * 8, 10 + (k % 6) * 8, 12 + (k % 6) * 8));
    labels.push_back("target " + std::to_string(k));
  }
  OverlayLayout layout;
  at::Tensor out = overlay_masks(pattern_image(h, w), at::stack(list), labels, {}, &layout);
  EXPECT_EQ(layout.line_height, 10);
  EXPECT_EQ(layout.shown_entries, 4);
  EXPECT_EQ(layout.swatches.size(), 4u);
  EXPECT_LE(layout.legend.y + layout.legend.height, h);
  EXPECT_LE(layout.legend.x + layout.legend.width, w);
  // The colours of targets past the palette's 20 stay distinct from their neighbours.
  for (int64_t k = 1; k < 60; ++k) {
    auto a = palette_color(k - 1), b = palette_color(k);
    const int d = std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]);
    EXPECT_GT(d, 60) << "palette colours " << k - 1 << " and " << k;
  }
  // 8 x 8: no room for a legend, the fill is still drawn.
  at::Tensor tiny = pattern_image(8, 8);
  at::Tensor m = box_mask(8, 8, 2, 6, 2, 6).unsqueeze(0);
  OverlayLayout tl;
  OverlayOptions no_contour;
  no_contour.contour_thickness = -1;
  at::Tensor t = overlay_masks(tiny, m, {"x"}, no_contour, &tl);
  EXPECT_TRUE(tl.legend.empty());
  EXPECT_EQ(tl.contour_thickness, 0);
  EXPECT_EQ(pixel(t, 2, 2)[0], blend(pixel(tiny, 2, 2)[0], palette_color(0)[0]));
  EXPECT_EQ(pixel(t, 0, 0), pixel(tiny, 0, 0));
  // A large image gets a larger legend font; the legend avoids the corner covered by a mask.
  at::Tensor big = pattern_image(400, 400);
  OverlayLayout bl;
  overlay_masks(big, box_mask(400, 400, 0, 100, 0, 200).unsqueeze(0), {"top-left object"}, {}, &bl);
  EXPECT_EQ(bl.line_height, 20);
  EXPECT_GT(bl.legend.x, 200);  // top-right corner, the top-left one is covered
  EXPECT_EQ(bl.legend.y, 5);
}

TEST(Overlay, NoMasksAndBadInputs) {
  at::Tensor img = pattern_image(10, 12);
  EXPECT_TRUE(at::equal(overlay_masks(img, at::zeros({0, 10, 12}, at::kBool), {}), img));
  EXPECT_NE(test::m2sa_error_of([&] { overlay_masks(img, at::zeros({1, 10, 11}, at::kBool), {}); }).find("to match the image"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { overlay_masks(img, at::zeros({1, 10, 12}), {}); }).find("threshold logits first"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { overlay_masks(img, at::zeros({2, 10, 12}, at::kBool), {"one"}); }).find("1 labels for 2"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { overlay_masks(img.to(at::kFloat), at::zeros({1, 10, 12}, at::kBool), {}); })
                .find("uint8 [H, W, 3]"),
            std::string::npos);
  OverlayOptions bad;
  bad.alpha = 1.5;
  EXPECT_NE(test::m2sa_error_of([&] { overlay_masks(img, at::zeros({1, 10, 12}, at::kBool), {}, bad); }).find("alpha"),
            std::string::npos);
  EXPECT_EQ(palette_color(0), (std::array<uint8_t, 3>{230, 25, 75}));
  EXPECT_THROW(palette_color(-1), Error);
}

}  // namespace
}  // namespace m2sa::vision
