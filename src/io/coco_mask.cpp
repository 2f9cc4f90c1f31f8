#include "m2sa/io/coco_mask.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "m2sa/core/error.h"

namespace m2sa::coco {

using json = nlohmann::json;

// ---- compressed counts (maskApi.c rleToString / rleFrString) ----

std::string counts_to_string(const std::vector<uint32_t>& counts) {
  std::string s;
  s.reserve(counts.size() * 2);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= static_cast<int64_t>(counts[i - 2]);
    bool more = true;
    while (more) {
      int c = static_cast<int>(x & 0x1f);
      x >>= 5;  // arithmetic shift, as on a C `long`
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s += static_cast<char>(c + 48);
    }
  }
  return s;
}

std::vector<uint32_t> counts_from_string(std::string_view s, const std::string& what) {
  std::vector<uint32_t> counts;
  counts.reserve(s.size());
  std::size_t p = 0;
  while (p < s.size()) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    const std::size_t start = p;
    while (more) {
      if (p >= s.size()) fail(what, ": compressed RLE string ends inside a value (at character ", start, ")");
      const int ch = static_cast<unsigned char>(s[p]);
      if (ch < 48 || ch > 111)
        fail(what, ": compressed RLE string has character ", ch < 32 || ch > 126 ? "\\x" : "'",
             ch < 32 || ch > 126 ? std::to_string(ch) : std::string(1, static_cast<char>(ch)),
             ch < 32 || ch > 126 ? "" : "'", " at position ", p, ", expected '0'..'o' (ASCII 48..111)");
      if (k >= 12) fail(what, ": compressed RLE value starting at character ", start, " is too long");
      const int c = ch - 48;
      x |= static_cast<int64_t>(c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= -(int64_t{1} << (5 * k));  // sign-extend
    }
    if (counts.size() > 2) x += counts[counts.size() - 2];
    if (x < 0 || x > std::numeric_limits<uint32_t>::max())
      fail(what, ": compressed RLE run ", counts.size(), " is ", x, ", expected 0 .. 2^32-1");
    counts.push_back(static_cast<uint32_t>(x));
  }
  return counts;
}

// ---- decode / encode ----

void check_rle(const Rle& rle, const std::string& what) {
  if (rle.h < 0 || rle.w < 0) fail(what, ": negative size [", rle.h, ", ", rle.w, "]");
  uint64_t total = 0;
  for (uint32_t c : rle.counts) total += c;
  const uint64_t expected = static_cast<uint64_t>(rle.h) * static_cast<uint64_t>(rle.w);
  if (total != expected)
    fail(what, ": RLE runs cover ", total, " pixels but its size [", rle.h, ", ", rle.w, "] has ", expected);
}

at::Tensor decode(const Rle& rle, const std::string& what) {
  check_rle(rle, what);
  // Runs are column-major: fill a [w, h] buffer run by run, then transpose.
  at::Tensor col = at::empty({rle.w, rle.h}, at::kByte);
  uint8_t* p = col.data_ptr<uint8_t>();
  uint8_t v = 0;
  for (uint32_t run : rle.counts) {
    std::memset(p, v, run);
    p += run;
    v = !v;
  }
  return col.t().contiguous();
}

void decode_into(const Rle& rle, uint8_t* out, bool accumulate, const std::string& what) {
  at::Tensor m = decode(rle, what);
  const uint8_t* src = m.data_ptr<uint8_t>();
  const int64_t n = rle.h * rle.w;
  if (accumulate) {
    for (int64_t i = 0; i < n; ++i) out[i] |= src[i];
  } else {
    std::memcpy(out, src, static_cast<std::size_t>(n));
  }
}

Rle encode(const uint8_t* mask, int64_t h, int64_t w) {
  Rle r;
  r.h = h;
  r.w = w;
  const int64_t a = h * w;
  uint8_t p = 0;
  uint32_t c = 0;
  for (int64_t j = 0; j < a; ++j) {
    const int64_t y = j % h, x = j / h;
    const uint8_t t = mask[y * w + x] ? 1 : 0;
    if (t != p) {
      r.counts.push_back(c);
      c = 0;
      p = t;
    }
    ++c;
  }
  r.counts.push_back(c);
  return r;
}

