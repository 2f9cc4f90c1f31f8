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

// ---- polygons (maskApi.c rleFrPoly, same arithmetic) ----
//
// rleFrPoly walks every edge in 5x upsampled steps and keeps the points where the walk enters a new pixel
// column; points outside the image's columns are dropped and y is clamped to [0, h]. The walk is as long as the
// polygon, not the image: a coordinate of 1e8 asks for gigabytes of walk points. Here each edge is walked only
// where it can yield a kept point, with the same expressions for every point it does compute, so the result is
// maskApi.c's exactly (tests/io/coco_mask_test.cpp compares with a straight port on random polygons):
//  - a shallow edge (|dx| >= |dy|) steps one column per point: only the steps inside the image's columns;
//  - a steep edge steps one row per point: rows inside the image exactly; above or below the image y clamps to
//    0 or h, so there only the columns the walk crosses matter, and those are all the integers between the
//    columns where that part of the walk starts and ends (a steep walk moves at most one column per step).

namespace {

struct PolyBoundary {
  int64_t h, w;
  std::vector<int64_t> points;  // column-major pixel index x * h + y of each kept boundary point

  // A kept point: upsampled column `xd_up` (kept when it is the centre of a column of the image), and the
  // y of maskApi.c's `yd` before the clamp.
  void add(int64_t xd_up, double by) {
    double xd = static_cast<double>(xd_up);
    xd = (xd + .5) / 5 - .5;
    if (std::floor(xd) != xd || xd < 0 || xd > static_cast<double>(w - 1)) return;
    points.push_back(static_cast<int64_t>(xd) * h + static_cast<int64_t>(by));
  }
  double clamp_y(int64_t yd_up) const {
    double yd = static_cast<double>(yd_up);
    yd = (yd + .5) / 5 - .5;
    if (yd < 0) yd = 0;
    else if (yd > static_cast<double>(h)) yd = static_cast<double>(h);
    return std::ceil(yd);
  }
  // The step from walk point (pu, pv) to (cu, cv).
  void step(int64_t pu, int64_t pv, int64_t cu, int64_t cv) {
    if (cu == pu) return;
    add(cu < pu ? cu : cu - 1, clamp_y(std::min(cv, pv)));
  }
  // Every column boundary between upsampled columns u0 and u1 crossed at clamped y `by`.
  void crossings(int64_t u0, int64_t u1, double by) {
    const int64_t lo = std::max<int64_t>(std::min(u0, u1), 2), hi = std::min<int64_t>(std::max(u0, u1) - 1, 5 * w - 3);
    for (int64_t xd_up = lo + ((2 - lo) % 5 + 5) % 5; xd_up <= hi; xd_up += 5) add(xd_up, by);
  }
};

// Walk points d in [a, b] of one edge as pairs (d - 1, d), each point as maskApi.c computes it.
template <typename PointFn>
void poly_walk(PolyBoundary& out, const PointFn& point, int64_t a, int64_t b) {
  if (a > b) return;
  auto [pu, pv] = point(a - 1);
  for (int64_t d = a; d <= b; ++d) {
    auto [cu, cv] = point(d);
    out.step(pu, pv, cu, cv);
    pu = cu;
    pv = cv;
  }
}

}  // namespace

