// Input pipeline timings: image decode, SAM preprocessing (Pillow-exact bilinear to 1024 + normalise + pad),
// CLIP preprocessing (Pillow-exact bicubic + crop + normalise), tokenizer + target masking of a LISA prompt.
// Usage: build/bench/bench_preprocess [fixture_dir]   (prints milliseconds per call, best of N)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "m2sa/text/conversation.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/text/tokenizer.h"
#include "m2sa/vision/clip_preprocess.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/vision/sam_preprocess.h"

namespace {
double best_ms(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("M2SA_FIXTURE_DIR");
  const fs::path dir = argc > 1 ? fs::path(argv[1]) : env ? fs::path(env) : fs::path(M2SA_FIXTURE_DIR_DEFAULT);
  std::printf("intra-op threads: %d\n", at::get_num_threads());
  for (const char* name : {"images/astronaut.png", "images/coffee.png", "images/retina.jpg"}) {
    at::Tensor rgb;
    const double decode = best_ms(5, [&] { rgb = m2sa::read_image_rgb(dir / name); });
    const double sam = best_ms(5, [&] { m2sa::sam_preprocess(rgb, 1024); });
    const double clip = best_ms(5, [&] { m2sa::clip_preprocess(rgb); });
    std::printf("%-22s %4lldx%-4lld decode %7.2f ms  sam_preprocess(1024) %7.2f ms  clip_preprocess(224) %6.2f ms\n",
                name, static_cast<long long>(rgb.size(0)), static_cast<long long>(rgb.size(1)), decode, sam, clip);
  }
  const auto tok = m2sa::Tokenizer::load(dir / "llama2_tokenizer.model");
  const std::string conv = m2sa::render_conversation(
      {{"<image>\nWhat is in the image? Please output segmentation mask.", "Sure, the segmentation result is [SEG]."}});
  const double enc = best_ms(20, [&] { m2sa::encode_conversation(tok, conv); });
  std::printf("encode_conversation (1 round, %zu tokens, with target masking): %.3f ms\n",
              m2sa::tokenizer_image_token(tok, conv).size(), enc);
  return 0;
}