Rle encode(const at::Tensor& mask) {
  M2SA_CHECK(mask.dim() == 2 && (mask.scalar_type() == at::kByte || mask.scalar_type() == at::kBool),
             "coco::encode: expected a uint8 or bool [H, W] mask, got ", mask.scalar_type(), " ", mask.sizes());
  at::Tensor m = mask.to(at::kByte).contiguous().cpu();
  return encode(m.data_ptr<uint8_t>(), m.size(0), m.size(1));
}

// ---- polygons (maskApi.c rleFrPoly; kept statement by statement so the arithmetic is the same) ----

Rle from_polygon(const std::vector<double>& xy, int64_t h_, int64_t w_) {
  M2SA_CHECK(h_ >= 0 && w_ >= 0, "coco::from_polygon: negative image size [", h_, ", ", w_, "]");
  const std::size_t k0 = xy.size() / 2;
  M2SA_CHECK(k0 >= 1, "coco::from_polygon: a polygon needs at least one point, got ", xy.size(), " numbers");
  for (double v : xy)
    M2SA_CHECK(std::isfinite(v) && std::fabs(v) < 1e8, "coco::from_polygon: coordinate ", v, " is not a finite number");
  const uint64_t h = static_cast<uint64_t>(h_), w = static_cast<uint64_t>(w_);
  const double scale = 5;
  std::size_t k = k0;
  std::vector<int> x(k + 1), y(k + 1);
  for (std::size_t j = 0; j < k; ++j) x[j] = static_cast<int>(scale * xy[j * 2 + 0] + .5);
  x[k] = x[0];
  for (std::size_t j = 0; j < k; ++j) y[j] = static_cast<int>(scale * xy[j * 2 + 1] + .5);
  y[k] = y[0];
  std::size_t m = 0;
  for (std::size_t j = 0; j < k; ++j)
    m += static_cast<std::size_t>(std::max(std::abs(x[j] - x[j + 1]), std::abs(y[j] - y[j + 1]))) + 1;
  std::vector<int> u(m), v(m);
  m = 0;
  for (std::size_t j = 0; j < k; ++j) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
    const int dx = std::abs(xe - xs), dy = std::abs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) {
      std::swap(xs, xe);
      std::swap(ys, ye);
    }
    const double s = dx >= dy ? static_cast<double>(ye - ys) / dx : static_cast<double>(xe - xs) / dy;
    if (dx >= dy) {
      for (int d = 0; d <= dx; ++d) {
        const int t = flip ? dx - d : d;
        u[m] = t + xs;
        v[m] = static_cast<int>(ys + s * t + .5);
        ++m;
      }
    } else {
      for (int d = 0; d <= dy; ++d) {
        const int t = flip ? dy - d : d;
        v[m] = t + ys;
        u[m] = static_cast<int>(xs + s * t + .5);
        ++m;
      }
    }
  }
  // points along the y-boundary, downsampled
  k = m;
  m = 0;
  std::vector<int> bx(k), by(k);
  for (std::size_t j = 1; j < k; ++j) {
    if (u[j] == u[j - 1]) continue;
    double xd = static_cast<double>(u[j] < u[j - 1] ? u[j] : u[j] - 1);
    xd = (xd + .5) / scale - .5;
    if (std::floor(xd) != xd || xd < 0 || xd > static_cast<double>(w - 1)) continue;
    double yd = static_cast<double>(v[j] < v[j - 1] ? v[j] : v[j - 1]);
    yd = (yd + .5) / scale - .5;
    if (yd < 0) yd = 0;
    else if (yd > static_cast<double>(h)) yd = static_cast<double>(h);
    yd = std::ceil(yd);
    bx[m] = static_cast<int>(xd);
    by[m] = static_cast<int>(yd);
    ++m;
  }
  // rle from the boundary points
  k = m;
  std::vector<uint32_t> a(k + 1);
  for (std::size_t j = 0; j < k; ++j) a[j] = static_cast<uint32_t>(bx[j] * static_cast<int>(h) + by[j]);
  a[k++] = static_cast<uint32_t>(h * w);
  std::sort(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k));
  uint32_t p = 0;
  for (std::size_t j = 0; j < k; ++j) {
    const uint32_t t = a[j];
    a[j] -= p;
    p = t;
  }
  Rle r;
  r.h = h_;
  r.w = w_;
  std::size_t j = 0;
  r.counts.push_back(a[j++]);
  while (j < k) {
    if (a[j] > 0) {
      r.counts.push_back(a[j++]);
    } else {
      ++j;
      if (j < k) r.counts.back() += a[j++];
    }
  }
  return r;
}

