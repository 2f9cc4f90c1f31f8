#include "m2sa/vision/mask_image.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"

namespace m2sa::vision {
namespace {

TEST(MaskImage, PngRoundTrip) {
  at::Tensor mask = at::zeros({5, 7}, at::kBool);
  mask[1][2] = true;
  mask[4][6] = true;
  at::Tensor png = mask_to_png(mask);
  EXPECT_EQ(png.scalar_type(), at::kByte);
  EXPECT_EQ(png[1][2].item<int>(), 255);
  EXPECT_EQ(png[0][0].item<int>(), 0);
  EXPECT_EQ(png.sum().item<int64_t>(), 2 * 255);
  EXPECT_TRUE(at::equal(mask_from_png(png), mask));
  // Integer masks: nonzero is inside.
  EXPECT_TRUE(at::equal(mask_to_png(mask.to(at::kLong) * 3), png));

  test::TempDir dir;
  write_mask_png(dir / "m.png", mask);
  at::Tensor back = read_image_rgb(dir / "m.png");  // gray PNG comes back as RGB with equal channels
  EXPECT_TRUE(at::equal(mask_from_png(back), mask));
  EXPECT_THROW(mask_to_png(at::zeros({5, 7})), Error);
  EXPECT_THROW(mask_to_png(at::zeros({1, 5, 7}, at::kBool)), Error);
}

TEST(MaskImage, ReferenceChatOutputs) {
  // Pixels (R, G, B) inside the mask become (floor((R + 255) / 2), floor(G / 2), floor(B / 2)):
  //   (0, 1, 2) -> (127, 0, 1); (255, 255, 255) -> (255, 127, 127); (3, 200, 99) -> (129, 100, 49).
  at::Tensor rgb = at::tensor({0, 1, 2, 255, 255, 255, 3, 200, 99, 10, 20, 30}, at::kByte).reshape({2, 2, 3});
  at::Tensor mask = at::tensor({1, 1, 1, 0}, at::kByte).to(at::kBool).reshape({2, 2});
  at::Tensor out = reference_masked_image(rgb, mask);
  at::Tensor expected = at::tensor({127, 0, 1, 255, 127, 127, 129, 100, 49, 10, 20, 30}, at::kByte).reshape({2, 2, 3});
  EXPECT_TRUE(at::equal(out, expected)) << out;
  at::Tensor m100 = reference_mask_image(mask);
  EXPECT_TRUE(at::equal(m100, at::tensor({100, 100, 100, 0}, at::kByte).reshape({2, 2})));

  EXPECT_EQ(reference_stem("dir/sub/a.b.jpg"), "a");
  EXPECT_EQ(reference_stem("img.png"), "img");
  EXPECT_EQ(reference_stem("noext"), "noext");

  test::TempDir dir;
  at::Tensor big_rgb = at::full({16, 16, 3}, 80, at::kByte);
  at::Tensor masks = at::zeros({2, 16, 16}, at::kBool);
  masks[0].narrow(0, 0, 8).fill_(true);
  masks[1].narrow(1, 8, 8).fill_(true);
  auto paths = write_reference_outputs(dir.path(), "photo", big_rgb, masks);
  ASSERT_EQ(paths.size(), 4u);
  EXPECT_EQ(paths[0].filename(), "photo_mask_0.jpg");
  EXPECT_EQ(paths[1].filename(), "photo_masked_img_0.jpg");
  EXPECT_EQ(paths[3].filename(), "photo_masked_img_1.jpg");
  // JPEG is lossy: check the values approximately. mask_1 is 100 in the right half, 0 in the left.
  at::Tensor m1 = read_image_rgb(paths[2]).to(at::kInt);
  EXPECT_NEAR(m1[4][12][0].item<int>(), 100, 8);
  EXPECT_NEAR(m1[4][2][0].item<int>(), 0, 8);
  // masked_img_0: top half (80 + 255) / 2 = 167, 40, 40; bottom half unchanged 80, 80, 80.
  at::Tensor i0 = read_image_rgb(paths[1]).to(at::kInt);
  EXPECT_NEAR(i0[2][5][0].item<int>(), 167, 10);
  EXPECT_NEAR(i0[2][5][1].item<int>(), 40, 10);
  EXPECT_NEAR(i0[13][5][1].item<int>(), 80, 10);
  EXPECT_THROW(reference_masked_image(big_rgb, masks[0].narrow(0, 0, 4)), Error);
}

}  // namespace
}  // namespace m2sa::vision
