#pragma once
// TensorBoard event files: TFRecord framing around `tensorflow.Event` protobuf payloads, written and read by hand.
//
// Why no protobuf library: the torch wheel's libtorch_cpu.so carries its own statically linked protobuf and
// exports its symbols (232 `google::protobuf` symbols in torch 2.11.0). Linking Debian's libprotobuf into the same
// process makes two protobuf versions interpose each other's symbols, the failure the tokenizer already met with
// libsentencepiece (include/m2sa/text/sentencepiece_bpe.h). The few fields below are all m2sa writes, so a minimal
// wire-format encoder is smaller and safer; tests/io/tensorboard_events_test.cpp checks the bytes, and
// tests/train/trainer_tensorboard_test.cpp reads our files with TensorBoard's own EventAccumulator.
//
// Record framing (tensorflow/core/lib/io/record_writer.cc):
//   uint64 length (little endian) | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)
//   masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8, crc = CRC-32C (Castagnoli).
// Event (tensorflow/core/util/event.proto): wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
//   summary = 5 (Summary). Summary: repeated Value value = 1. Value: tag = 1, simple_value = 2 (float),
//   image = 4 (Image: height = 1, width = 2, colorspace = 3, encoded_image_string = 4).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace m2sa::io {

uint32_t crc32c(std::string_view bytes);
uint32_t masked_crc32c(std::string_view bytes);

// One framed record.
std::string tfrecord(std::string_view payload);

// The complete records at the start of a file. Reading stops at the first record that is torn (a kill during a
// write) or whose checksums do not match; `valid_bytes` is where that record begins.
struct TfRecordScan {
  std::vector<std::string> records;
  uint64_t valid_bytes = 0;
  bool complete = true;  // false when bytes after valid_bytes were not a valid record
};
TfRecordScan read_tfrecords(const std::filesystem::path& file);

// Event payloads.
std::string file_version_event(double wall_time);  // "brain.Event:2", the first record of every file
std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value);
std::string image_event(double wall_time, int64_t step, std::string_view tag, std::string_view png, int64_t height,
                        int64_t width, int64_t channels);

// What a reader of our own events needs (trimming on resume, tests).
struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // empty unless a file_version event
  struct Value {
    std::string tag;
    std::optional<float> simple_value;
    std::optional<std::string> image_png;
  };
  std::vector<Value> values;
};
// Throws m2sa::Error (naming `where`) on a payload that is not a well-formed Event.
DecodedEvent decode_event(std::string_view payload, const std::string& where);

// Appends events to one new file `<dir>/events.out.tfevents.<seconds>.<host>.<pid>.<n>` (the name TensorBoard
// looks for). Every event is written with one write(2) as soon as it is added, so a kill loses at most the record
// being written (which readers skip as torn).
class EventWriter {
 public:
  explicit EventWriter(const std::filesystem::path& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(std::string_view tag, int64_t step, double value);
  void add_image(std::string_view tag, int64_t step, std::string_view png, int64_t height, int64_t width,
                 int64_t channels);
  const std::filesystem::path& file() const { return file_; }

 private:
  void append(const std::string& payload);
  std::filesystem::path file_;
  int fd_ = -1;
};

// The event files of a run directory's tb/ folder, in name order.
std::vector<std::filesystem::path> event_files(const std::filesystem::path& dir);

// Resume: rewrites every event file in `dir` (atomically) without the events of steps after `last_step` and
// without a torn last record, so that a step replayed after a resume is recorded once. Returns the events removed.
int64_t trim_events_after(const std::filesystem::path& dir, int64_t last_step);

}  // namespace m2sa::io
