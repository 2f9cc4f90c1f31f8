// Synthetic scenes and MMR-style questions (see m2sa/data/synth.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "m2sa/data/synth.h"
#include "synth_catalog.h"

namespace m2sa::data {

namespace {

using detail::CategorySpec;
using detail::PartSpec;
using detail::Shape;

struct Placed {
  int category = 0;
  int x = 0, y = 0, w = 0, h = 0;
  std::vector<std::array<int, 3>> colors;  // per part, jittered
};

cv::Point pt(const Placed& o, double fx, double fy) {
  return {static_cast<int>(std::lround(o.x + fx * o.w)), static_cast<int>(std::lround(o.y + fy * o.h))};
}

// Draws one shape of `o` into the id map with value `id` (no anti-aliasing: the pixel set is the mask).
void draw_shape(cv::Mat& ids, const Placed& o, const Shape& s, int id) {
  const cv::Scalar v(id);
  switch (s.kind) {
    case Shape::kRect: {
      const cv::Point a = pt(o, s.v[0], s.v[1]), b = pt(o, s.v[2], s.v[3]);
      cv::rectangle(ids, a, cv::Point(std::max(a.x, b.x - 1), std::max(a.y, b.y - 1)), v, cv::FILLED, cv::LINE_8);
      break;
    }
    case Shape::kPoly: {
      std::vector<cv::Point> p;
      for (std::size_t i = 0; i + 1 < s.v.size(); i += 2) p.push_back(pt(o, s.v[i], s.v[i + 1]));
      cv::fillPoly(ids, std::vector<std::vector<cv::Point>>{p}, v, cv::LINE_8);
      break;
    }
    case Shape::kEllipse: {  // center fx, fy; axes as fractions of w, h
      const cv::Point c = pt(o, s.v[0], s.v[1]);
      const cv::Size ax(std::max(1, static_cast<int>(std::lround(s.v[2] * o.w))),
                        std::max(1, static_cast<int>(std::lround(s.v[3] * o.h))));
      cv::ellipse(ids, c, ax, 0, 0, 360, v, cv::FILLED, cv::LINE_8);
      break;
    }
    case Shape::kCircle: {  // center fx, fy; radius as a fraction of h
      const cv::Point c = pt(o, s.v[0], s.v[1]);
      cv::circle(ids, c, std::max(1, static_cast<int>(std::lround(s.v[2] * o.h))), v, cv::FILLED, cv::LINE_8);
      break;
    }
    case Shape::kArc: {  // center, axes, thickness as a fraction of w; right half of an ellipse outline
      const cv::Point c = pt(o, s.v[0], s.v[1]);
      const cv::Size ax(std::max(1, static_cast<int>(std::lround(s.v[2] * o.w))),
                        std::max(1, static_cast<int>(std::lround(s.v[3] * o.h))));
      const int thick = std::max(2, static_cast<int>(std::lround(s.v[4] * o.w)));
      cv::ellipse(ids, c, ax, 0, -90, 90, v, thick, cv::LINE_8);
      break;
    }
  }
}

void draw_object(cv::Mat& ids, const Placed& o, int object_index) {
  const CategorySpec& cat = detail::catalog()[static_cast<std::size_t>(o.category)];
  for (int step : cat.draw_order) {
    const PartSpec& part = cat.parts[static_cast<std::size_t>(step)];
    for (const Shape& s : part.shapes) draw_shape(ids, o, s, object_index * 8 + step + 1);
  }
}

// uint8 zeros without an ATen fill kernel (which would start OpenMP work for every mask of every scene).
at::Tensor zeros_u8(int64_t h, int64_t w) {
  at::Tensor t = at::empty({h, w}, at::kByte);
  std::memset(t.data_ptr<uint8_t>(), 0, static_cast<std::size_t>(h * w));
  return t;
}

int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Background: sky and ground bands with a gradient and one of three textures.
void draw_background(cv::Mat& img, Rng& rng, int horizon) {
  const int H = img.rows, W = img.cols;
  const auto& skies = detail::sky_palettes();
  const auto& grounds = detail::ground_palettes();
  const auto& sky = skies[uniform_int(rng, skies.size())];
  const auto& ground = grounds[uniform_int(rng, grounds.size())];
  const int texture = static_cast<int>(uniform_int(rng, 3));
  const int period = 5 + static_cast<int>(uniform_int(rng, 8));
  for (int y = 0; y < H; ++y) {
    cv::Vec3b* row = img.ptr<cv::Vec3b>(y);
    for (int x = 0; x < W; ++x) {
      std::array<int, 3> c;
      if (y < horizon) {
        const double t = static_cast<double>(y) / std::max(1, horizon);
        for (int k = 0; k < 3; ++k) c[k] = static_cast<int>(sky[0][k] * (1 - t) + sky[1][k] * t);
      } else {
        for (int k = 0; k < 3; ++k) c[k] = ground[k];
        int d = 0;
        if (texture == 0) d = ((y - horizon) % period == 0) ? -18 : 0;                      // furrows
        else if (texture == 1) d = (((x / period) + (y / period)) % 2) ? -10 : 6;           // tiles
        else d = ((x * 7 + y * 13) % (period * 3) < 2) ? -16 : 0;                          // speckles
        for (int k = 0; k < 3; ++k) c[k] += d;
      }
      for (int k = 0; k < 3; ++k) row[x][k] = static_cast<uint8_t>(clampi(c[k], 0, 255));
    }
  }
}

}  // namespace

void SynthOptions::validate() const {
  M2SA_CHECK(train_images >= 0 && val_images >= 0 && test_images >= 0, "synth: image counts must be >= 0");
  M2SA_CHECK(min_size >= 64, "synth: --min-size must be at least 64 (got ", min_size, ")");
  M2SA_CHECK(max_size >= min_size && max_size <= 4096, "synth: --max-size must be in [min-size, 4096] (got ", max_size, ")");
  M2SA_CHECK(max_objects >= 1 && max_objects <= 8, "synth: --max-objects must be in 1..8 (got ", max_objects, ")");
  M2SA_CHECK(jpeg_quality >= 50 && jpeg_quality <= 100, "synth: --jpeg-quality must be in 50..100");
}

SynthScene render_scene(uint64_t seed, const SynthOptions& options) {
  Rng rng(seed);
  const auto& cats = detail::catalog();
  SynthScene scene;
  const int W = options.min_size + static_cast<int>(uniform_int(rng, static_cast<uint64_t>(options.max_size - options.min_size + 1)));
  const int H = options.min_size + static_cast<int>(uniform_int(rng, static_cast<uint64_t>(options.max_size - options.min_size + 1)));
  scene.height = H;
  scene.width = W;
  const int horizon = static_cast<int>(H * (0.35 + 0.25 * uniform01(rng)));

  std::vector<Placed> placed;
  cv::Mat ids;
  std::vector<cv::Mat> layers;
  for (int attempt = 0;; ++attempt) {
    placed.clear();
    const int max_n = std::max(1, options.max_objects - attempt / 8);  // fewer objects if they keep overlapping
    const int n = 1 + static_cast<int>(uniform_int(rng, static_cast<uint64_t>(max_n)));
    for (int i = 0; i < n; ++i) {
      Placed o;
      o.category = static_cast<int>(uniform_int(rng, cats.size()));
      const CategorySpec& c = cats[static_cast<std::size_t>(o.category)];
      const double wf = (n == 1 ? 0.40 : 0.30) + (n == 1 ? 0.22 : 0.18) * uniform01(rng);
      double w = wf * W;
      double h = w * c.aspect * (0.88 + 0.24 * uniform01(rng));
      if (h > 0.9 * H) {
        w *= 0.9 * H / h;
        h = 0.9 * H;
      }
      o.w = std::max(24, static_cast<int>(w));
      o.h = std::max(24, static_cast<int>(h));
      o.x = static_cast<int>(uniform_int(rng, static_cast<uint64_t>(std::max(1, W - o.w))));
      // Objects stand on the ground: the bottom lies below the horizon.
      const int bottom_lo = std::min(H, std::max(o.h, horizon + H / 10));
      const int bottom = bottom_lo + static_cast<int>(uniform_int(rng, static_cast<uint64_t>(std::max(1, H - bottom_lo + 1))));
      o.y = std::max(0, std::min(bottom, H) - o.h);
      for (const PartSpec& p : c.parts) {
        std::array<int, 3> col;
        for (int k = 0; k < 3; ++k) col[k] = clampi(p.color[k] + static_cast<int>(uniform_int(rng, 25)) - 12, 0, 255);
        o.colors.push_back(col);
      }
      placed.push_back(std::move(o));
    }
    // Nearer (lower) objects are drawn later and occlude the others.
    std::stable_sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) { return a.y + a.h < b.y + b.h; });
    ids = cv::Mat::zeros(H, W, CV_8UC1);
    layers.clear();
    for (std::size_t i = 0; i < placed.size(); ++i) {
      cv::Mat layer = cv::Mat::zeros(H, W, CV_8UC1);
      draw_object(layer, placed[i], static_cast<int>(i));
      draw_object(ids, placed[i], static_cast<int>(i));
      layers.push_back(layer);
    }
    bool ok = true;
    for (std::size_t i = 0; i < placed.size() && ok; ++i) {
      const int full = cv::countNonZero(layers[i]);
      cv::Mat vis = (ids >= static_cast<int>(i * 8 + 1)) & (ids <= static_cast<int>(i * 8 + 8));
      ok = full > 0 && cv::countNonZero(vis) * 2 >= full;
    }
    if (ok || attempt >= 40) break;
  }

  // Image: background, then each visible part pixel in its instance colour with a light vertical shading.
  cv::Mat img(H, W, CV_8UC3);
  draw_background(img, rng, horizon);
  for (int y = 0; y < H; ++y) {
    const uint8_t* idrow = ids.ptr<uint8_t>(y);
    cv::Vec3b* row = img.ptr<cv::Vec3b>(y);
    for (int x = 0; x < W; ++x) {
      const int id = idrow[x];
      if (!id) continue;
      const Placed& o = placed[static_cast<std::size_t>((id - 1) / 8)];
      const auto& col = o.colors[static_cast<std::size_t>((id - 1) % 8)];
      const double shade = 1.06 - 0.12 * (static_cast<double>(y - o.y) / std::max(1, o.h));
      for (int k = 0; k < 3; ++k) row[x][k] = static_cast<uint8_t>(clampi(static_cast<int>(col[k] * shade), 0, 255));
    }
  }
  // Light sensor noise.
  for (int y = 0; y < H; ++y) {
    cv::Vec3b* row = img.ptr<cv::Vec3b>(y);
    for (int x = 0; x < W; ++x) {
      const uint64_t r = rng();
      for (int k = 0; k < 3; ++k) row[x][k] = static_cast<uint8_t>(clampi(row[x][k] + static_cast<int>((r >> (8 * k)) % 11) - 5, 0, 255));
    }
  }
  scene.image = at::empty({H, W, 3}, at::kByte);
  std::memcpy(scene.image.data_ptr<uint8_t>(), img.data, static_cast<std::size_t>(H) * W * 3);

  // Masks and names, in one pass over the id map (no per-mask tensor ops: this runs for every scene).
  for (std::size_t i = 0; i < placed.size(); ++i) {
    const CategorySpec& c = cats[static_cast<std::size_t>(placed[i].category)];
    SynthObject obj;
    obj.category = c.name;
    obj.mask = zeros_u8(H, W);
    for (std::size_t p = 0; p < c.parts.size(); ++p) {
      SynthPart part;
      part.name = c.parts[p].name;
      part.plural = c.parts[p].plural;
      part.mask = zeros_u8(H, W);
      part.full_area = cv::countNonZero(layers[i] == static_cast<int>(i * 8 + p + 1));
      obj.parts.push_back(std::move(part));
    }
    obj.full_area = cv::countNonZero(layers[i]);
    scene.objects.push_back(std::move(obj));
  }
  std::vector<uint8_t*> part_ptr(placed.size() * 8, nullptr), obj_ptr(placed.size(), nullptr);
  for (std::size_t i = 0; i < placed.size(); ++i) {
    obj_ptr[i] = scene.objects[i].mask.data_ptr<uint8_t>();
    for (std::size_t p = 0; p < scene.objects[i].parts.size(); ++p)
      part_ptr[i * 8 + p] = scene.objects[i].parts[p].mask.data_ptr<uint8_t>();
  }
  for (int y = 0; y < H; ++y) {
    const uint8_t* idrow = ids.ptr<uint8_t>(y);
    for (int x = 0; x < W; ++x) {
      const int id = idrow[x];
      if (!id) continue;
      const std::size_t o = static_cast<std::size_t>((id - 1) / 8), p = static_cast<std::size_t>((id - 1) % 8);
      const int64_t off = static_cast<int64_t>(y) * W + x;
      part_ptr[o * 8 + p][off] = 1;
      obj_ptr[o][off] = 1;
      ++scene.objects[o].parts[p].visible_area;
      ++scene.objects[o].visible_area;
    }
  }
  // Instance names, left to right within a category.
  for (const CategorySpec& c : cats) {
    std::vector<std::size_t> same;
    for (std::size_t i = 0; i < placed.size(); ++i)
      if (scene.objects[i].category == c.name) same.push_back(i);
    std::stable_sort(same.begin(), same.end(), [&](std::size_t a, std::size_t b) {
      return placed[a].x * 2 + placed[a].w < placed[b].x * 2 + placed[b].w;
    });
    for (std::size_t k = 0; k < same.size(); ++k) {
      SynthObject& o = scene.objects[same[k]];
      if (same.size() == 1) {
        o.instance_name = c.name;
        o.reference = "the " + c.name;
      } else {
        o.instance_name = c.name + "_" + std::to_string(k + 1);
        o.reference = "the " + c.name + " " + detail::position_words(static_cast<int>(k), static_cast<int>(same.size()));
      }
    }
  }
  return scene;
}

}  // namespace m2sa::data
