#include "m2sa/vision/pil_resample.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "m2sa/core/error.h"

namespace m2sa {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 22, Pillow's PRECISION_BITS

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, xcount;  // per output index: first source index and number of taps
  std::vector<int32_t> k;         // [out, ksize] fixed-point weights
};

// precompute_coeffs + normalize_coeffs_8bpc (box = whole axis).
Coeffs precompute(int in_size, int out_size, PilFilter filter) {
  const double fsupport = filter == PilFilter::kBilinear ? 1.0 : 2.0;
  const double scale = static_cast<double>(in_size) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = fsupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.xcount.resize(out_size);
  c.k.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // C truncation toward zero
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double v = filter == PilFilter::kBilinear ? bilinear_filter((x + xmin - center + 0.5) * ss)
                                                      : bicubic_filter((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) w[x] /= ww;
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = w[x] * (1 << kPrecisionBits);
      c.k[static_cast<std::size_t>(xx) * c.ksize + x] =
          w[x] < 0 ? static_cast<int32_t>(-0.5 + v) : static_cast<int32_t>(0.5 + v);
    }
    c.xmin[xx] = xmin;
    c.xcount[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t acc) {
  if (acc >= (255 << kPrecisionBits)) return 255;
  if (acc <= 0) return 0;
  return static_cast<uint8_t>(acc >> kPrecisionBits);
}

// in: [rows_in, w_in, C]; out: [rows, w_out, C] from source rows row0 .. row0 + rows.
void horizontal(const uint8_t* in, int w_in, int channels, int row0, int rows, const Coeffs& c, int w_out,
                uint8_t* out) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* src = in + (static_cast<std::size_t>(row0 + r) * w_in) * channels;
      uint8_t* dst = out + static_cast<std::size_t>(r) * w_out * channels;
      for (int xx = 0; xx < w_out; ++xx) {
        const int32_t* k = &c.k[static_cast<std::size_t>(xx) * c.ksize];
        const int xmin = c.xmin[xx], n = c.xcount[xx];
        for (int ch = 0; ch < channels; ++ch) {
          int32_t acc = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < n; ++x) acc += src[(xmin + x) * channels + ch] * k[x];
          dst[xx * channels + ch] = clip8(acc);
        }
      }
    }
  });
}

// in: [h_in, w, C] with the coefficient bounds relative to its first row; out: [h_out, w, C].
void vertical(const uint8_t* in, int w, int channels, const Coeffs& c, int row_shift, int h_out, uint8_t* out) {
  const std::size_t stride = static_cast<std::size_t>(w) * channels;
  at::parallel_for(0, h_out, 16, [&](int64_t begin, int64_t end) {
    for (int64_t yy = begin; yy < end; ++yy) {
      const int32_t* k = &c.k[static_cast<std::size_t>(yy) * c.ksize];
      const int ymin = c.xmin[yy] - row_shift, n = c.xcount[yy];
      uint8_t* dst = out + static_cast<std::size_t>(yy) * stride;
      for (std::size_t i = 0; i < stride; ++i) {
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < n; ++y) acc += in[(ymin + y) * stride + i] * k[y];
        dst[i] = clip8(acc);
      }
    }
  });
}

}  // namespace

at::Tensor pil_resize(const at::Tensor& image, int64_t out_h, int64_t out_w, PilFilter filter) {
  M2SA_CHECK(image.defined() && image.dim() == 3 && image.scalar_type() == at::kByte,
             "pil_resize: expected uint8 [H, W, C], got ", image.defined() ? image.sizes() : at::IntArrayRef{}, " ",
             image.defined() ? image.scalar_type() : at::kByte);
  const int64_t in_h = image.size(0), in_w = image.size(1), channels = image.size(2);
  M2SA_CHECK(in_h > 0 && in_w > 0 && channels > 0, "pil_resize: empty image ", image.sizes());
  M2SA_CHECK(out_h > 0 && out_w > 0, "pil_resize: output size must be positive, got ", out_h, "x", out_w);
  constexpr int64_t kMaxSide = 1 << 20;
  M2SA_CHECK(in_h < kMaxSide && in_w < kMaxSide && out_h < kMaxSide && out_w < kMaxSide,
             "pil_resize: sizes above ", kMaxSide, " are not supported (", in_h, "x", in_w, " -> ", out_h, "x", out_w, ")");
  at::Tensor src = image.cpu().contiguous();
  if (in_h == out_h && in_w == out_w) return src.clone();

  const bool need_h = out_w != in_w, need_v = out_h != in_h;
  const Coeffs ch = precompute(static_cast<int>(in_w), static_cast<int>(out_w), filter);
  const Coeffs cv = precompute(static_cast<int>(in_h), static_cast<int>(out_h), filter);
  const int c = static_cast<int>(channels);

  at::Tensor cur = src;
  int row_shift = 0;
  if (need_h) {
    const int y_first = cv.xmin.front();
    const int y_last = cv.xmin.back() + cv.xcount.back();
    at::Tensor tmp = at::empty({y_last - y_first, out_w, channels}, at::kByte);
    horizontal(src.data_ptr<uint8_t>(), static_cast<int>(in_w), c, y_first, y_last - y_first, ch,
               static_cast<int>(out_w), tmp.data_ptr<uint8_t>());
    cur = tmp;
    row_shift = y_first;
  }
  if (need_v) {
    at::Tensor out = at::empty({out_h, cur.size(1), channels}, at::kByte);
    vertical(cur.data_ptr<uint8_t>(), static_cast<int>(cur.size(1)), c, cv, row_shift, static_cast<int>(out_h),
             out.data_ptr<uint8_t>());
    cur = out;
  }
  return cur;
}

}  // namespace m2sa
