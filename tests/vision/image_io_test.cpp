// read_image_rgb / decode_image_rgb: the conversions cv2.imread(path) + cvtColor(BGR2RGB) performs, and
// clear errors (naming the file) for every kind of bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "m2sa/core/error.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"

namespace m2sa {
namespace {

// Expects an m2sa::Error whose message contains every string in `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an m2sa::Error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected m2sa::Error, got another exception: " << e.what();
  }
}

std::string encode_png(const cv::Mat& m) {
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(".png", m, buf));
  return std::string(buf.begin(), buf.end());
}

TEST(ImageIo, RgbPngRoundTripAndChannelOrder) {
  test::TempDir dir;
  at::Tensor img = at::randint(0, 256, {5, 7, 3}, at::kByte);
  write_image(dir / "x.png", img);
  at::Tensor back = read_image_rgb(dir / "x.png");
  EXPECT_TRUE(back.equal(img));
  // The file itself is stored BGR by OpenCV: pixel (0,0) read raw must be the reverse of the RGB tensor.
  cv::Mat raw = cv::imread((dir / "x.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(raw.channels(), 3);
  EXPECT_EQ(raw.at<cv::Vec3b>(0, 0)[0], img[0][0][2].item<uint8_t>());
  EXPECT_EQ(raw.at<cv::Vec3b>(0, 0)[2], img[0][0][0].item<uint8_t>());
}

TEST(ImageIo, GrayBecomesThreeEqualChannels) {
  cv::Mat gray(3, 4, CV_8UC1);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x) gray.at<uint8_t>(y, x) = static_cast<uint8_t>(y * 40 + x * 7);
  at::Tensor rgb = decode_image_rgb(encode_png(gray), "gray.png");
  ASSERT_EQ(rgb.sizes(), (at::IntArrayRef{3, 4, 3}));
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) EXPECT_EQ(rgb[y][x][c].item<uint8_t>(), y * 40 + x * 7);
}

TEST(ImageIo, RgbaDropsAlphaWithoutBlending) {
  cv::Mat bgra(2, 2, CV_8UC4, cv::Scalar(10, 20, 30, 0));  // B, G, R, A = 0 (fully transparent)
  bgra.at<cv::Vec4b>(1, 1) = cv::Vec4b(200, 100, 50, 128);
  at::Tensor rgb = decode_image_rgb(encode_png(bgra), "rgba.png");
  ASSERT_EQ(rgb.sizes(), (at::IntArrayRef{2, 2, 3}));
  // cv2.imread(IMREAD_COLOR) ignores alpha: colour kept as stored, then BGR -> RGB.
  EXPECT_EQ(rgb[0][0][0].item<uint8_t>(), 30);
  EXPECT_EQ(rgb[0][0][1].item<uint8_t>(), 20);
  EXPECT_EQ(rgb[0][0][2].item<uint8_t>(), 10);
  EXPECT_EQ(rgb[1][1][0].item<uint8_t>(), 50);
  EXPECT_EQ(rgb[1][1][2].item<uint8_t>(), 200);
}

TEST(ImageIo, SixteenBitKeepsTheHighByte) {
  cv::Mat m16(2, 3, CV_16UC3);
  const uint16_t values[3] = {0x1234, 0xABFF, 0x00FF};  // B, G, R
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) m16.at<cv::Vec<uint16_t, 3>>(y, x) = {values[0], values[1], values[2]};
  at::Tensor rgb = decode_image_rgb(encode_png(m16), "deep.png");
  ASSERT_EQ(rgb.sizes(), (at::IntArrayRef{2, 3, 3}));
  // cv2.imread without IMREAD_ANYDEPTH reduces 16-bit PNG samples to their high byte (libpng strip_16).
  EXPECT_EQ(rgb[1][2][0].item<uint8_t>(), 0x00);  // R = 0x00FF >> 8
  EXPECT_EQ(rgb[1][2][1].item<uint8_t>(), 0xAB);
  EXPECT_EQ(rgb[1][2][2].item<uint8_t>(), 0x12);  // B = 0x1234 >> 8

  cv::Mat g16(1, 2, CV_16UC1, cv::Scalar(0x8001));
  at::Tensor g = decode_image_rgb(encode_png(g16), "deep_gray.png");
  ASSERT_EQ(g.sizes(), (at::IntArrayRef{1, 2, 3}));
  EXPECT_TRUE(g.eq(0x80).all().item<bool>());
}