Rle from_bbox(const std::array<double, 4>& bb, int64_t h, int64_t w) {
  const double xs = bb[0], xe = xs + bb[2];
  const double ys = bb[1], ye = ys + bb[3];
  return from_polygon({xs, ys, xs, ye, xe, ye, xe, ys}, h, w);
}

// ---- merge / area / bbox (maskApi.c rleMerge / rleArea / rleToBbox) ----

Rle merge(const std::vector<Rle>& rles, bool intersect) {
  if (rles.empty()) return Rle{};
  for (std::size_t i = 0; i < rles.size(); ++i) {
    check_rle(rles[i], "coco::merge: input " + std::to_string(i));
    if (rles[i].h != rles[0].h || rles[i].w != rles[0].w)
      fail("coco::merge: input ", i, " is ", rles[i].h, "x", rles[i].w, " but input 0 is ", rles[0].h, "x", rles[0].w);
  }
  if (rles.size() == 1) return rles[0];
  std::vector<uint32_t> cnts = rles[0].counts;
  for (std::size_t i = 1; i < rles.size(); ++i) {
    const std::vector<uint32_t> A = cnts;
    const std::vector<uint32_t>& B = rles[i].counts;
    cnts.clear();
    if (A.empty() || B.empty()) {  // 0x0 masks
      cnts = A.empty() ? B : A;
      continue;
    }
    uint32_t ca = A[0], cb = B[0], cc = 0, ct = 1;
    bool v = false, va = false, vb = false;
    std::size_t a = 1, b = 1;
    while (ct > 0) {
      const uint32_t c = std::min(ca, cb);
      cc += c;
      ct = 0;
      ca -= c;
      if (!ca && a < A.size()) {
        ca = A[a++];
        va = !va;
      }
      ct += ca;
      cb -= c;
      if (!cb && b < B.size()) {
        cb = B[b++];
        vb = !vb;
      }
      ct += cb;
      const bool vp = v;
      v = intersect ? (va && vb) : (va || vb);
      if (v != vp || ct == 0) {
        cnts.push_back(cc);
        cc = 0;
      }
    }
  }
  Rle r;
  r.h = rles[0].h;
  r.w = rles[0].w;
  r.counts = std::move(cnts);
  return r;
}

uint64_t area(const Rle& rle) {
  uint64_t a = 0;
  for (std::size_t j = 1; j < rle.counts.size(); j += 2) a += rle.counts[j];
  return a;
}

std::array<double, 4> bbox(const Rle& rle) {
  const uint64_t h = static_cast<uint64_t>(rle.h);
  std::size_t m = (rle.counts.size() / 2) * 2;
  if (m == 0 || h == 0) return {0, 0, 0, 0};
  uint64_t xs = static_cast<uint64_t>(rle.w), ys = h, xe = 0, ye = 0, cc = 0, xp = 0;
  for (std::size_t j = 0; j < m; ++j) {
    cc += rle.counts[j];
    const uint64_t t = cc - j % 2;
    const uint64_t y = t % h, x = (t - y) / h;
    if (j % 2 == 0) {
      xp = x;
    } else if (xp < x) {
      ys = 0;
      ye = h - 1;
    }
    xs = std::min(xs, x);
    xe = std::max(xe, x);
    ys = std::min(ys, y);
    ye = std::max(ye, y);
  }
  return {static_cast<double>(xs), static_cast<double>(ys), static_cast<double>(xe - xs + 1),
          static_cast<double>(ye - ys + 1)};
}

// ---- COCO `segmentation` values ----

