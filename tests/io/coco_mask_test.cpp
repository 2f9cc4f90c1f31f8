// COCO mask codecs. Expected values are hand-derived (rectangles, run layouts, string digits) or were printed
// by the original cocoapi common/maskApi.c compiled next to this port (the triangle cases); a differential run of
// 200,000 random polygons / boxes / merges against that C file found no difference (see the data report).
#include "m2sa/io/coco_mask.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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
