#pragma once
// Private: what the synthetic scenes are made of (shapes, colours, names, functional phrases).
#include <array>
#include <string>
#include <vector>

namespace m2sa::data::detail {

// A shape in coordinates relative to the object's box (fractions of its width / height).
struct Shape {
  enum Kind { kRect, kPoly, kEllipse, kCircle, kArc } kind;
  std::vector<double> v;  // rect: x0 y0 x1 y1; poly: x y ...; ellipse: cx cy ax ay; circle: cx cy r(h); arc: cx cy ax ay thick(w)
};

struct PartSpec {
  std::string name;
  bool plural = false;
  std::array<int, 3> color;  // RGB base colour
  std::string color_name;
  std::vector<Shape> shapes;
  std::string to_phrase;    // "to keep the rain out" (questions)
  std::string does_phrase;  // "keeps the rain out" / "let the car roll" (answers; agrees with `plural`)
};

struct CategorySpec {
  std::string name;
  double aspect = 1;  // height / width
  std::vector<PartSpec> parts;
  std::vector<int> draw_order;  // part indices, back to front
  std::vector<std::string> questions;  // object-level questions
  std::string clause;  // "could take you to another city" (for "Which object ...?")
  std::string lead;    // "you could travel to another city in {X}" (answers; {X} = the object(s) with {seg})
  std::string plural_name;
};

inline const std::vector<CategorySpec>& catalog() {
  static const std::vector<CategorySpec> c = {
      {"house", 0.95,
       {{"roof", false, {160, 45, 35}, "brick red", {{Shape::kPoly, {0.0, 0.46, 0.5, 0.0, 1.0, 0.46}}},
         "to keep the rain out", "keeps the rain out"},
        {"wall", false, {225, 205, 150}, "beige", {{Shape::kRect, {0.06, 0.42, 0.94, 1.0}}}, "to hold up the roof",
         "holds up the roof"},
        {"door", false, {95, 55, 125}, "purple", {{Shape::kRect, {0.41, 0.66, 0.61, 1.0}}}, "to let people get inside",
         "lets people get inside"},
        {"windows", true, {150, 205, 245}, "light blue",
         {{Shape::kRect, {0.14, 0.54, 0.33, 0.74}}, {Shape::kRect, {0.68, 0.54, 0.87, 0.74}}},
         "to let light into the rooms", "let light into the rooms"}},
       {1, 0, 2, 3},
       {"Where could a family live in this picture?", "Which object in the image could a family live in?"},
       "could a family live in",
       "a family could live in {X}",
       "houses"},
      {"car", 0.56,
       {{"body", false, {35, 85, 205}, "blue",
         {{Shape::kRect, {0.0, 0.38, 1.0, 0.8}},
          {Shape::kPoly, {0.17, 0.4, 0.3, 0.04, 0.72, 0.04, 0.86, 0.4}}},
         "to protect the passengers", "protects the passengers"},
        {"window", false, {205, 238, 232}, "pale cyan", {{Shape::kPoly, {0.27, 0.38, 0.35, 0.13, 0.67, 0.13, 0.76, 0.38}}},
         "to let the driver see the road", "lets the driver see the road"},
        {"wheels", true, {25, 25, 28}, "black", {{Shape::kCircle, {0.23, 0.79, 0.21}}, {Shape::kCircle, {0.77, 0.79, 0.21}}},
         "to let the car roll", "let the car roll"}},
       {0, 1, 2},
       {"What could take you to another city?", "Which object in the image could take you to another city?"},
       "could take you to another city",
       "you could travel to another city in {X}",
       "cars"},
      {"mug", 0.85,
       {{"body", false, {240, 140, 40}, "orange", {{Shape::kRect, {0.0, 0.08, 0.74, 1.0}}}, "to hold the coffee",
         "holds the coffee"},
        {"handle", false, {120, 60, 25}, "dark brown", {{Shape::kArc, {0.72, 0.52, 0.2, 0.27, 0.1}}},
         "to hold it without burning your fingers", "lets you hold it without burning your fingers"}},
       {1, 0},
       {"What could you drink hot coffee from?", "Which object in the image could you drink hot coffee from?"},
       "could you drink hot coffee from",
       "you could drink hot coffee from {X}",
       "mugs"},
      {"tree", 1.35,
       {{"trunk", false, {120, 80, 45}, "brown", {{Shape::kRect, {0.41, 0.55, 0.59, 1.0}}}, "to support the branches",
         "supports the branches"},
        {"crown", false, {45, 150, 55}, "green", {{Shape::kEllipse, {0.5, 0.33, 0.5, 0.33}}}, "to hold the leaves",
         "holds the leaves"}},
       {0, 1},
       {"Where could you find shade on a sunny day?", "Which object in the image would give you shade on a sunny day?"},
       "would give you shade on a sunny day",
       "you could rest in the shade of {X}",
       "trees"},
      {"bottle", 2.0,
       {{"body", false, {70, 175, 160}, "teal",
         {{Shape::kRect, {0.12, 0.32, 0.88, 1.0}},
          {Shape::kPoly, {0.12, 0.33, 0.35, 0.18, 0.65, 0.18, 0.88, 0.33}},
          {Shape::kRect, {0.35, 0.07, 0.65, 0.2}}},
         "to hold the water", "holds the water"},
        {"cap", false, {215, 35, 45}, "red", {{Shape::kRect, {0.32, 0.0, 0.68, 0.08}}}, "to seal the bottle",
         "seals the bottle"},
        {"label", false, {245, 245, 235}, "white", {{Shape::kRect, {0.12, 0.5, 0.88, 0.78}}}, "to tell you what is inside",
         "tells you what is inside"}},
       {0, 1, 2},
       {"What could you carry water in on a trip?", "Which object in the image could you carry water in on a trip?"},
       "could you carry water in on a trip",
       "you could carry water in {X}",
       "bottles"},
      {"lamp", 1.6,
       {{"shade", false, {250, 215, 60}, "yellow", {{Shape::kPoly, {0.25, 0.0, 0.75, 0.0, 1.0, 0.4, 0.0, 0.4}}},
         "to direct the light", "directs the light"},
        {"pole", false, {130, 130, 140}, "gray", {{Shape::kRect, {0.44, 0.38, 0.56, 0.93}}}, "to hold the shade up",
         "holds the shade up"},
        {"base", false, {60, 60, 72}, "dark gray", {{Shape::kEllipse, {0.5, 0.93, 0.34, 0.07}}},
         "to keep the lamp from tipping over", "keeps the lamp from tipping over"}},
       {1, 2, 0},
       {"What could light up the room at night?", "Which object in the image could light up the room at night?"},
       "could light up the room at night",
       "you could light up the room with {X}",
       "lamps"},
  };
  return c;
}

inline const std::vector<std::array<std::array<int, 3>, 2>>& sky_palettes() {
  static const std::vector<std::array<std::array<int, 3>, 2>> p = {
      {{{188, 200, 212}, {212, 218, 222}}}, {{{200, 196, 188}, {222, 216, 204}}}, {{{176, 186, 190}, {204, 208, 206}}}};
  return p;
}

inline const std::vector<std::array<int, 3>>& ground_palettes() {
  static const std::vector<std::array<int, 3>> p = {{138, 128, 104}, {112, 120, 98}, {150, 146, 140}, {126, 108, 92}};
  return p;
}

// "on the left" / "in the middle" / "on the right" for k of n instances (left to right).
inline std::string position_words(int k, int n) {
  if (n == 2) return k == 0 ? "on the left" : "on the right";
  if (n == 3) return k == 0 ? "on the left" : k == 1 ? "in the middle" : "on the right";
  static const char* ord[] = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"};
  return std::string("that is ") + ord[k < 8 ? k : 7] + " from the left";
}

}  // namespace m2sa::data::detail
