// The LLaVA splice and the [SEG] bookkeeping on hand-built tensors (spec 1.5, 1.6).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/models/m2sa/m2sa_config.h"
#include "m2sa/models/m2sa/multimodal.h"
#include "test_util.h"

namespace m2sa::m2sa_model {
namespace {


constexpr int64_t kSegId = 32000;

at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows) {
  size_t len = 0;
  for (const auto& r : rows) len = std::max(len, r.size());
  at::Tensor t = at::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(len)}, at::kLong);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 0; i < rows[r].size(); ++i) t[r][i] = rows[r][i];
  return t;
}

TEST(M2SAMultimodal, SpliceInsertsImageFeaturesAtThePlaceholder) {
  // Row 0: placeholder at 2; row 1: placeholder at 1. N = 3 image tokens, H = 2.
  const at::Tensor ids = ids_tensor({{1, 5, -200, 6, 7}, {1, -200, 8, 0, 0}});
  const auto ph = image_placeholders(ids);
  ASSERT_EQ(ph, (std::vector<int64_t>{2, 1}));
  at::Tensor text = at::arange(2 * 5 * 2, at::kFloat).view({2, 5, 2});
  at::Tensor img = -at::arange(1, 2 * 3 * 2 + 1, at::kFloat).view({2, 3, 2});
  at::Tensor out = splice_image_features(text, img, ph);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 7, 2}));
  EXPECT_TRUE(out[0].slice(0, 0, 2).equal(text[0].slice(0, 0, 2)));
  EXPECT_TRUE(out[0].slice(0, 2, 5).equal(img[0]));
  EXPECT_TRUE(out[0].slice(0, 5, 7).equal(text[0].slice(0, 3, 5)));
  EXPECT_TRUE(out[1].slice(0, 0, 1).equal(text[1].slice(0, 0, 1)));
  EXPECT_TRUE(out[1].slice(0, 1, 4).equal(img[1]));
  EXPECT_TRUE(out[1].slice(0, 4, 7).equal(text[1].slice(0, 2, 5)));

  at::Tensor labels = ids.clone();
  at::Tensor l = splice_labels(labels, ph, 3);
  EXPECT_TRUE(l.equal(at::tensor({1, 5, -100, -100, -100, 6, 7, 1, -100, -100, -100, 8, 0, 0}, at::kLong).view({2, 7})));
  at::Tensor m = splice_attention_mask(ids.ne(0), ph, 3);
  // Inserting ones equals the reference's "prepend N - 1 ones" for right-padded masks.
  at::Tensor ref = at::cat({at::ones({2, 2}, at::kBool), ids.ne(0)}, 1);
  EXPECT_TRUE(m.equal(ref));
}

TEST(M2SAMultimodal, SegPositionsFollowTheReference) {
  // 3 images: image 0 owns rows 0-1, image 1 row 2 (without [SEG]), image 2 rows 3-4.
  const int64_t n = 4;
  const at::Tensor ids = ids_tensor({
      {1, 9, -200, 9, kSegId, 9, kSegId, 2},    // row 0: [SEG] at 4 and 6
      {1, -200, kSegId, 9, 2},                // row 1: [SEG] right after the image (at 2)
      {1, 9, 9, -200, 9, 9, 2},             // row 2: no [SEG]
      {1, -200, 9, 9, 9, kSegId, 2},          // row 3: [SEG] at 5
      {1, 9, -200, kSegId, kSegId, 2},          // row 4: [SEG] at 3 and 4
  });
  const SegPositions seg = seg_positions(ids, kSegId, n, {0, 2, 3, 5});
  // Reference: mask m = ids[:, 1:] == seg, + one False column, 255 (= N - 1) False columns prepended:
  // selected expanded index j has ids[j - (N - 2)] == seg, i.e. j = p + N - 2.
  EXPECT_EQ(seg.rows, (std::vector<int64_t>{0, 0, 1, 3, 4, 4}));
  EXPECT_EQ(seg.positions, (std::vector<int64_t>{4 + n - 2, 6 + n - 2, 2 + n - 2, 5 + n - 2, 3 + n - 2, 4 + n - 2}));
  EXPECT_EQ(seg.per_image, (std::vector<int64_t>{3, 0, 3}));
  // Cross-check with the reference's boolean-mask construction.
  at::Tensor m = ids.slice(1, 1).eq(kSegId);
  m = at::cat({at::zeros({5, n - 1}, at::kBool), m, at::zeros({5, 1}, at::kBool)}, 1);
  const at::Tensor nz = m.nonzero();  // row-major (row, position)
  ASSERT_EQ(nz.size(0), seg.total());
  for (int64_t k = 0; k < nz.size(0); ++k) {
    EXPECT_EQ(nz[k][0].item<int64_t>(), seg.rows[k]);
    EXPECT_EQ(nz[k][1].item<int64_t>(), seg.positions[k]);
  }

  // Hand-built hidden states: value = 1000 * row + position, so each gathered state names its origin.
  const int64_t t = ids.size(1) + n - 1;
  at::Tensor hidden = at::zeros({5, t, 3});
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t p = 0; p < t; ++p) hidden[r][p].fill_(1000 * r + p);
  const auto per_image = gather_seg_states(hidden, seg);
  ASSERT_EQ(per_image.size(), 3u);
  EXPECT_EQ(per_image[0].sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(per_image[1].sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(per_image[2].sizes(), (std::vector<int64_t>{3, 3}));
  auto origin = [](const at::Tensor& s) { return s[0].item<int64_t>(); };
  EXPECT_EQ(origin(per_image[0][0]), 0 * 1000 + 4 + n - 2);
  EXPECT_EQ(origin(per_image[0][1]), 0 * 1000 + 6 + n - 2);
  EXPECT_EQ(origin(per_image[0][2]), 1 * 1000 + 2 + n - 2);  // the last image token (hidden before [SEG])
  EXPECT_EQ(origin(per_image[2][0]), 3 * 1000 + 5 + n - 2);
  EXPECT_EQ(origin(per_image[2][1]), 4 * 1000 + 3 + n - 2);
  EXPECT_EQ(origin(per_image[2][2]), 4 * 1000 + 4 + n - 2);
}

TEST(M2SAMultimodal, BadInputGivesClearErrors) {
  EXPECT_NE(test::m2sa_error_of([] { image_placeholders(ids_tensor({{1, 9, 9}})); }).find("holds 0 image placeholders"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { image_placeholders(ids_tensor({{1, -200, 9}, {1, -200, -200}})); })
                .find("conversation 1 of the batch holds 2 image placeholders"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { image_placeholders(at::zeros({2, 3}, at::kInt)); }).find("must be int64"), std::string::npos);
  const at::Tensor ids = ids_tensor({{1, -200, kSegId}, {1, -200, 9}});
  EXPECT_NE(test::m2sa_error_of([&] { seg_positions(ids, kSegId, 4, {0, 1}); }).find("offset ends at 1 but the batch has 2"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { seg_positions(ids, kSegId, 4, {0, 2, 1}); }).find("non-decreasing"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { seg_positions(ids, kSegId, 4, {1, 2}); }).find("must start at 0"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { seg_positions(ids_tensor({{1, kSegId, -200, 9}}), kSegId, 4, {0, 1}); })
                .find("comes before the image placeholder"),
            std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { splice_image_features(at::zeros({2, 3, 4}), at::zeros({2, 5, 3}), {1, 1}); })
                .find("image features must be [2, N, 4]"),
            std::string::npos);
}

}  // namespace
}  // namespace m2sa::m2sa_model
