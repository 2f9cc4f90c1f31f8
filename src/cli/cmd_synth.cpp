// m2sa synth --out DIR [--seed S] [--images N] [--val-images N] [--test-images N] [--min-size PX] [--max-size PX]
//            [--max-objects N] [--jpeg-quality Q]
// Writes a synthetic MMR-format dataset (MMR JSON splits, PACO-style COCO JSON, LLaVA-style VQA JSON, images) in the
// real dataset_dir layout; see m2sa/data/synth.h.
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "command.h"
#include "m2sa/data/synth.h"

namespace m2sa::cli {
namespace {

Registrar register_synth({"synth", "Write a synthetic MMR-format dataset (images, MMR / PACO / LLaVA JSON) for tests and demos",
               [](CLI::App& app) {
                 auto out = std::make_shared<std::string>();
                 auto o = std::make_shared<data::SynthOptions>();
                 app.add_option("--out", *out, "dataset folder to write (the dataset_dir of the readers)")->required();
                 app.add_option("--seed", o->seed, "random seed (same seed, same bytes)")->capture_default_str();
                 app.add_option("--images", o->train_images, "training images")->capture_default_str();
                 app.add_option("--val-images", o->val_images, "validation images")->capture_default_str();
                 app.add_option("--test-images", o->test_images, "images per test split (obj, part, mixed)")
                     ->capture_default_str();
                 app.add_option("--min-size", o->min_size, "smallest image side in pixels")->capture_default_str();
                 app.add_option("--max-size", o->max_size, "largest image side in pixels")->capture_default_str();
                 app.add_option("--max-objects", o->max_objects, "objects per image, at most")->capture_default_str();
                 app.add_option("--jpeg-quality", o->jpeg_quality, "JPEG quality of the images")->capture_default_str();
                 return [=]() -> int {
                   const auto start = std::chrono::steady_clock::now();
                   const data::SynthSummary s = data::write_synthetic_dataset(*out, *o);
                   const double secs =
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                   std::cout << "wrote " << s.images << " images, " << s.questions << " questions (" << s.masks
                             << " masks), " << s.paco_annotations << " PACO annotations, " << s.vqa_conversations
                             << " VQA conversations to " << *out << " in " << secs << " s\n";
                   for (const auto& f : s.files) std::cout << "  " << f.string() << "\n";
                   std::cout << "train on it with a data config such as {\"dataset_dir\": \"" << *out
                             << "\", \"datasets\": [\"sem_seg\", \"vqa\", \"mmr\"], \"sample_rates\": [2, 2, 6], "
                                "\"sem_seg_data\": [\"paco_lvis\"]}; evaluate with the splits val, test/obj, "
                                "test/part, test/mixed\n";
                   return 0;
                 };
               }});

}  // namespace
}  // namespace m2sa::cli