TEST(ImageIo, MissingFileNamesTheFile) {
  test::TempDir dir;
  expect_error([&] { read_image_rgb(dir / "nope.jpg"); }, {"nope.jpg", "cannot open"});
}

TEST(ImageIo, EmptyAndNonImageBytes) {
  test::TempDir dir;
  test::write_bytes(dir / "empty.png", "");
  expect_error([&] { read_image_rgb(dir / "empty.png"); }, {"empty.png", "empty"});
  test::write_bytes(dir / "text.jpg", "this is not an image at all, just some text\n");
  expect_error([&] { read_image_rgb(dir / "text.jpg"); }, {"text.jpg", "not a readable image"});
}

TEST(ImageIo, OnlyJpegAndPngAreDecoded) {
  // OpenCV decodes every codec it was built with (BMP, PPM, TIFF, WebP, OpenEXR, ...), each one more parser
  // exposed to untrusted files; m2sa reads only the JPEG and PNG files it documents, told apart by magic bytes.
  test::TempDir dir;
  const cv::Mat m(4, 5, CV_8UC3, cv::Scalar(10, 20, 30));
  for (const std::string ext : {".bmp", ".ppm", ".tiff", ".webp"}) {
    std::vector<uchar> buf;
    if (!cv::imencode(ext, m, buf)) continue;  // codec not built in: nothing to refuse
    const std::string name = "photo" + ext;
    test::write_bytes(dir / name, std::string(buf.begin(), buf.end()));
    expect_error([&] { read_image_rgb(dir / name); }, {name, "JPEG and PNG"});
  }
  // A JPEG under a .png name is fine: the bytes decide, not the extension.
  test::write_bytes(dir / "really_a_jpeg.png", test::read_bytes(test::fixture("images/retina.jpg")));
  EXPECT_EQ(read_image_rgb(dir / "really_a_jpeg.png").size(2), 3);
  EXPECT_EQ(decode_image_rgb(encode_png(m), "ok.png").size(0), 4);
}

// What cv2.imread(path) + BGR->RGB gives for a file: the reference's reading of it.
at::Tensor cv2_imread_rgb(const std::filesystem::path& path) {
  const cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_COLOR);
  EXPECT_FALSE(bgr.empty()) << path;
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone();
}

// A JPEG without its final FFD9 (COCO has such files) and one cut in the middle: cv2.imread decodes both (libjpeg's
// stdio source ends the data with a fake end-of-image marker, missing scan data becomes gray), so m2sa does too,
// to the same pixels.
TEST(ImageIo, JpegWithoutEndMarkerDecodesAsCv2Imread) {
  test::TempDir dir;
  const std::string jpeg = test::read_bytes(test::fixture("images/retina.jpg"));
  ASSERT_GT(jpeg.size(), 1000u);
  ASSERT_EQ(jpeg.substr(jpeg.size() - 2), std::string("\xFF\xD9", 2));
  const at::Tensor whole = decode_image_rgb(jpeg, "retina.jpg");
  test::write_bytes(dir / "no_eoi.jpg", jpeg.substr(0, jpeg.size() - 2));
  const at::Tensor no_eoi = read_image_rgb(dir / "no_eoi.jpg");
  EXPECT_TRUE(at::equal(no_eoi, whole));
  EXPECT_TRUE(at::equal(no_eoi, cv2_imread_rgb(dir / "no_eoi.jpg")));
  test::write_bytes(dir / "cut.jpg", jpeg.substr(0, jpeg.size() / 2));
  const at::Tensor cut = read_image_rgb(dir / "cut.jpg");
  EXPECT_EQ(cut.sizes(), whole.sizes());
  EXPECT_TRUE(at::equal(cut, cv2_imread_rgb(dir / "cut.jpg")));
  EXPECT_FALSE(at::equal(cut, whole));
}

