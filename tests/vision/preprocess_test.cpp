// SAM and CLIP preprocessing against the golden data of preprocess_cases.json (Pillow 9.4, transformers
// 4.29 slow CLIPImageProcessor, torchvision resize; see tests/fixtures/reference/README.md), and Sam.preprocess
// against the sam_tiny fixture. Every size comes from the fixture files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>

#include "m2sa/core/json_reader.h"
#include "m2sa/core/sha256.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/vision/clip_preprocess.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/pil_resample.h"
#include "m2sa/vision/sam_preprocess.h"
#include "test_util.h"

namespace m2sa {
namespace {

std::string sha_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return sha256_hex(c.data_ptr(), static_cast<std::size_t>(c.numel() * c.element_size()));
}

std::array<int64_t, 2> hw(const json& j) { return {j.at(0).get<int64_t>(), j.at(1).get<int64_t>()}; }

// Tolerances stated by the fixture README / tolerances_suggested.
constexpr double kSampleAtol = 1e-6;
constexpr double kMeanAtol = 1e-5;

class PreprocessParity : public ::testing::Test {
 protected:
  void SetUp() override { cases_ = read_json_file(test::fixture("preprocess_cases.json")); }
  json cases_;
};

TEST_F(PreprocessParity, DecodedImagesMatch) {
  for (const auto& c : cases_.at("images")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    at::Tensor rgb = read_image_rgb(test::fixture(c.at("file").get<std::string>()));
    EXPECT_EQ(rgb.size(0), c.at("decoded").at("height").get<int64_t>());
    EXPECT_EQ(rgb.size(1), c.at("decoded").at("width").get<int64_t>());
    EXPECT_EQ(sha_of(rgb), c.at("decoded").at("sha256_rgb").get<std::string>());
  }
}

TEST_F(PreprocessParity, SamResizeIsPillowExact) {
  for (const auto& c : cases_.at("images")) {
    const auto& sam = c.at("sam");
    SCOPED_TRACE(c.at("name").get<std::string>());
    at::Tensor rgb = read_image_rgb(test::fixture(c.at("file").get<std::string>()));
    const int64_t long_side = sam.at("target_long_side").get<int64_t>();
    EXPECT_EQ(resize_longest_side_shape(rgb.size(0), rgb.size(1), long_side), hw(sam.at("resized_hw")));
    at::Tensor resized = resize_longest_side(rgb, long_side);
    ASSERT_EQ(resized.size(0), hw(sam.at("resized_hw"))[0]);
    ASSERT_EQ(resized.size(1), hw(sam.at("resized_hw"))[1]);
    at::Tensor golden = read_image_rgb(test::fixture(sam.at("resized_png").get<std::string>()));
    const double diff = test::max_abs_diff(resized, golden);
    EXPECT_EQ(diff, 0.0) << "max abs difference to the Pillow result";
    EXPECT_EQ(sha_of(resized), sam.at("resized_sha256_rgb").get<std::string>());
  }
}

TEST_F(PreprocessParity, SamNormalisedValues) {
  for (const auto& c : cases_.at("images")) {
    const auto& sam = c.at("sam");
    SCOPED_TRACE(c.at("name").get<std::string>());
    at::Tensor rgb = read_image_rgb(test::fixture(c.at("file").get<std::string>()));
    const auto padded = sam.at("padded_chw");
    const int64_t img_size = padded.at(1).get<int64_t>();
    SamInput in = sam_preprocess(rgb, img_size);
    EXPECT_EQ(in.original_hw, hw(sam.at("original_hw")));
    EXPECT_EQ(in.resized_hw, hw(sam.at("resized_hw")));
    ASSERT_EQ(in.image.sizes(), (at::IntArrayRef{padded.at(0).get<int64_t>(), img_size, padded.at(2).get<int64_t>()}));
    ASSERT_EQ(in.image.scalar_type(), at::kFloat);
    const at::Tensor resized = resize_longest_side(rgb, sam.at("target_long_side").get<int64_t>());
    double worst = 0;
    for (const auto& s : sam.at("samples")) {
      const int64_t y = s.at("y").get<int64_t>(), x = s.at("x").get<int64_t>();
      for (int ch = 0; ch < 3; ++ch) {
        const double got = in.image[ch][y][x].item<float>();
        worst = std::max(worst, std::abs(got - s.at("normalized").at(ch).get<double>()));
        if (!s.at("in_padding").get<bool>())
          EXPECT_EQ(resized[y][x][ch].item<uint8_t>(), s.at("rgb_u8").at(ch).get<int>()) << "at " << y << "," << x;
        else
          EXPECT_EQ(got, 0.0) << "padding must be 0 after normalisation";
      }
    }
    EXPECT_LE(worst, kSampleAtol) << "normalised samples, max abs error " << worst;
    std::cout << "  SAM " << c.at("name").get<std::string>() << ": samples max abs error " << worst << "\n";
    const at::Tensor mean = in.image.to(at::kDouble).mean({1, 2});
    const auto region = in.image.slice(1, 0, in.resized_hw[0]).slice(2, 0, in.resized_hw[1]).to(at::kDouble).mean({1, 2});
    for (int ch = 0; ch < 3; ++ch) {
      EXPECT_NEAR(mean[ch].item<double>(), sam.at("normalized_channel_mean").at(ch).get<double>(), kMeanAtol);
      EXPECT_NEAR(region[ch].item<double>(), sam.at("normalized_channel_mean_resized_region").at(ch).get<double>(),
                  kMeanAtol);
    }
    const double sum = in.image.to(at::kDouble).sum().item<double>();
    EXPECT_NEAR(sum, sam.at("normalized_sum").get<double>(), kMeanAtol * static_cast<double>(in.image.numel()));
  }
}

TEST_F(PreprocessParity, ClipResizeAndCropArePillowExact) {
  for (const auto& c : cases_.at("images")) {
    const auto& clip = c.at("clip");
    SCOPED_TRACE(c.at("name").get<std::string>());
    at::Tensor rgb = read_image_rgb(test::fixture(c.at("file").get<std::string>()));
    const auto resized_hw = hw(clip.at("resized_hw"));
    const int64_t shortest = std::min(resized_hw[0], resized_hw[1]);
    EXPECT_EQ(clip_resize_shape(rgb.size(0), rgb.size(1), shortest), resized_hw);
    at::Tensor resized = clip_resize(rgb, shortest);
    EXPECT_EQ(sha_of(resized), clip.at("resized_sha256_rgb").get<std::string>());
    const auto crop_hw = hw(clip.at("crop_hw"));
    at::Tensor crop = clip_center_crop(resized, crop_hw[0], crop_hw[1]);
    const auto top_left = hw(clip.at("crop_top_left"));
    EXPECT_TRUE(crop.equal(resized.slice(0, top_left[0], top_left[0] + crop_hw[0]).slice(1, top_left[1], top_left[1] + crop_hw[1])))
        << "crop window differs from top-left " << top_left[0] << "," << top_left[1];
    at::Tensor golden = read_image_rgb(test::fixture(clip.at("crop_png").get<std::string>()));
    EXPECT_EQ(test::max_abs_diff(crop, golden), 0.0) << "max abs difference to the Pillow crop";
    EXPECT_EQ(sha_of(crop), clip.at("crop_sha256_rgb").get<std::string>());
  }
}

TEST_F(PreprocessParity, ClipNormalisedValues) {
  for (const auto& c : cases_.at("images")) {
    const auto& clip = c.at("clip");
    SCOPED_TRACE(c.at("name").get<std::string>());
    at::Tensor rgb = read_image_rgb(test::fixture(c.at("file").get<std::string>()));
    ClipPreprocessConfig cfg;
    const auto resized_hw = hw(clip.at("resized_hw"));
    cfg.shortest_edge = std::min(resized_hw[0], resized_hw[1]);
    cfg.crop_size = clip.at("crop_hw").at(0).get<int64_t>();
    for (int ch = 0; ch < 3; ++ch) {
      cfg.image_mean[ch] = clip.at("image_mean").at(ch).get<float>();
      cfg.image_std[ch] = clip.at("image_std").at(ch).get<float>();
    }
    at::Tensor px = clip_preprocess(rgb, cfg);
    const auto chw = clip.at("pixel_values_chw");
    ASSERT_EQ(px.sizes(), (at::IntArrayRef{chw.at(0).get<int64_t>(), chw.at(1).get<int64_t>(), chw.at(2).get<int64_t>()}));
    ASSERT_EQ(px.scalar_type(), at::kFloat);
    at::Tensor crop = clip_center_crop(clip_resize(rgb, cfg.shortest_edge), cfg.crop_size, cfg.crop_size);
    double worst = 0;
    for (const auto& s : clip.at("samples")) {
      const int64_t y = s.at("y").get<int64_t>(), x = s.at("x").get<int64_t>();
      for (int ch = 0; ch < 3; ++ch) {
        EXPECT_EQ(crop[y][x][ch].item<uint8_t>(), s.at("rgb_u8").at(ch).get<int>()) << "at " << y << "," << x;
        worst = std::max(worst, std::abs(px[ch][y][x].item<float>() - s.at("normalized").at(ch).get<double>()));
      }
    }
    EXPECT_LE(worst, kSampleAtol) << "normalised samples, max abs error " << worst;
    std::cout << "  CLIP " << c.at("name").get<std::string>() << ": samples max abs error " << worst << "\n";
    const at::Tensor mean = px.to(at::kDouble).mean({1, 2});
    for (int ch = 0; ch < 3; ++ch)
      EXPECT_NEAR(mean[ch].item<double>(), clip.at("normalized_channel_mean").at(ch).get<double>(), kMeanAtol);
    EXPECT_NEAR(px.to(at::kDouble).sum().item<double>(), clip.at("normalized_sum").get<double>(),
                kMeanAtol * static_cast<double>(px.numel()));
  }
}

// Sam.preprocess on the sam_tiny fixture: input.image_unnormalized -> output.preprocessed_image.
TEST(PreprocessParitySamTiny, NormaliseAndPad) {
  const json meta = read_json_file(test::fixture("sam_tiny.json"));
  const int64_t img_size = meta.at("config").at("image_encoder").at("img_size").get<int64_t>();
  const double atol = meta.at("tensors").at("output.preprocessed_image").at("atol_fp32").get<double>();
  SafetensorsReader st(test::fixture("sam_tiny.safetensors"));
  const at::Tensor input = st.load("input.image_unnormalized");   // [1, 3, h, w], 0..255
  const at::Tensor expected = st.load("output.preprocessed_image");  // [1, 3, S, S]
  const at::Tensor got = normalise_and_pad(input, img_size);
  EXPECT_TRUE(test::AllClose(got, expected, atol, "output.preprocessed_image"));
  std::cout << "  output.preprocessed_image max abs error " << test::max_abs_diff(got, expected) << " (atol " << atol
            << ")\n";
  // Also the single-image [3, h, w] form.
  EXPECT_TRUE(test::AllClose(normalise_and_pad(input[0], img_size), expected[0], atol, "unbatched"));
}

TEST(SamPreprocess, ShapeRuleAndErrors) {
  // int(h * scale + 0.5) with scale = S / max(h, w): 300x451 -> 681x1024 (fixture chelsea), 100x77 -> 128x99.
  EXPECT_EQ(resize_longest_side_shape(300, 451, 1024), (std::array<int64_t, 2>{681, 1024}));
  EXPECT_EQ(resize_longest_side_shape(100, 77, 128), (std::array<int64_t, 2>{128, 99}));
  EXPECT_THROW(sam_preprocess(at::zeros({0, 5, 3}, at::kByte), 64), Error);
  EXPECT_THROW(sam_preprocess(at::zeros({5, 5, 4}, at::kByte), 64), Error);
  EXPECT_THROW(normalise_and_pad(at::zeros({3, 70, 10}), 64), Error);
}

TEST(PilResample, HandComputedBilinearUpscale) {
  // 1x2 -> 1x4, bilinear: weights per output (0.75 in the middle taps) give [a, .75a+.25b, .25a+.75b, b]
  // rounded half up through the 22-bit fixed point.
  at::Tensor img = at::zeros({1, 2, 1}, at::kByte);
  img[0][1][0] = 100;
  at::Tensor out = pil_resize(img, 1, 4, PilFilter::kBilinear);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{1, 4, 1}));
  EXPECT_EQ(out[0][0][0].item<uint8_t>(), 0);
  EXPECT_EQ(out[0][1][0].item<uint8_t>(), 25);
  EXPECT_EQ(out[0][2][0].item<uint8_t>(), 75);
  EXPECT_EQ(out[0][3][0].item<uint8_t>(), 100);
}

TEST(PilResample, ConstantStaysConstantAndSameSizeCopies) {
  at::Tensor img = at::full({37, 23, 3}, 77, at::kByte);
  for (auto f : {PilFilter::kBilinear, PilFilter::kBicubic}) {
    EXPECT_TRUE(pil_resize(img, 91, 12, f).eq(77).all().item<bool>());
    EXPECT_TRUE(pil_resize(img, 5, 200, f).eq(77).all().item<bool>());
  }
  at::Tensor rnd = at::randint(0, 256, {9, 8, 2}, at::kByte);
  at::Tensor same = pil_resize(rnd, 9, 8, PilFilter::kBicubic);
  EXPECT_TRUE(same.equal(rnd));
  EXPECT_NE(same.data_ptr(), rnd.data_ptr());
  EXPECT_THROW(pil_resize(rnd, 0, 8, PilFilter::kBilinear), Error);
  EXPECT_THROW(pil_resize(rnd.to(at::kFloat), 3, 3, PilFilter::kBilinear), Error);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace m2sa
