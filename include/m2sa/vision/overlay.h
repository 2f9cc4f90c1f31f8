#pragma once
// Visualisation of predicted masks on the image: one colour per target from a fixed, well-separated palette,
// alpha-blended fill, contours, and a legend box (colour swatch, index, label).
//
// Exact pixel rules (tests rely on them):
//   fill:     masks are blended in index order; inside mask k each channel becomes
//             floor((1 - alpha) * value + alpha * colour_k + 0.5)   (overlaps: the later mask blends over)
//   contours: drawn after all fills, in colour_k, `contour_thickness` px wide, centred on the mask boundary
//   legend:   a box in the image corner that covers the fewest mask pixels (ties: top-left, top-right,
//             bottom-left, bottom-right); its background is the underlying pixel darkened to
//             floor(value * legend_darken + 0.5); each entry is a swatch filled with colour_k and the white text
//             "k: label" (non-ASCII bytes shown as '?', long labels cut with "...", more entries than fit end
//             with "+N more"). The font scales with the image; no legend on images too small for one line.
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace m2sa::vision {

// Colour k (RGB). The first 20 are a hand-ordered set of well-separated colours (strong hues first); later
// indices walk the hue circle by the golden angle, so neighbours stay distinct.
std::array<uint8_t, 3> palette_color(int64_t index);

struct OverlayOptions {
  double alpha = 0.5;             // fill opacity in [0, 1]
  int contour_thickness = 0;      // px; 0 = automatic (max(1, min(H, W) / 200)); < 0 = no contours
  bool legend = true;
  double legend_max_width = 0.6;  // fraction of the image width the legend may take
  double legend_darken = 0.35;    // legend background = pixel * legend_darken
};

// A rectangle in pixels (x = column, y = row), for callers and tests that need to know where things went.
struct Box {
  int x = 0, y = 0, width = 0, height = 0;
  bool empty() const { return width <= 0 || height <= 0; }
  bool contains(int px, int py) const { return px >= x && px < x + width && py >= y && py < y + height; }
};

struct OverlayLayout {
  Box legend;                    // empty when no legend was drawn
  std::vector<Box> swatches;     // one per shown entry, filled with palette_color(entry index)
  int64_t shown_entries = 0;     // entries listed (the rest are summarised as "+N more")
  int contour_thickness = 0;     // thickness used (0 = none)
  int line_height = 0;           // legend line height in px
};

// rgb: uint8 [H, W, 3]; masks: bool or integer [N, H, W] (nonzero = inside), N may be 0; labels: N strings or
// empty (then entries are only indices). Returns a new uint8 [H, W, 3] CPU tensor; the input is not modified.
// `layout`, if given, receives where the legend and swatches were drawn.
at::Tensor overlay_masks(const at::Tensor& rgb, const at::Tensor& masks, const std::vector<std::string>& labels,
                         const OverlayOptions& options = {}, OverlayLayout* layout = nullptr);

}  // namespace m2sa::vision
