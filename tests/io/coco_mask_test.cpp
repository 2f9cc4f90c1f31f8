// COCO mask codecs. Expected values are hand-derived (rectangles, run layouts, string digits) or were printed
// by the original cocoapi common/maskApi.c compiled next to this port (the triangle cases); a differential run of
// 200,000 random polygons / boxes / merges against that C file found no difference (see the data report).
#include "m2sa/io/coco_mask.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa {
namespace {

using nlohmann::json;

at::Tensor mask_from_rows(const std::vector<std::vector<int>>& rows) {
  at::Tensor m = at::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kByte);
  for (std::size_t y = 0; y < rows.size(); ++y)
    for (std::size_t x = 0; x < rows[y].size(); ++x) m[y][x] = rows[y][x];
  return m;
}

TEST(CocoMask, CountsStringKnownValues) {
  // Runs 0..2 are written as they are; from run 3 on, the difference to the run two back.
  // [6, 2, 3, 2, 12] -> '6' '2' '3' (2-2=0)'0' (12-3=9)'9'.
  EXPECT_EQ(coco::counts_to_string({6, 2, 3, 2, 12}), "62309");
  // A negative difference: 2-4 = -2 -> low 5 bits 30, sign bit set, no continuation -> 30+48 = 'N'; 17-2 = 15 -> '?'.
  EXPECT_EQ(coco::counts_to_string({5, 4, 2, 2, 17}), "542N?");
  // 1000 = 8 + 31*32: '8'|0x20 -> 'X'; 31 has bit 4 set so another char follows: 31|0x20 -> 'o'; then '0'.
  EXPECT_EQ(coco::counts_to_string({1000}), "Xo0");
  EXPECT_EQ(coco::counts_to_string({0, 4}), "04");
  for (const auto& c : std::vector<std::vector<uint32_t>>{{6, 2, 3, 2, 12}, {5, 4, 2, 2, 17}, {1000}, {0, 4},
                                                         {0, 1, 70000, 3, 2, 123456, 1}})
    EXPECT_EQ(coco::counts_from_string(coco::counts_to_string(c)), c);
}

TEST(CocoMask, DecodeIsColumnMajor) {
  // h=2, w=3, runs 1 zero, 2 ones, 3 zeros in column-major order: (y0,x0)=0 (y1,x0)=1 (y0,x1)=1, rest 0.
  coco::Rle r{2, 3, {1, 2, 3}};
  at::Tensor m = coco::decode(r);
  EXPECT_TRUE(at::equal(m, mask_from_rows({{0, 1, 0}, {1, 0, 0}})));
  EXPECT_EQ(coco::encode(m), r);
  EXPECT_EQ(coco::area(r), 2u);
  auto bb = coco::bbox(r);
  EXPECT_EQ(bb, (std::array<double, 4>{0, 0, 2, 2}));
  // A mask starting with foreground has a zero first run.
  at::Tensor full = at::ones({2, 2}, at::kByte);
  EXPECT_EQ(coco::encode(full).counts, (std::vector<uint32_t>{0, 4}));
  EXPECT_TRUE(at::equal(coco::decode(coco::encode(full)), full));
}

TEST(CocoMask, PolygonRectanglesAreHalfOpen) {
  // An axis-aligned rectangle with integer corners covers pixels x0..x1-1, y0..y1-1.
  for (auto [x0, y0, x1, y1] : std::vector<std::array<int, 4>>{{1, 1, 3, 3}, {0, 0, 4, 4}, {2, 1, 5, 6}, {0, 2, 7, 3}}) {
    const int64_t h = 8, w = 7;
    coco::Rle r = coco::from_polygon({double(x0), double(y0), double(x1), double(y0), double(x1), double(y1),
                                      double(x0), double(y1)},
                                     h, w);
    at::Tensor expected = at::zeros({h, w}, at::kByte);
    expected.slice(0, y0, y1).slice(1, x0, std::min<int64_t>(x1, w)).fill_(1);
    EXPECT_TRUE(at::equal(coco::decode(r), expected)) << x0 << "," << y0 << "," << x1 << "," << y1;
    EXPECT_EQ(coco::area(r), static_cast<uint64_t>((y1 - y0) * (std::min(x1, 7) - x0)));
  }
  // [1,1,3,1,3,3,1,3] on 5x5: maskApi.c gives counts 6,2,3,2,12 = string "62309".
  EXPECT_EQ(coco::from_polygon({1, 1, 3, 1, 3, 3, 1, 3}, 5, 5).counts, (std::vector<uint32_t>{6, 2, 3, 2, 12}));
  // A polygon beyond the image is clipped: all 12 pixels of a 4x3 image.
  EXPECT_EQ(coco::from_polygon({-2, -2, 10, -2, 10, 10, -2, 10}, 4, 3).counts, (std::vector<uint32_t>{0, 12}));
}

