#include "m2sa/io/tensorboard_events.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/core/read_file.h"
#include "m2sa/core/strings.h"

namespace m2sa::io {
namespace fs = std::filesystem;

namespace {

// CRC-32C, reflected polynomial 0x82F63B78, one table byte at a time: the events are small and written once per
// step, so a hardware or slicing-by-8 version would buy nothing measurable.
const std::array<uint32_t, 256>& crc32c_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

std::string le_bytes(uint64_t v, int n) {
  std::string s(static_cast<size_t>(n), '\0');
  for (int i = 0; i < n; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

uint64_t le_value(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// ---- protobuf wire format: the few field kinds an Event needs
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire) { put_varint(out, static_cast<uint64_t>(field) << 3 | wire); }
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}
void put_int(std::string& out, int field, int64_t v) {
  put_tag(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));
}
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_tag(out, field, 1);
  out += le_bytes(bits, 8);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_tag(out, field, 5);
  out += le_bytes(bits, 4);
}

std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  put_int(e, 2, step);
  return e;
}

std::string summary_event(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

// A reader of the same wire format: fields are visited in order, unknown ones skipped.
class WireReader {
 public:
  WireReader(std::string_view bytes, const std::string& where) : p_(bytes), where_(where) {}
  bool done() const { return pos_ >= p_.size(); }
  // Reads the next field's key; returns {field, wire type}.
  std::pair<int, int> key() {
    const uint64_t k = varint();
    return {static_cast<int>(k >> 3), static_cast<int>(k & 7)};
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      M2SA_CHECK(pos_ < p_.size(), where_, ": truncated varint");
      const auto b = static_cast<unsigned char>(p_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(where_, ": varint longer than 10 bytes");
  }
  uint64_t fixed(int n) {
    M2SA_CHECK(p_.size() - pos_ >= static_cast<size_t>(n), where_, ": truncated fixed", 8 * n, " field");
    const uint64_t v = le_value(p_.data() + pos_, n);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    M2SA_CHECK(n <= p_.size() - pos_, where_, ": a length-delimited field claims ", n, " bytes, ", p_.size() - pos_,
               " remain");
    std::string_view v = p_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); return;
      case 1: fixed(8); return;
      case 2: bytes(); return;
      case 5: fixed(4); return;
      default: fail(where_, ": unsupported protobuf wire type ", wire);
    }
  }

 private:
  std::string_view p_;
  size_t pos_ = 0;
  const std::string& where_;
};

