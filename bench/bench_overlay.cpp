// Speed of the overlay renderer, and a sample picture to look at.
// Usage: bench_overlay [OUT.png] [H W N]   (default: no file, 768 1024 6)
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "m2sa/vision/image_io.h"
#include "m2sa/vision/overlay.h"

int main(int argc, char** argv) {
  const std::string out_path = argc > 1 ? argv[1] : "";
  const int64_t h = argc > 2 ? std::atoll(argv[2]) : 768, w = argc > 3 ? std::atoll(argv[3]) : 1024;
  const int64_t n = argc > 4 ? std::atoll(argv[4]) : 6;
  // A smooth gradient "photo" and elliptical targets.
  at::Tensor ys = at::arange(h, at::kFloat).view({h, 1, 1}) / h, xs = at::arange(w, at::kFloat).view({1, w, 1}) / w;
  at::Tensor img = (at::cat({ys.expand({h, w, 1}), xs.expand({h, w, 1}), (ys * xs).expand({h, w, 1})}, 2) * 200 + 30)
                       .to(at::kByte)
                       .contiguous();
  std::vector<at::Tensor> masks;
  std::vector<std::string> labels;
  const char* names[] = {"the mug on the left", "its handle", "the laptop's screen",
                         "a label that is much too long to fit into the legend box, so it is cut", "keyboard",
                         "\xe6\x9d\xaf\xe5\xad\x90 (non-ASCII)"};
  for (int64_t k = 0; k < n; ++k) {
    const double cy = 0.2 + 0.6 * ((k * 37) % 11) / 10.0, cx = 0.15 + 0.7 * ((k * 53) % 13) / 12.0;
    at::Tensor dy = (at::arange(h, at::kFloat).view({h, 1}) / h - cy) / 0.12;
    at::Tensor dx = (at::arange(w, at::kFloat).view({1, w}) / w - cx) / 0.09;
    masks.push_back((dy * dy + dx * dx).lt(1.0));
    labels.push_back(names[k % 6]);
  }
  at::Tensor stacked = at::stack(masks);
  m2sa::vision::OverlayLayout layout;
  at::Tensor out = m2sa::vision::overlay_masks(img, stacked, labels, {}, &layout);
  const int reps = 10;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) out = m2sa::vision::overlay_masks(img, stacked, labels, {}, &layout);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  std::printf("overlay %lldx%lld, %lld masks: %.2f ms (legend %dx%d at %d,%d, %lld entries, line %d px)\n",
              (long long)w, (long long)h, (long long)n, ms, layout.legend.width, layout.legend.height, layout.legend.x,
              layout.legend.y, (long long)layout.shown_entries, layout.line_height);
  if (!out_path.empty()) {
    m2sa::write_image(out_path, out);
    std::printf("wrote %s\n", out_path.c_str());
  }
  return 0;
}