TEST(CocoMask, PolygonTrianglesMatchMaskApi) {
  // Outputs of cocoapi maskApi.c rleFrPoly for the same inputs.
  EXPECT_EQ(coco::from_polygon({0.5, 0.5, 3.5, 0.5, 2, 3.5}, 5, 5).counts, (std::vector<uint32_t>{6, 1, 4, 2, 12}));
  EXPECT_EQ(coco::from_polygon({1, 0, 4, 2, 1, 4}, 5, 6).counts, (std::vector<uint32_t>{5, 4, 2, 2, 17}));
  coco::Rle tri = coco::from_polygon({0, 0, 6, 0, 0, 6}, 7, 7);
  EXPECT_EQ(tri.counts, (std::vector<uint32_t>{0, 5, 2, 4, 3, 3, 4, 2, 5, 1, 20}));
  EXPECT_EQ(coco::counts_to_string(tri.counts), "052O1O1O1O?");
  // Decoded: column x holds rows 0 .. 4-x (a staircase of 5+4+3+2+1 = 15 pixels).
  at::Tensor m = coco::decode(tri);
  EXPECT_EQ(m.sum().item<int64_t>(), 15);
  for (int x = 0; x < 5; ++x) EXPECT_EQ(m.select(1, x).sum().item<int64_t>(), 5 - x);
  // An odd trailing coordinate is ignored, like pycocotools int(len(p)/2).
  EXPECT_EQ(coco::from_polygon({0, 0, 6, 0, 0, 6, 99}, 7, 7), tri);
}

TEST(CocoMask, MergeAreaBbox) {
  coco::Rle a = coco::from_polygon({0, 0, 2, 0, 2, 2, 0, 2}, 4, 4);  // pixels x,y in 0..1
  coco::Rle b = coco::from_polygon({1, 1, 3, 1, 3, 3, 1, 3}, 4, 4);  // pixels x,y in 1..2
  at::Tensor u = coco::decode(coco::merge({a, b}));
  at::Tensor i = coco::decode(coco::merge({a, b}, /*intersect=*/true));
  EXPECT_TRUE(at::equal(u, mask_from_rows({{1, 1, 0, 0}, {1, 1, 1, 0}, {0, 1, 1, 0}, {0, 0, 0, 0}})));
  EXPECT_TRUE(at::equal(i, mask_from_rows({{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}})));
  EXPECT_EQ(coco::area(coco::merge({a, b})), 7u);
  EXPECT_EQ(coco::bbox(coco::merge({a, b})), (std::array<double, 4>{0, 0, 3, 3}));
  EXPECT_EQ(coco::bbox(coco::Rle{3, 3, {9}}), (std::array<double, 4>{0, 0, 0, 0}));
  // A run spanning two columns makes the bbox span all rows (maskApi.c rleToBbox).
  EXPECT_EQ(coco::bbox(coco::Rle{3, 2, {2, 2, 2}}), (std::array<double, 4>{0, 0, 2, 3}));
  EXPECT_NE(test::m2sa_error_of([&] { coco::merge({a, coco::Rle{2, 8, {16}}}); }).find("input 1 is 2x8"), std::string::npos);
}

