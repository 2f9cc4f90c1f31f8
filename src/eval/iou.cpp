#include "m2sa/eval/iou.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <string>

#include "m2sa/core/error.h"

namespace m2sa::eval {

namespace {

std::string describe(const at::Tensor& t) {
  return t.defined() ? c10::str(t.scalar_type(), " ", t.sizes()) : std::string("undefined");
}

bool is_integer(at::ScalarType t) { return at::isIntegralType(t, /*includeBool=*/false); }

// A contiguous CPU tensor of one-byte values (uint8 or bool) for the counting loops. Wider integer types are
// range-checked before narrowing so that e.g. 256 cannot wrap to 0.
at::Tensor host_bytes(const at::Tensor& t, int64_t max_value, const char* what, const char* role) {
  at::Tensor c = t.to(at::kCPU);
  if (c.scalar_type() == at::kBool || c.scalar_type() == at::kByte) return c.contiguous();
  M2SA_CHECK(!(c.lt(0) | c.gt(max_value)).any().item<bool>(), what, ": ", role, " has values outside [0, ",
             max_value, "]");
  return c.to(at::kByte).contiguous();
}

at::Tensor host_pred(const at::Tensor& pred, const char* what) {
  M2SA_CHECK(pred.defined() && (pred.scalar_type() == at::kBool || is_integer(pred.scalar_type())), what,
             ": predictions must be bool or integer 0/1, got ", describe(pred), " (threshold logits first: logits > 0)");
  return host_bytes(pred, 1, what, "predictions (expected 0/1)");
}

at::Tensor host_gt(const at::Tensor& gt, const char* what) {
  M2SA_CHECK(gt.defined() && is_integer(gt.scalar_type()), what,
             ": GT masks must be an integer tensor with values {0, 1, 255}, got ", describe(gt));
  return host_bytes(gt, 255, what, "GT masks (expected 0, 1, 255)");
}

// Ignore map as bytes, nonzero = ignored; undefined stays undefined. Returns the map and its per-mask stride
// (0 when one [H, W] map is shared by all GT masks).
std::pair<at::Tensor, int64_t> host_ignore(const at::Tensor& ignore, const at::Tensor& gt, const char* what) {
  if (!ignore.defined()) return {at::Tensor(), 0};
  M2SA_CHECK(ignore.scalar_type() == at::kBool || is_integer(ignore.scalar_type()), what,
             ": ignore map must be bool or integer, got ", describe(ignore));
  const bool shared = ignore.dim() == 2 && ignore.size(0) == gt.size(1) && ignore.size(1) == gt.size(2);
  const bool per_mask = ignore.dim() == 3 && ignore.sizes() == gt.sizes();
  M2SA_CHECK(shared || per_mask, what, ": ignore map must be [H, W] or [N, H, W] matching GT ", gt.sizes(), ", got ",
             ignore.sizes());
  at::Tensor c = ignore.to(at::kCPU);
  c = (c.scalar_type() == at::kBool || c.scalar_type() == at::kByte) ? c.contiguous() : c.ne(0).contiguous();
  return {c, shared ? 0 : gt.size(1) * gt.size(2)};
}

const uint8_t* bytes_of(const at::Tensor& t) {
  return t.defined() ? static_cast<const uint8_t*>(t.data_ptr()) : nullptr;
}

struct Counts {
  int64_t i1 = 0, i0 = 0, pred1 = 0, pred0 = 0, gt1 = 0, gt0 = 0;
  bool bad_pred = false, bad_gt = false;
};

// One pass over a (prediction, GT) pair of n pixels; branch-free so that the compiler can vectorise it.
template <bool kHasIgnore>
Counts count_pair(const uint8_t* p, const uint8_t* g, const uint8_t* ign, int64_t n) {
  int64_t i1 = 0, i0 = 0, p1s = 0, p0s = 0, g1s = 0, g0s = 0;
  unsigned bad_p = 0, bad_g = 0;
  for (int64_t k = 0; k < n; ++k) {
    const unsigned pv = p[k], gv = g[k];
    unsigned valid = gv != 255u;
    if constexpr (kHasIgnore) valid &= ign[k] == 0u;
    const unsigned t1 = valid & (gv == 1u), t0 = valid & (gv == 0u);
    const unsigned p1 = valid & (pv == 1u), p0 = valid & (pv == 0u);
    i1 += p1 & t1;
    i0 += p0 & t0;
    p1s += p1;
    p0s += p0;
    g1s += t1;
    g0s += t0;
    bad_p |= pv > 1u;
    bad_g |= (gv > 1u) & (gv != 255u);
  }
  return {i1, i0, p1s, p0s, g1s, g0s, bad_p != 0, bad_g != 0};
}

Counts count(const uint8_t* p, const uint8_t* g, const uint8_t* ign, int64_t n) {
  return ign ? count_pair<true>(p, g, ign, n) : count_pair<false>(p, g, nullptr, n);
}

void check_counts(const std::vector<Counts>& counts, const char* what) {
  for (const Counts& c : counts) {
    M2SA_CHECK(!c.bad_pred, what,
               ": predictions must contain only 0 and 1 (a 0/255 PNG mask must be divided by 255 first)");
    M2SA_CHECK(!c.bad_gt, what, ": GT masks must contain only 0, 1 and 255 (ignore), found other values");
  }
}

void check_gt3(const at::Tensor& gt, const char* what) {
  M2SA_CHECK(gt.defined() && gt.dim() == 3, what, ": expected GT masks [N, H, W], got ", describe(gt));
}

}  // namespace

double mask_iou(int64_t intersection, int64_t union_) {
  double iou = static_cast<double>(intersection) / (static_cast<double>(union_) + kMaskIouEps);
  if (union_ == 0) iou += 1.0;  // MMR:train_ds.py:585 `acc_iou[union_i == 0] += 1.0  # no-object target`
  return iou;
}

std::vector<IouAreas> intersection_and_union_batch(const at::Tensor& pred, const at::Tensor& gt,
                                                   const at::Tensor& ignore, const char* what) {
  check_gt3(gt, what);
  M2SA_CHECK(pred.defined() && pred.dim() == 3 && pred.sizes() == gt.sizes(), what,
             ": expected prediction and GT of the same shape [K, H, W], got ", describe(pred), " and ", describe(gt));
  const at::Tensor p = host_pred(pred, what), g = host_gt(gt, what);
  const auto [ign, ign_stride] = host_ignore(ignore, gt, what);
  const int64_t k = gt.size(0), hw = gt.size(1) * gt.size(2);
  std::vector<Counts> counts(static_cast<size_t>(k));
  const uint8_t *pp = bytes_of(p), *gp = bytes_of(g), *ip = bytes_of(ign);
  const int64_t stride = ign_stride;
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      counts[static_cast<size_t>(i)] = count(pp + i * hw, gp + i * hw, ip ? ip + i * stride : nullptr, hw);
  });
  check_counts(counts, what);
  std::vector<IouAreas> out(static_cast<size_t>(k));
  for (size_t i = 0; i < counts.size(); ++i) {
    const Counts& c = counts[i];
    out[i].intersection = {c.i0, c.i1};
    out[i].area_gt = {c.gt0, c.gt1};
    out[i].union_ = {c.pred0 + c.gt0 - c.i0, c.pred1 + c.gt1 - c.i1};
  }
  return out;
}

