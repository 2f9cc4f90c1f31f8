// TensorBoard event files (io/tensorboard_events.h): CRC-32C, the TFRecord framing, the Event encoding, torn
// records and the resume trim. TensorBoard's own reader checks the files in tests/train/trainer_tensorboard_test.cpp.
#include "m2sa/io/tensorboard_events.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "m2sa/core/read_file.h"
#include "test_util.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

uint64_t le64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}
uint32_t le32(const std::string& s, size_t at) { return static_cast<uint32_t>(le64(s + std::string(4, '\0'), at)); }

TEST(TensorboardEvents, Crc32cKnownAnswers) {
  // RFC 3720 appendix B.4 and the CRC catalogue's check value.
  EXPECT_EQ(io::crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(io::crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(io::crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(io::crc32c(ascending), 0x46DD794Eu);
  // Masking (tensorflow/core/lib/hash/crc32c.h): rotate right by 15, add 0xa282ead8.
  const uint32_t c = io::crc32c("abc");
  EXPECT_EQ(io::masked_crc32c("abc"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorboardEvents, RecordFraming) {
  const std::string r = io::tfrecord("hello");
  ASSERT_EQ(r.size(), 8u + 4u + 5u + 4u);
  EXPECT_EQ(le64(r, 0), 5u);
  EXPECT_EQ(le32(r, 8), io::masked_crc32c(r.substr(0, 8)));
  EXPECT_EQ(r.substr(12, 5), "hello");
  EXPECT_EQ(le32(r, 17), io::masked_crc32c("hello"));
}

TEST(TensorboardEvents, EventEncodingBytes) {
  // Hand-encoded: wall_time 1.5 (field 1, fixed64), step 3 (field 2, varint), summary (field 5) holding one value
  // (field 1) with tag "a" (field 1) and simple_value 2.0f (field 2, fixed32).
  const std::string e = io::scalar_event(1.5, 3, "a", 2.0f);
  const std::string expected = std::string("\x09\x00\x00\x00\x00\x00\x00\xF8\x3F", 9) + "\x10\x03" +
                               std::string("\x2A\x0A\x0A\x08\x0A\x01" "a" "\x15\x00\x00\x00\x40", 12);
  EXPECT_EQ(e, expected);
  EXPECT_EQ(io::file_version_event(0.0).substr(9), std::string("\x1A\x0D") + "brain.Event:2");
}

TEST(TensorboardEvents, DecodeRoundTrip) {
  const io::DecodedEvent s = io::decode_event(io::scalar_event(12.25, 300, "train/loss", 0.125f), "test");
  EXPECT_EQ(s.wall_time, 12.25);
  EXPECT_EQ(s.step, 300);
  ASSERT_EQ(s.values.size(), 1u);
  EXPECT_EQ(s.values[0].tag, "train/loss");
  EXPECT_EQ(s.values[0].simple_value, 0.125f);
  const io::DecodedEvent i = io::decode_event(io::image_event(1, 7, "val_preview/item-0", "PNGBYTES", 4, 8, 3), "t");
  ASSERT_EQ(i.values.size(), 1u);
  EXPECT_EQ(i.values[0].image_png, std::string("PNGBYTES"));
  EXPECT_FALSE(i.values[0].simple_value.has_value());
  // A length that runs past the payload is an error naming the file, not a read out of bounds.
  std::string bad = io::scalar_event(1, 1, "x", 1.0f);
  bad.resize(bad.size() - 3);
  EXPECT_NE(test::m2sa_error_of([&] { io::decode_event(bad, "run/tb/events.x"); }).find("run/tb/events.x"),
            std::string::npos);
}

TEST(TensorboardEvents, WriterFileIsReadBackAndTornTailIsDetected) {
  test::TempDir dir;
  fs::path file;
  {
    io::EventWriter w(dir.path() / "tb");
    file = w.file();
    for (int s = 1; s <= 3; ++s) w.add_scalar("train/loss", s, 1.0 / s);
  }
  EXPECT_EQ(file.filename().string().rfind("events.out.tfevents.", 0), 0u);
  EXPECT_EQ(io::event_files(dir.path() / "tb"), std::vector<fs::path>{file});
  io::TfRecordScan scan = io::read_tfrecords(file);
  ASSERT_EQ(scan.records.size(), 4u);  // file_version + 3 scalars
  EXPECT_TRUE(scan.complete);
  EXPECT_EQ(io::decode_event(scan.records[0], "f").file_version, "brain.Event:2");
  EXPECT_EQ(io::decode_event(scan.records[3], "f").step, 3);

  // A kill in the middle of a record: the complete ones are read, the rest is reported.
  const std::string bytes = read_file(file);
  const std::string torn = bytes + io::tfrecord(io::scalar_event(0, 4, "train/loss", 0.25f)).substr(0, 15);
  test::write_bytes(file, torn);
  scan = io::read_tfrecords(file);
  EXPECT_EQ(scan.records.size(), 4u);
  EXPECT_FALSE(scan.complete);
  EXPECT_EQ(scan.valid_bytes, bytes.size());
  // A flipped payload byte fails its checksum: reading stops before that record.
  std::string flipped = bytes;
  flipped[flipped.size() - 6] ^= 0x01;
  test::write_bytes(file, flipped);
  EXPECT_EQ(io::read_tfrecords(file).records.size(), 3u);
}

TEST(TensorboardEvents, TrimDropsLaterStepsAndTornTail) {
  test::TempDir dir;
  const fs::path tb = dir.path() / "tb";
  fs::path file;
  {
    io::EventWriter w(tb);
    file = w.file();
    for (int s = 1; s <= 5; ++s) {
      w.add_scalar("train/loss", s, s);
      w.add_scalar("train/lr", s, 0.1 * s);
    }
  }
  test::write_bytes(file, read_file(file) + "\x05\x00");  // torn tail
  EXPECT_EQ(io::trim_events_after(tb, 3), 4 + 1);
  const io::TfRecordScan scan = io::read_tfrecords(file);
  EXPECT_TRUE(scan.complete);
  ASSERT_EQ(scan.records.size(), 1u + 6u);
  for (size_t k = 1; k < scan.records.size(); ++k) EXPECT_LE(io::decode_event(scan.records[k], "f").step, 3);
  EXPECT_EQ(io::trim_events_after(tb, 3), 0);  // nothing more to drop: the file is left alone
}

}  // namespace
}  // namespace m2sa