// maskApi.c rleFrPoly ported line by line (the port m2sa used before it bounded the walk by the image): the
// reference for polygons with moderate coordinates.
std::vector<uint32_t> mask_api_rle_fr_poly(const std::vector<double>& xy, int h, int w) {
  const int k0 = static_cast<int>(xy.size() / 2);
  int k = k0, j, m = 0;
  const double scale = 5;
  std::vector<int> x(k + 1), y(k + 1);
  for (j = 0; j < k; j++) x[j] = static_cast<int>(scale * xy[j * 2 + 0] + .5);
  x[k] = x[0];
  for (j = 0; j < k; j++) y[j] = static_cast<int>(scale * xy[j * 2 + 1] + .5);
  y[k] = y[0];
  for (j = 0; j < k; j++) m += std::max(std::abs(x[j] - x[j + 1]), std::abs(y[j] - y[j + 1])) + 1;
  std::vector<int> u(m), v(m);
  m = 0;
  for (j = 0; j < k; j++) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1], dx, dy, t, d;
    dx = std::abs(xe - xs);
    dy = std::abs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) {
      t = xs; xs = xe; xe = t;
      t = ys; ys = ye; ye = t;
    }
    const double s = dx >= dy ? static_cast<double>(ye - ys) / dx : static_cast<double>(xe - xs) / dy;
    if (dx >= dy)
      for (d = 0; d <= dx; d++) {
        t = flip ? dx - d : d;
        u[m] = t + xs;
        v[m] = static_cast<int>(ys + s * t + .5);
        m++;
      }
    else
      for (d = 0; d <= dy; d++) {
        t = flip ? dy - d : d;
        v[m] = t + ys;
        u[m] = static_cast<int>(xs + s * t + .5);
        m++;
      }
  }
  k = m;
  m = 0;
  std::vector<int> bx(k), by(k);
  for (j = 1; j < k; j++)
    if (u[j] != u[j - 1]) {
      double xd = static_cast<double>(u[j] < u[j - 1] ? u[j] : u[j] - 1);
      xd = (xd + .5) / scale - .5;
      if (std::floor(xd) != xd || xd < 0 || xd > w - 1) continue;
      double yd = static_cast<double>(v[j] < v[j - 1] ? v[j] : v[j - 1]);
      yd = (yd + .5) / scale - .5;
      if (yd < 0) yd = 0;
      else if (yd > h) yd = h;
      yd = std::ceil(yd);
      bx[m] = static_cast<int>(xd);
      by[m] = static_cast<int>(yd);
      m++;
    }
  k = m;
  std::vector<uint32_t> a(k + 1);
  for (j = 0; j < k; j++) a[j] = static_cast<uint32_t>(bx[j] * h + by[j]);
  a[k++] = static_cast<uint32_t>(h * w);
  std::sort(a.begin(), a.begin() + k);
  uint32_t p = 0;
  for (j = 0; j < k; j++) {
    const uint32_t t = a[j];
    a[j] -= p;
    p = t;
  }
  std::vector<uint32_t> counts;
  j = 0;
  counts.push_back(a[j++]);
  while (j < k)
    if (a[j] > 0) {
      counts.push_back(a[j++]);
    } else {
      j++;
      if (j < k) counts.back() += a[j++];
    }
  return counts;
}

TEST(CocoMask, PolygonsFarOutsideTheImageMatchMaskApi) {
  // Random polygons with vertices inside, around and far outside small images (steep and shallow edges that
  // leave the image on every side): the walk bounded by the image gives maskApi.c's counts exactly.
  std::mt19937 rng(18);
  for (int trial = 0; trial < 20000; ++trial) {
    const int h = 1 + static_cast<int>(rng() % 12), w = 1 + static_cast<int>(rng() % 12);
    const double reach = trial % 3 == 0 ? 2.0 : trial % 3 == 1 ? 6.0 : 60.0;
    std::uniform_real_distribution<double> px(-reach * w, (1 + reach) * w), py(-reach * h, (1 + reach) * h);
    std::vector<double> xy;
    const int n = 1 + static_cast<int>(rng() % 7);
    for (int i = 0; i < n; ++i) {
      // Integers, halves and arbitrary values: exact vertices exercise the ties of the rounding.
      const int kind = static_cast<int>(rng() % 3);
      double vx = px(rng), vy = py(rng);
      if (kind == 0) vx = std::round(vx), vy = std::round(vy);
      if (kind == 1) vx = std::round(vx * 2) / 2, vy = std::round(vy * 2) / 2;
      xy.push_back(vx);
      xy.push_back(vy);
    }
    ASSERT_EQ(coco::from_polygon(xy, h, w).counts, mask_api_rle_fr_poly(xy, h, w))
        << "trial " << trial << ", " << h << "x" << w << ", polygon " << json(xy).dump();
  }
}