IouAreas intersection_and_union(const at::Tensor& pred, const at::Tensor& gt, const char* what) {
  M2SA_CHECK(pred.defined() && gt.defined() && pred.dim() == 2 && gt.dim() == 2 && pred.sizes() == gt.sizes(), what,
             ": expected prediction and GT of the same shape [H, W], got ", describe(pred), " and ", describe(gt));
  return intersection_and_union_batch(pred.unsqueeze(0), gt.unsqueeze(0), at::Tensor(), what)[0];
}

std::pair<at::Tensor, at::Tensor> pairwise_intersection_union(const at::Tensor& pred, const at::Tensor& gt,
                                                             const at::Tensor& ignore, const char* what) {
  check_gt3(gt, what);
  M2SA_CHECK(pred.defined() && pred.dim() == 3 && pred.size(1) == gt.size(1) && pred.size(2) == gt.size(2), what,
             ": expected predictions [Np, H, W] and GT [Ng, H, W] of the same H, W, got ", describe(pred), " and ",
             describe(gt));
  const at::Tensor p = host_pred(pred, what), g = host_gt(gt, what);
  const auto [ign, ign_stride] = host_ignore(ignore, gt, what);
  const int64_t ng = gt.size(0), np = pred.size(0), hw = gt.size(1) * gt.size(2);
  std::vector<Counts> counts(static_cast<size_t>(ng * np));
  const uint8_t *pp = bytes_of(p), *gp = bytes_of(g), *ip = bytes_of(ign);
  const int64_t stride = ign_stride;
  at::parallel_for(0, ng * np, 1, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t i = e / np, j = e % np;
      counts[static_cast<size_t>(e)] = count(pp + j * hw, gp + i * hw, ip ? ip + i * stride : nullptr, hw);
    }
  });
  check_counts(counts, what);
  at::Tensor inter = at::empty({ng, np}, at::kLong), uni = at::empty({ng, np}, at::kLong);
  int64_t *ipt = inter.data_ptr<int64_t>(), *upt = uni.data_ptr<int64_t>();
  for (size_t e = 0; e < counts.size(); ++e) {
    ipt[e] = counts[e].i1;
    upt[e] = counts[e].pred1 + counts[e].gt1 - counts[e].i1;
  }
  return {inter, uni};
}

std::vector<int64_t> gt_foreground_areas(const at::Tensor& gt, const at::Tensor& ignore, const char* what) {
  check_gt3(gt, what);
  const at::Tensor g = host_gt(gt, what);
  const auto [ign, ign_stride] = host_ignore(ignore, gt, what);
  const int64_t ng = gt.size(0), hw = gt.size(1) * gt.size(2);
  std::vector<int64_t> areas(static_cast<size_t>(ng), 0);
  const uint8_t *gp = bytes_of(g), *ip = bytes_of(ign);
  bool bad = false;
  for (int64_t i = 0; i < ng; ++i) {
    const uint8_t* gi = gp + i * hw;
    const uint8_t* ii = ip ? ip + i * ign_stride : nullptr;
    int64_t a = 0;
    for (int64_t k = 0; k < hw; ++k) {
      a += gi[k] == 1 && !(ii && ii[k]);
      bad |= gi[k] > 1 && gi[k] != 255;
    }
    areas[static_cast<size_t>(i)] = a;
  }
  M2SA_CHECK(!bad, what, ": GT masks must contain only 0, 1 and 255 (ignore), found other values");
  return areas;
}

at::Tensor threshold_logits(const at::Tensor& logits) {
  M2SA_CHECK(logits.defined() && at::isFloatingType(logits.scalar_type()),
             "threshold_logits: expected floating-point mask logits, got ", describe(logits));
  return logits.gt(0);
}

}  // namespace m2sa::eval