namespace {

int64_t size_value(const json& v, const std::string& what, const char* name) {
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    fail(what, ": segmentation.size ", name, " must be an integer, got ", v.dump());
  const int64_t n = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  if (n < 0 || n > (int64_t{1} << 20)) fail(what, ": segmentation.size ", name, " = ", n, " is out of range");
  return n;
}

Rle rle_dict(const json& segm, const std::string& what) {
  if (!segm.contains("size") || !segm.contains("counts"))
    fail(what, ": an RLE segmentation needs \"size\" and \"counts\", got keys ", [&] {
      std::string k;
      for (auto it = segm.begin(); it != segm.end(); ++it) k += (k.empty() ? "" : ", ") + it.key();
      return "[" + k + "]";
    }());
  const json& size = segm["size"];
  if (!size.is_array() || size.size() != 2) fail(what, ": segmentation.size must be [h, w], got ", size.dump());
  Rle r;
  r.h = size_value(size[0], what, "h");
  r.w = size_value(size[1], what, "w");
  const json& counts = segm["counts"];
  if (counts.is_string()) {
    r.counts = counts_from_string(counts.get_ref<const std::string&>(), what);
  } else if (counts.is_array()) {
    r.counts.reserve(counts.size());
    for (std::size_t i = 0; i < counts.size(); ++i) {
      const json& c = counts[i];
      if (!c.is_number_integer() || c.get<int64_t>() < 0 || c.get<int64_t>() > std::numeric_limits<uint32_t>::max())
        fail(what, ": uncompressed RLE counts[", i, "] = ", c.dump(), ", expected a non-negative integer");
      r.counts.push_back(static_cast<uint32_t>(c.get<int64_t>()));
    }
  } else {
    fail(what, ": segmentation.counts must be a string (compressed RLE) or a list of integers, got ", counts.dump());
  }
  check_rle(r, what);
  return r;
}

std::vector<double> polygon_values(const json& poly, const std::string& what, std::size_t index) {
  if (!poly.is_array()) fail(what, ": polygon ", index, " must be a list of numbers, got ", poly.dump());
  std::vector<double> xy;
  xy.reserve(poly.size());
  for (const json& v : poly) {
    if (!v.is_number()) fail(what, ": polygon ", index, " has a non-number ", v.dump());
    xy.push_back(v.get<double>());
  }
  if (xy.size() < 2) fail(what, ": polygon ", index, " has ", xy.size(), " numbers, expected at least one x, y pair");
  return xy;
}

}  // namespace

Rle segmentation_to_rle(const json& segm, int64_t img_h, int64_t img_w, const std::string& what, bool check_size) {
  M2SA_CHECK(img_h > 0 && img_w > 0, what, ": image size ", img_h, "x", img_w, " is not positive");
  Rle out;
  if (segm.is_array()) {
    if (segm.empty()) fail(what, ": segmentation is an empty list (no polygon)");
    if (segm[0].is_object()) {  // refer datasets: a list of RLE dicts
      std::vector<Rle> parts;
      for (std::size_t i = 0; i < segm.size(); ++i) {
        if (!segm[i].is_object()) fail(what, ": segmentation[", i, "] is not an RLE dict like segmentation[0]");
        parts.push_back(rle_dict(segm[i], what + ": segmentation[" + std::to_string(i) + "]"));
      }
      for (std::size_t i = 0; i < parts.size(); ++i)
        if (parts[i].h != parts[0].h || parts[i].w != parts[0].w)
          fail(what, ": segmentation[", i, "] is ", parts[i].h, "x", parts[i].w, " but segmentation[0] is ",
               parts[0].h, "x", parts[0].w);
      out = merge(parts);
    } else {
      if (segm[0].is_array() && segm[0].size() == 4)
        fail(what, ": polygon 0 has only 4 numbers (2 points); pycocotools frPyObjects would take the whole list "
             "for bounding boxes and fail");
      if (!segm[0].is_array() || segm[0].size() < 4)
        fail(what, ": segmentation[0] must be a polygon [x0, y0, x1, y1, ...] with more than 4 numbers, got ",
             segm[0].dump().substr(0, 80));
      std::vector<Rle> parts;
      for (std::size_t i = 0; i < segm.size(); ++i)
        parts.push_back(from_polygon(polygon_values(segm[i], what, i), img_h, img_w));
      out = merge(parts);
    }
  } else if (segm.is_object()) {
    out = rle_dict(segm, what);
  } else {
    fail(what, ": segmentation must be a list of polygons or an RLE dict, got ", segm.dump().substr(0, 80));
  }
  if (check_size && (out.h != img_h || out.w != img_w))
    fail(what, ": mask size ", out.h, "x", out.w, " (h x w) disagrees with the image size ", img_h, "x", img_w);
  return out;
}

at::Tensor ann_to_mask(const json& segm, int64_t img_h, int64_t img_w, const std::string& what) {
  return decode(segmentation_to_rle(segm, img_h, img_w, what), what);
}

json rle_to_json(const Rle& rle) { return {{"size", {rle.h, rle.w}}, {"counts", counts_to_string(rle.counts)}}; }

}  // namespace m2sa::coco