TEST(CocoMask, HugePolygonsAreClippedToTheImage) {
  // A square of side 2e7 (maskApi.c walks 4e8 points, 3.2 GB) around a 7x5 image covers all of it, and a
  // triangle with far vertices covers the same pixels as its part in the image. Near the 1e8 coordinate limit.
  EXPECT_EQ(coco::from_polygon({-9.9e7, -9.9e7, 9.9e7, -9.9e7, 9.9e7, 9.9e7, -9.9e7, 9.9e7}, 7, 5).counts,
            (std::vector<uint32_t>{0, 35}));
  EXPECT_EQ(coco::from_polygon({0, 0, 9e7, 0, 0, 9e7}, 6, 6), coco::from_polygon({0, 0, 12, 0, 0, 12}, 6, 6));
  EXPECT_EQ(coco::from_polygon({0, -9e7, 4, -9e7, 4, 9e7, 0, 9e7}, 5, 8).counts,
            (std::vector<uint32_t>{0, 20, 20}));
  // A bx * h + by past 2^31 (a 60000 x 60000 image) and an image whose h * w does not fit 32-bit counts.
  const int64_t side = 60000;
  coco::Rle r = coco::from_polygon({side - 1.0, side - 1.0, double(side), side - 1.0, double(side), double(side),
                                    side - 1.0, double(side)},
                                   side, side);
  EXPECT_EQ(r.counts, (std::vector<uint32_t>{uint32_t(side * side - 1), 1}));
  const std::string err = test::m2sa_error_of([] { coco::from_polygon({0, 0, 1, 0, 1, 1}, 70000, 70000); });
  EXPECT_NE(err.find("too large for COCO RLE"), std::string::npos) << err;
}

TEST(CocoMask, BboxIsAPolygon) {
  EXPECT_EQ(coco::from_bbox({1, 1, 2, 2}, 5, 5).counts, (std::vector<uint32_t>{6, 2, 3, 2, 12}));
}

TEST(CocoMask, AnnToMaskAllSegmentationForms) {
  const int64_t h = 5, w = 5;
  at::Tensor expected = at::zeros({h, w}, at::kByte);
  expected.slice(0, 1, 3).slice(1, 1, 3).fill_(1);
  // polygons (two parts, merged)
  json poly = json::parse("[[1,1,3,1,3,3,1,3],[1,1,2,1,2,2,1,2]]");
  EXPECT_TRUE(at::equal(coco::ann_to_mask(poly, h, w, "a"), expected));
  // compressed RLE
  json rle = {{"size", {5, 5}}, {"counts", "62309"}};
  EXPECT_TRUE(at::equal(coco::ann_to_mask(rle, h, w, "a"), expected));
  // uncompressed RLE
  json urle = {{"size", {5, 5}}, {"counts", {6, 2, 3, 2, 12}}};
  EXPECT_TRUE(at::equal(coco::ann_to_mask(urle, h, w, "a"), expected));
  // list of RLE dicts (refer datasets), merged
  json rles = json::array({rle, {{"size", {5, 5}}, {"counts", {0, 1, 24}}}});
  at::Tensor with_corner = expected.clone();
  with_corner[0][0] = 1;
  EXPECT_TRUE(at::equal(coco::ann_to_mask(rles, h, w, "a"), with_corner));
  EXPECT_EQ(coco::rle_to_json(coco::encode(expected)), rle);
}

TEST(CocoMask, BadInputGivesClearErrors) {
  EXPECT_NE(test::m2sa_error_of([] { coco::counts_from_string("62 09", "ann 7"); }).find("ann 7: compressed RLE string has character ' ' at position 2"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::counts_from_string("6X", "x"); }).find("ends inside a value"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::counts_from_string("0N", "x"); }).find("is -2"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::decode(coco::Rle{5, 5, {6, 2, 3}}); }).find("cover 11 pixels but its size [5, 5] has 25"),
            std::string::npos);
  json rle = {{"size", {5, 5}}, {"counts", "62309"}};
  EXPECT_NE(test::m2sa_error_of([&] { coco::ann_to_mask(rle, 6, 5, "MMR_val.json: entry 3: answers[0][1]"); })
                .find("MMR_val.json: entry 3: answers[0][1]: mask size 5x5 (h x w) disagrees with the image size 6x5"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::parse("[[1,2,3,4]]"), 5, 5, "a"); }).find("only 4 numbers"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::array(), 5, 5, "a"); }).find("empty list"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::parse("[[1,1,3,1,3,3],[1]]"), 5, 5, "a"); }).find("polygon 1 has 1 numbers"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::parse("{\"size\":[5,5]}"), 5, 5, "a"); }).find("needs \"size\" and \"counts\""),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::parse("{\"size\":[5,5],\"counts\":[25,-1]}"), 5, 5, "a"); })
                .find("counts[1] = -1"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { coco::ann_to_mask(json::parse("[[1,1,3,1,\"a\",3]]"), 5, 5, "a"); }).find("non-number"),
            std::string::npos);
}

}  // namespace
}  // namespace m2sa