DecodedEvent::Value decode_value(std::string_view bytes, const std::string& where) {
  DecodedEvent::Value v;
  WireReader r(bytes, where);
  while (!r.done()) {
    const auto [field, wire] = r.key();
    if (field == 1 && wire == 2) {
      v.tag = std::string(r.bytes());
    } else if (field == 2 && wire == 5) {
      const auto bits = static_cast<uint32_t>(r.fixed(4));
      float f;
      std::memcpy(&f, &bits, sizeof f);
      v.simple_value = f;
    } else if (field == 4 && wire == 2) {
      WireReader img(r.bytes(), where);
      while (!img.done()) {
        const auto [f, w] = img.key();
        if (f == 4 && w == 2)
          v.image_png = std::string(img.bytes());
        else
          img.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  return v;
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  const auto& t = crc32c_table();
  uint32_t c = 0xFFFFFFFFu;
  for (char ch : bytes) c = t[(c ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view payload) {
  const std::string length = le_bytes(payload.size(), 8);
  std::string r = length;
  r += le_bytes(masked_crc32c(length), 4);
  r.append(payload.data(), payload.size());
  r += le_bytes(masked_crc32c(payload), 4);
  return r;
}

TfRecordScan read_tfrecords(const fs::path& file) {
  const std::string data = read_file(file);
  TfRecordScan scan;
  size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < 12) break;
    const std::string_view length(data.data() + pos, 8);
    if (static_cast<uint32_t>(le_value(data.data() + pos + 8, 4)) != masked_crc32c(length)) break;
    const uint64_t n = le_value(length.data(), 8);
    if (n > data.size() - pos - 12 || data.size() - pos - 12 - n < 4) break;
    const std::string_view payload(data.data() + pos + 12, n);
    if (static_cast<uint32_t>(le_value(data.data() + pos + 12 + n, 4)) != masked_crc32c(payload)) break;
    scan.records.emplace_back(payload);
    pos += 12 + n + 4;
  }
  scan.valid_bytes = pos;
  scan.complete = pos == data.size();
  return scan;
}

std::string file_version_event(double wall_time) {
  std::string e;
  put_double(e, 1, wall_time);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string v;
  put_bytes(v, 1, tag);
  put_float(v, 2, value);
  return summary_event(wall_time, step, v);
}

std::string image_event(double wall_time, int64_t step, std::string_view tag, std::string_view png, int64_t height,
                        int64_t width, int64_t channels) {
  std::string image;
  put_int(image, 1, height);
  put_int(image, 2, width);
  put_int(image, 3, channels);
  put_bytes(image, 4, png);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 4, image);
  return summary_event(wall_time, step, v);
}

DecodedEvent decode_event(std::string_view payload, const std::string& where) {
  DecodedEvent e;
  WireReader r(payload, where);
  while (!r.done()) {
    const auto [field, wire] = r.key();
    if (field == 1 && wire == 1) {
      const uint64_t bits = r.fixed(8);
      std::memcpy(&e.wall_time, &bits, sizeof bits);
    } else if (field == 2 && wire == 0) {
      e.step = static_cast<int64_t>(r.varint());
    } else if (field == 3 && wire == 2) {
      e.file_version = std::string(r.bytes());
    } else if (field == 5 && wire == 2) {
      WireReader s(r.bytes(), where);
      while (!s.done()) {
        const auto [f, w] = s.key();
        if (f == 1 && w == 2)
          e.values.push_back(decode_value(s.bytes(), where));
        else
          s.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  return e;
}

// ---------------------------------------------------------------------------------------------- EventWriter

namespace {
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

EventWriter::EventWriter(const fs::path& dir) {
  fs::create_directories(dir);
  static std::atomic<unsigned> counter{0};
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const auto seconds = static_cast<int64_t>(wall_seconds());
  file_ = dir / ("events.out.tfevents." + std::to_string(seconds) + "." + host + "." + std::to_string(::getpid()) +
                 "." + std::to_string(counter++));
  fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(file_.string(), ": cannot create the TensorBoard event file: ", std::strerror(errno));
  append(file_version_event(wall_seconds()));
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::append(const std::string& payload) {
  const std::string record = tfrecord(payload);
  write_all(fd_, record.data(), record.size(), file_);
}

void EventWriter::add_scalar(std::string_view tag, int64_t step, double value) {
  append(scalar_event(wall_seconds(), step, tag, static_cast<float>(value)));
}

void EventWriter::add_image(std::string_view tag, int64_t step, std::string_view png, int64_t height, int64_t width,
                            int64_t channels) {
  append(image_event(wall_seconds(), step, tag, png, height, width, channels));
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && starts_with(e.path().filename().string(), "events.out.tfevents."))
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

int64_t trim_events_after(const fs::path& dir, int64_t last_step) {
  int64_t removed = 0;
  for (const fs::path& file : event_files(dir)) {
    const TfRecordScan scan = read_tfrecords(file);
    std::string kept;
    int64_t dropped = scan.complete ? 0 : 1;
    for (const std::string& record : scan.records) {
      const DecodedEvent e = decode_event(record, file.string());
      if (e.file_version.empty() && e.step > last_step)
        ++dropped;
      else
        kept += tfrecord(record);
    }
    if (dropped > 0) write_file_atomic(file, kept);
    removed += dropped;
  }
  return removed;
}

}  // namespace m2sa::io
