#pragma once
// The `m2sa infer --batch FILE.jsonl` input: one JSON object per line, {"image": PATH, "question": TEXT} with an
// optional "id" (string or integer); blank lines are skipped. Relative image paths are resolved against `image_root`
// (default: the JSONL file's folder). Each item gets an output folder name: the sanitised id, else the line number
// zero-padded to 4 digits ("0007").
//
// A bad line (not JSON, not an object, a missing / mistyped / unknown field, a duplicate id or output folder) does
// not stop the others: it becomes a BatchLineError naming the file, the line and the field. Only a missing or
// unreadable file, or one without any line (good or bad), is an error of the whole call.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace m2sa::infer {

struct BatchItem {
  int64_t line = 0;                 // 1-based line number in the file
  std::string id;                   // as given ("" if absent)
  std::string folder;               // output sub-folder name (unique)
  std::filesystem::path image;      // resolved path
  std::string image_as_given;       // the "image" value
  std::string question;
};

struct BatchLineError {
  int64_t line = 0;
  std::string message;  // "<file>:<line>: <what is wrong>"
};

struct BatchFile {
  std::vector<BatchItem> items;         // the good lines, in file order
  std::vector<BatchLineError> errors;   // the bad lines, in file order
};

BatchFile read_batch_file(const std::filesystem::path& path, const std::filesystem::path& image_root = {});

}  // namespace m2sa::infer
