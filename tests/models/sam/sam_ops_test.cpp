// The image encoder's helpers against explicit formulas: window partition with padding, and the relative
// position tables (including the linear interpolation used when a table has the wrong length).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <cmath>
#include <utility>
#include <vector>

#include "m2sa/models/sam/image_encoder.h"
#include "test_util.h"

namespace m2sa {
namespace {

TEST(SamOps, WindowPartitionPadsWithZerosAndRoundTrips) {
  const at::Tensor x = at::randn({2, 8, 7, 5});  // 8x7 grid, window 3 -> padded to 9x9, 9 windows per image
  auto [windows, padded] = sam::window_partition(x, 3);
  EXPECT_EQ(padded.first, 9);
  EXPECT_EQ(padded.second, 9);
  ASSERT_EQ(windows.sizes(), (std::vector<int64_t>{18, 3, 3, 5}));
  // Window (i, j) of image b holds x[b, 3i:3i+3, 3j:3j+3] and zeros beyond the grid.
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        const at::Tensor w = windows[b * 9 + i * 3 + j];
        for (int64_t r = 0; r < 3; ++r)
          for (int64_t c = 0; c < 3; ++c) {
            const int64_t y = 3 * i + r, xx = 3 * j + c;
            const at::Tensor expected = (y < 8 && xx < 7) ? x[b][y][xx] : at::zeros({5});
            EXPECT_TRUE(at::equal(w[r][c], expected)) << b << " " << y << " " << xx;
          }
      }
  EXPECT_TRUE(at::equal(sam::window_unpartition(windows, 3, padded, {8, 7}), x));
  // No padding needed: a pure reshuffle.
  auto [w2, p2] = sam::window_partition(x.slice(1, 0, 6).slice(2, 0, 6), 3);
  EXPECT_EQ(p2.first, 6);
  EXPECT_EQ(p2.second, 6);
  EXPECT_EQ(w2.size(0), 8);
}

TEST(SamOps, RelPosTableIndexesRelativeOffsets) {
  const int64_t S = 5, D = 4;
  const at::Tensor table = at::randn({2 * S - 1, D});
  const at::Tensor r = sam::get_rel_pos(S, S, table);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{S, S, D}));
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) EXPECT_TRUE(at::equal(r[i][j], table[i - j + S - 1]));
}

// F.interpolate(mode="linear", align_corners=False) written out: src = (i + 0.5) * L / M - 0.5, clamped at 0,
// blending rows floor(src) and floor(src) + 1 (clamped to L - 1). The reference is computed in double; PyTorch
// computes the source index and weights in fp32 with a kernel whose vectorisation depends on the CPU (a CI machine
// differed from this one by 1.2e-6), so the bound is a few fp32 ulps of the table's magnitude. A wrong row or
// weight costs about 1e-1.
TEST(SamOps, RelPosTableIsInterpolatedWhenItsLengthDiffers) {
  const int64_t L = 7, D = 3, q = 6, k = 6, M = 2 * std::max(q, k) - 1;  // table of 7 rows for 11 offsets
  const at::Tensor table = at::randn({L, D}, at::kDouble).to(at::kFloat);
  const at::Tensor exact = table.to(at::kDouble);
  at::Tensor resized = at::empty({M, D}, at::kDouble);
  for (int64_t i = 0; i < M; ++i) {
    const double src = std::max((i + 0.5) * static_cast<double>(L) / static_cast<double>(M) - 0.5, 0.0);
    const int64_t i0 = static_cast<int64_t>(std::floor(src));
    const int64_t i1 = std::min(i0 + 1, L - 1);
    const double lambda = src - static_cast<double>(i0);
    resized[i] = exact[i0] * (1 - lambda) + exact[i1] * lambda;
  }
  const double atol = 8 * std::numeric_limits<float>::epsilon() * table.abs().max().item<double>();
  const at::Tensor r = sam::get_rel_pos(q, k, table);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{q, k, D}));
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < k; ++j)
      EXPECT_TRUE(test::AllClose(r[i][j].to(at::kDouble), resized[i - j + k - 1], atol, "interpolated rel pos"));
}

