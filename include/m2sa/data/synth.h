#pragma once
// Synthetic MMR-format data (`m2sa synth`): procedurally drawn scenes of objects with named parts, implicit
// functional questions in the MMR spirit, written in the real formats and the real dataset_dir layout so that the
// same readers, configs and training / evaluation code run on it:
//
//   <out>/MMR/MMR_train.json, MMR_val.json, MMR_test_obj_only.json, MMR_test_part_only.json, MMR_test_mixed.json
//   <out>/refer_seg/images/mscoco/images/train2017/<id>.jpg   (train images)
//   <out>/refer_seg/images/mscoco/images/val2017/<id>.jpg     (val and test images)
//   <out>/coco/train2017/<id>.jpg                            (the train images again: PACO and LLaVA read them here)
//   <out>/vlpart/paco/annotations/paco_lvis_v1_train.json     (COCO format, "obj" / "obj:part" categories,
//                                                             compressed and uncompressed RLE)
//   <out>/llava_dataset/llava_instruct_150k.json              (LLaVA-style conversations about the train images)
//   <out>/synth_info.json                                     (options, categories, counts)
//   <out>/infer_examples.jsonl   held-out test questions for `m2sa infer --batch` ({"id", "image", "question"})
//
// Scenes: a textured background (sky / ground bands with noise and stripes) and 1..max_objects objects of six
// categories (house: roof, wall, door, windows; car: body, window, wheels; mug: body, handle; tree: trunk, crown;
// bottle: body, cap, label; lamp: shade, pole, base), each category and part with its own colour family and shape,
// of varied size and aspect ratio, possibly overlapping (occlusion; every object keeps at least half of its
// pixels). Masks are the visible pixels, exact: every shape is drawn without anti-aliasing into the image and an id
// map at once. Light pixel noise and JPEG compression make the images realistic in format.
//
// Questions (bounded vocabulary): object-level ("What could you drink hot coffee from?"), part-level ("Which part of
// the house on the left lets people get inside?" -> "That would be house_1's door {seg}, which ..."), multi-part,
// multi-object and mixed object + part questions; several instances of a category are named house_1, house_2, ...
// from left to right and referred to as "the house on the left / in the middle / on the right".
//
// The writer streams: one scene at a time is drawn, written and forgotten; JSON arrays are written incrementally.
// The same options and seed give byte-identical files.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "m2sa/data/random.h"

namespace m2sa::data {

struct SynthOptions {
  uint64_t seed = 0;
  int train_images = 200;
  int val_images = 40;
  int test_images = 20;  // per test split (obj, part, mixed)
  int min_size = 160;    // each image side is drawn in [min_size, max_size]
  int max_size = 320;
  int max_objects = 3;
  int jpeg_quality = 92;
  void validate() const;
};

struct SynthPart {
  std::string name;     // "door", "windows", ...
  bool plural = false;  // "windows" are two shapes
  at::Tensor mask;      // uint8 [H, W], visible pixels
  int64_t full_area = 0;     // pixels before occlusion
  int64_t visible_area = 0;  // pixels of `mask`
};

struct SynthObject {
  std::string category;       // "house"
  std::string instance_name;  // "house" when unique in the scene, else "house_1", "house_2" (left to right)
  std::string reference;      // "the house" or "the house on the left" (for questions)
  std::vector<SynthPart> parts;
  at::Tensor mask;  // uint8 [H, W], union of the visible parts
  int64_t full_area = 0;
  int64_t visible_area = 0;
};

struct SynthScene {
  int64_t height = 0, width = 0;
  at::Tensor image;  // uint8 [H, W, 3] RGB (before JPEG)
  std::vector<SynthObject> objects;
};

// Question kinds, as the MMR test splits divide them.
enum class SynthKind { kObject, kPart, kMixed };

struct SynthTarget {
  int object = 0;
  int part = -1;  // -1: the whole object
};

struct SynthQuestion {
  SynthKind kind = SynthKind::kObject;
  std::string question;
  std::string text_answer;  // with one "{seg}" per target, in target order
  std::vector<SynthTarget> targets;
};

// The scene for `seed` (the writer uses seed_of({options.seed, split, index})). Deterministic.
SynthScene render_scene(uint64_t seed, const SynthOptions& options);

// Up to `count` distinct questions about `scene` of the allowed kinds (fewer if the scene offers fewer).
std::vector<SynthQuestion> make_questions(const SynthScene& scene, const std::vector<SynthKind>& kinds, int count,
                                          Rng& rng);

struct SynthSummary {
  int64_t images = 0;
  int64_t questions = 0;
  int64_t masks = 0;
  int64_t paco_annotations = 0;
  int64_t vqa_conversations = 0;
  std::vector<std::filesystem::path> files;  // the JSON files written
};

// Writes the whole synthetic dataset under `out` (created if needed; existing files of the same names are
// replaced). Image files are written to temp names and renamed; JSON files are streamed and renamed at the end.
SynthSummary write_synthetic_dataset(const std::filesystem::path& out, const SynthOptions& options);

// The seed of image `index` of split `split` (0 train, 1 val, 2 test_obj, 3 test_part, 4 test_mixed).
uint64_t synth_scene_seed(const SynthOptions& options, int split, int index);

}  // namespace m2sa::data