Rle from_polygon(const std::vector<double>& xy, int64_t h_, int64_t w_) {
  M2SA_CHECK(h_ >= 0 && w_ >= 0, "coco::from_polygon: negative image size [", h_, ", ", w_, "]");
  M2SA_CHECK(w_ == 0 || h_ <= int64_t(std::numeric_limits<uint32_t>::max()) / w_, "coco::from_polygon: image of ",
             h_, " x ", w_, " pixels is too large for COCO RLE (32-bit counts)");
  const std::size_t k0 = xy.size() / 2;
  M2SA_CHECK(k0 >= 1, "coco::from_polygon: a polygon needs at least one point, got ", xy.size(), " numbers");
  for (double v : xy)
    M2SA_CHECK(std::isfinite(v) && std::fabs(v) < 1e8, "coco::from_polygon: coordinate ", v, " is not a finite number");
  const uint64_t h = static_cast<uint64_t>(h_), w = static_cast<uint64_t>(w_);
  const double scale = 5;
  const std::size_t k = k0;
  // |coordinate| < 1e8, so every upsampled value and difference fits an int, as in maskApi.c.
  std::vector<int> x(k + 1), y(k + 1);
  for (std::size_t j = 0; j < k; ++j) x[j] = static_cast<int>(scale * xy[j * 2 + 0] + .5);
  x[k] = x[0];
  for (std::size_t j = 0; j < k; ++j) y[j] = static_cast<int>(scale * xy[j * 2 + 1] + .5);
  y[k] = y[0];
  PolyBoundary boundary{h_, w_, {}};
  // The step into an edge's first point (the previous edge's last point, the same vertex) never changes column,
  // so each edge is walked on its own: pairs (d - 1, d) for d in 1..D.
  for (std::size_t j = 0; j < k; ++j) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
    const int dx = std::abs(xe - xs), dy = std::abs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) {
      std::swap(xs, xe);
      std::swap(ys, ye);
    }
    const double s = dx >= dy ? static_cast<double>(ye - ys) / dx : static_cast<double>(xe - xs) / dy;
    const int64_t D = dx >= dy ? dx : dy;
    auto tof = [&](int64_t d) { return flip ? D - d : d; };
    if (dx >= dy) {
      auto point = [&](int64_t d) {
        const int64_t t = tof(d);
        return std::pair<int64_t, int64_t>(t + xs, static_cast<int>(ys + s * t + .5));
      };
      // Kept steps end in upsampled columns 2 .. 5w-2; u = t + xs moves one column per step.
      const int64_t u_lo = -1, u_hi = 5 * static_cast<int64_t>(w) + 1;
      const int64_t a = flip ? D + xs - u_hi : u_lo - xs, b = flip ? D + xs - u_lo : u_hi - xs;
      poly_walk(boundary, point, std::max<int64_t>(a, 1), std::min<int64_t>(b, D));
    } else {
      auto point = [&](int64_t d) {
        const int64_t t = tof(d);
        return std::pair<int64_t, int64_t>(static_cast<int>(xs + s * t + .5), t + ys);
      };
      // Pairs whose lower row min(pv, cv) lies in 0 .. 5h+2 are walked; below it y clamps to 0, above to h.
      // min(pv, cv) is d - 1 + ys, or D - d + ys when flipped.
      const int64_t v_hi = 5 * static_cast<int64_t>(h) + 2;
      const int64_t a = std::max<int64_t>(flip ? D + ys - v_hi : 1 - ys, 1);
      const int64_t b = std::min<int64_t>(flip ? D + ys : v_hi + 1 - ys, D);
      auto clamped = [&](int64_t from, int64_t to) {  // pairs from..to, all outside the image's rows
        if (from > to) return;
        const int64_t low_row = flip ? D - from + ys : from - 1 + ys;
        boundary.crossings(point(from - 1).first, point(to).first, low_row < 0 ? 0.0 : static_cast<double>(h));
      };
      if (a > b) {
        clamped(1, D);
      } else {
        clamped(1, a - 1);
        poly_walk(boundary, point, a, b);
        clamped(b + 1, D);
      }
    }
  }
  // rle from the boundary points
  std::vector<int64_t>& a = boundary.points;
  a.push_back(static_cast<int64_t>(h * w));
  std::sort(a.begin(), a.end());
  const std::size_t n = a.size();
  int64_t p = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const int64_t t = a[j];
    a[j] -= p;
    p = t;
  }
  Rle r;
  r.h = h_;
  r.w = w_;
  std::size_t j = 0;
  r.counts.push_back(static_cast<uint32_t>(a[j++]));
  while (j < n) {
    if (a[j] > 0) {
      r.counts.push_back(static_cast<uint32_t>(a[j++]));
    } else {
      ++j;
      if (j < n) r.counts.back() += static_cast<uint32_t>(a[j++]);
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