// The gather index is built once per (q, k, device) and reused (the reference rebuilds it in every block); its
// entries are the table rows of get_rel_pos: (i * max(k/q, 1) - j * max(q/k, 1)) + (k - 1) * max(q/k, 1).
TEST(SamOps, RelPosIndexIsCachedAndIndexesTheTable) {
  for (auto [q, k] : {std::pair<int64_t, int64_t>{5, 5}, {3, 6}, {6, 3}}) {
    const at::Tensor& a = sam::rel_pos_index(q, k, c10::Device(c10::kCPU));
    const at::Tensor& b = sam::rel_pos_index(q, k, c10::Device(c10::kCPU));
    EXPECT_EQ(&a, &b) << q << "x" << k;
    ASSERT_EQ(a.sizes(), (std::vector<int64_t>{q * k}));
    ASSERT_EQ(a.scalar_type(), at::kLong);
    const double qk = std::max(static_cast<double>(k) / q, 1.0), kq = std::max(static_cast<double>(q) / k, 1.0);
    for (int64_t i = 0; i < q; ++i)
      for (int64_t j = 0; j < k; ++j)
        EXPECT_EQ(a[i * k + j].item<int64_t>(),
                  static_cast<int64_t>(static_cast<float>(i * qk) - static_cast<float>(j * kq) +
                                       static_cast<float>((k - 1) * kq)))
            << q << "x" << k << " at " << i << ", " << j;
  }
  EXPECT_NE(&sam::rel_pos_index(5, 5, c10::Device(c10::kCPU)), &sam::rel_pos_index(4, 4, c10::Device(c10::kCPU)));
}

// Different query and key lengths: coordinates of the shorter axis are stretched (reference get_rel_pos).
TEST(SamOps, RelPosTableForDifferentQueryAndKeyLengths) {
  const int64_t q = 4, k = 8, D = 2;
  const at::Tensor table = at::randn({2 * k - 1, D});
  const at::Tensor r = sam::get_rel_pos(q, k, table);
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const auto idx = static_cast<int64_t>(static_cast<float>(i) * 2.0f - static_cast<float>(j) + 7.0f);
      EXPECT_TRUE(at::equal(r[i][j], table[idx]));
    }
}

// The decomposed bias equals q . Rh[h_q, h_k] + q . Rw[w_q, w_k] element by element.
TEST(SamOps, DecomposedRelPosBias) {
  const int64_t B = 2, H = 3, W = 4, D = 5;
  const at::Tensor q = at::randn({B, H * W, D}, at::kDouble);
  const at::Tensor rh = at::randn({2 * H - 1, D}, at::kDouble), rw = at::randn({2 * W - 1, D}, at::kDouble);
  const at::Tensor bias = sam::decomposed_rel_pos_bias(q, rh, rw, {H, W}, {H, W});
  ASSERT_EQ(bias.sizes(), (std::vector<int64_t>{B, H * W, H * W}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < H * W; ++i)
      for (int64_t j = 0; j < H * W; ++j) {
        const int64_t hq = i / W, wq = i % W, hk = j / W, wk = j % W;
        const double expected = (q[b][i] * rh[hq - hk + H - 1]).sum().item<double>() +
                                (q[b][i] * rw[wq - wk + W - 1]).sum().item<double>();
        EXPECT_NEAR(bias[b][i][j].item<double>(), expected, 1e-10);
      }
}

// A windowed block equals attention computed window by window on the zero-padded grid.
TEST(SamOps, WindowedBlockMatchesPerWindowAttention) {
  at::NoGradGuard g;
  at::manual_seed(3);
  sam::ImageEncoderConfig c;
  c.embed_dim = 8;
  c.num_heads = 2;
  c.window_size = 3;
  c.use_rel_pos = true;
  sam::EncoderBlock block(c, 3);
  for (auto& p : block->parameters()) p.copy_(at::randn_like(p) * 0.3);
  const at::Tensor x = at::randn({1, 5, 4, 8});  // padded to 6x6: 4 windows
  const at::Tensor y = block->forward(x);
  const at::Tensor h = at::constant_pad_nd(block->norm1->forward(x), {0, 0, 0, 2, 0, 1}, 0);  // [1, 6, 6, 8]
  at::Tensor attn = at::zeros_like(h);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 2; ++j) {
      const at::Tensor win = h.slice(1, 3 * i, 3 * i + 3).slice(2, 3 * j, 3 * j + 3);
      attn.slice(1, 3 * i, 3 * i + 3).slice(2, 3 * j, 3 * j + 3).copy_(block->attn->forward(win));
    }
  const at::Tensor mid = x + attn.slice(1, 0, 5).slice(2, 0, 4);
  const at::Tensor expected = mid + block->mlp->forward(block->norm2->forward(mid));
  EXPECT_TRUE(test::AllClose(y, expected, 1e-5, "windowed block"));
}

}  // namespace
}  // namespace m2sa