// A JPEG with an EXIF APP1 segment holding only IFD0's Orientation tag (0x0112, SHORT), inserted after SOI.
std::string with_exif_orientation(const std::string& jpeg, uint16_t orientation, bool big_endian) {
  std::string tiff = big_endian ? std::string("MM\0*\0\0\0\x08", 8) : std::string("II*\0\x08\0\0\0", 8);
  auto u16 = [&](uint16_t v) {
    return big_endian ? std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)}
                      : std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
  };
  auto u32 = [&](uint32_t v) { return big_endian ? u16(v >> 16) + u16(v & 0xFFFF) : u16(v & 0xFFFF) + u16(v >> 16); };
  tiff += u16(1) + u16(0x0112) + u16(3) + u32(1) + u16(orientation) + u16(0) + u32(0);
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const uint16_t len = static_cast<uint16_t>(payload.size() + 2);
  const std::string app1 = std::string("\xFF\xE1", 2) + static_cast<char>(len >> 8) + static_cast<char>(len & 0xFF) + payload;
  return jpeg.substr(0, 2) + app1 + jpeg.substr(2);
}

// cv2.imread (IMREAD_COLOR) turns a JPEG by its EXIF orientation, and the size probe of the data loaders must say the
// decoded size (collate checks the two agree).
TEST(ImageIo, ExifOrientationIsAppliedAsCv2ImreadAndTheHeaderProbeAgrees) {
  test::TempDir dir;
  cv::Mat m(30, 50, CV_8UC3);
  cv::randu(m, 0, 255);
  for (int r = 0; r < 10; ++r)
    for (int c = 0; c < 10; ++c) m.at<cv::Vec3b>(r, c) = cv::Vec3b(0, 0, 255);  // a red corner to follow
  std::vector<uchar> buf;
  ASSERT_TRUE(cv::imencode(".jpg", m, buf));
  const std::string plain(buf.begin(), buf.end());
  for (const bool big_endian : {false, true}) {
    for (uint16_t o = 1; o <= 8; ++o) {
      SCOPED_TRACE("orientation " + std::to_string(o) + (big_endian ? " MM" : " II"));
      const std::string jpeg = with_exif_orientation(plain, o, big_endian);
      const std::string name = "o" + std::to_string(o) + (big_endian ? "m" : "i") + ".jpg";
      test::write_bytes(dir / name, jpeg);
      const at::Tensor ours = read_image_rgb(dir / name);
      const at::Tensor ref = cv2_imread_rgb(dir / name);
      EXPECT_TRUE(at::equal(ours, ref));
      const auto [w, h] = image_header_size(jpeg);
      EXPECT_EQ(h, ours.size(0));
      EXPECT_EQ(w, ours.size(1));
      EXPECT_EQ(ours.size(0), o >= 5 ? 50 : 30);
    }
  }
}

// A PNG whose IHDR claims another size (the CRC is left wrong: the size check must come first).
std::string png_with_size(uint32_t w, uint32_t h) {
  std::string png = encode_png(cv::Mat(2, 2, CV_8UC3, cv::Scalar(1, 2, 3)));
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<char>((w >> (24 - 8 * i)) & 0xFF);
    png[20 + i] = static_cast<char>((h >> (24 - 8 * i)) & 0xFF);
  }
  return png;
}

TEST(ImageIo, ZeroPixelImageIsRefused) {
  expect_error([&] { decode_image_rgb(png_with_size(0, 5), "zero.png"); }, {"zero.png"});
  expect_error([&] { decode_image_rgb(png_with_size(5, 0), "zero2.png"); }, {"zero2.png"});
}

TEST(ImageIo, HugeHeaderIsRefusedBeforeDecoding) {
  expect_error([&] { decode_image_rgb(png_with_size(100000, 100000), "huge.png"); },
               {"huge.png", "100000x100000", "limit"});
  // Sizes whose product overflows 64 bits must not slip through the limit.
  expect_error([&] { decode_image_rgb(png_with_size(0xFFFFFFFFu, 0xFFFFFFFFu), "overflow.png"); },
               {"overflow.png", "limit"});
}

TEST(ImageIo, ConfigurablePixelLimit) {
  const std::string png = encode_png(cv::Mat(20, 30, CV_8UC3, cv::Scalar(0, 0, 0)));
  ImageLimits small;
  small.max_pixels = 599;
  expect_error([&] { decode_image_rgb(png, "small.png", small); }, {"small.png", "30x20", "599"});
  small.max_pixels = 600;
  EXPECT_EQ(decode_image_rgb(png, "ok.png", small).size(0), 20);
}

}  // namespace
}  // namespace m2sa
