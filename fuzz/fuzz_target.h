#pragma once
// Shared by the fuzz entry points in fuzz/*.cpp. Each file defines one target with M2SA_FUZZ_TARGET(name):
//  - built with -DM2SA_LIBFUZZER (CMake -DM2SA_FUZZ=ON, clang, -fsanitize=fuzzer): it is libFuzzer's
//    LLVMFuzzerTestOneInput, one binary per target;
//  - otherwise a uniquely named function registered under `name`, so that every target links into one binary
//    (tests/fuzz/fuzz_corpus_test.cpp replays fuzz/corpus/<name>/ and fuzz/regressions/<name>/ through it in CI).
// A target feeds the bytes to the real reader and swallows only m2sa::Error (the readers' one way of refusing
// input): any other exception escapes, and libFuzzer or the replay test report it as a finding, as they do a
// crash, a sanitizer report or an abort of a round-trip check.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

#include "m2sa/core/error.h"

namespace m2sa::fuzz {

using TargetFn = int (*)(const uint8_t*, std::size_t);

// name -> function, filled by the static registrars of the targets linked into this binary.
inline std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> targets;
  return targets;
}

struct Registrar {
  Registrar(const char* name, TargetFn fn) { registry()[name] = fn; }
};

// One folder per process (/tmp/m2sa-fuzz-<pid>), removed at exit: readers that only take a path read the bytes from
// a file in it. Fixed names, so a long fuzzing run writes the same few files over and over.
class TempDir {
 public:
  static const std::filesystem::path& get() {
    static TempDir dir;
    return dir.path_;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

 private:
  TempDir() : path_(std::filesystem::path("/tmp") / ("m2sa-fuzz-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
  }
  std::filesystem::path path_;
};

// Writes `size` bytes to <TempDir>/<relative> (creating its folder) and returns the path.
inline std::filesystem::path write_temp(const std::string& relative, const void* data, std::size_t size) {
  const std::filesystem::path path = TempDir::get() / relative;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Runs `fn`; an m2sa::Error is the reader refusing the input, which is fine. Anything else propagates.
// M2SA_FUZZ_VERBOSE=1 prints the refusals (to see which seeds a reader accepts).
template <typename Fn>
int swallow_error(Fn&& fn) {
  try {
    fn();
  } catch (const m2sa::Error& e) {
    static const bool verbose = std::getenv("M2SA_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "fuzz: refused: %s\n", e.what());
  }
  return 0;
}

// A failed invariant of a target (e.g. a round trip that is not the identity): a finding, so abort.
#define M2SA_FUZZ_ASSERT(cond)                                                                   \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);    \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

}  // namespace m2sa::fuzz

#ifdef M2SA_LIBFUZZER
#define M2SA_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size)
#else
#define M2SA_FUZZ_TARGET(name)                                                                             \
  static int m2sa_fuzz_##name(const uint8_t* data, std::size_t size);                                     \
  static const ::m2sa::fuzz::Registrar m2sa_fuzz_registrar_##name(#name, &m2sa_fuzz_##name);              \
  static int m2sa_fuzz_##name(const uint8_t* data, std::size_t size)
#endif
