// m2sa export --out DIR (--model DIR | --peft FILE --config C | --sam PTH --llava DIR --config C) [--clip DIR]
//             [--trainable FILE] [--tokenizer PATH] [--dtype bf16|fp32|fp16] [--max-shard-size-mb N]
//             [--no-vision-tower] [--vision-tower-name NAME] [--overwrite]
// m2sa export --random-init --config C --out DIR [--seed S] [--tokenizer PATH] [--no-bin] [--dtype ...]
// Writes the model in the merged Hugging Face layout (infer/model_export.h); --random-init writes a full set of
// seeded random weights in the released layouts instead (infer/random_init_export.h).
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>

#include "command.h"
#include "model_source_options.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/infer/random_init_export.h"
#include "m2sa/models/m2sa/m2sa_config.h"

namespace m2sa::cli {
namespace {

struct ExportArgs {
  ModelSourceArgs model;
  std::string out, dtype = "bf16";
  double max_shard_mb = 10000.0;
  bool no_vision_tower = false, overwrite = false;
  bool random_init = false, no_bin = false;
  uint64_t seed = 0;
  std::string vision_tower_name = "openai/clip-vit-large-patch14";
};

int run_random_init(const ExportArgs& a) {
  const infer::ModelSource src = a.model.source();
  M2SA_CHECK(src.model_dir.empty() && src.peft.empty() && src.sam.empty() && src.llava_dir.empty() &&
                 src.clip_dir.empty() && src.trainable.empty(),
             "export --random-init: writes random weights from --config alone; do not give --model, --peft, --sam, "
             "--llava, --clip or --trainable");
  M2SA_CHECK(!src.config.empty(), "export --random-init: give the model config (--config, e.g. configs/m2sa-7b.json)");
  M2SA_CHECK(a.max_shard_mb > 0, "export: --max-shard-size-mb must be positive");
  infer::RandomInitOptions o;
  o.seed = a.seed;
  o.dtype = parse_precision(a.dtype);
  o.max_shard_bytes = static_cast<int64_t>(a.max_shard_mb * 1e6);
  o.write_bin = !a.no_bin;
  o.overwrite = a.overwrite;
  o.tokenizer = src.tokenizer.empty() ? std::filesystem::path("configs/tokenizer") : src.tokenizer;
  const m2sa_model::M2SAConfig config = m2sa_model::read_model_config(src.config);
  infer::write_random_init_model(config, a.out, o);
  std::cout << "random-init model (seed " << a.seed << ", " << precision_name(o.dtype) << ") written to " << a.out
            << ": " << infer::kRandomModelDir << "/, " << (o.write_bin ? std::string(infer::kRandomModelBinDir) + "/, " : "")
            << infer::kRandomSamFile << ", " << infer::kRandomClipDir << "/, " << infer::kRandomLlavaDir << "/\n";
  return 0;
}

int run_export(const ExportArgs& a) {
  if (a.random_init) return run_random_init(a);
  const infer::ModelSource src = a.model.source();
  infer::LoadModelOptions lo;
  lo.dtype = parse_precision(a.dtype);
  lo.attention = a.model.attention_mode();  // written into the exported config
  M2SA_CHECK(a.max_shard_mb > 0, "export: --max-shard-size-mb must be positive");
  infer::LoadedModel loaded = infer::load_model(src, lo);
  for (const auto& line : loaded.log) spdlog::info("{}", line);
  infer::ExportOptions eo;
  eo.dtype = lo.dtype;
  eo.max_shard_bytes = static_cast<int64_t>(a.max_shard_mb * 1e6);
  eo.include_vision_tower = !a.no_vision_tower;
  eo.vision_tower_name = a.vision_tower_name;
  eo.overwrite = a.overwrite;
  infer::export_model(*loaded.model, loaded.tokenizer, a.out, eo);
  std::cout << "exported to " << a.out << " (" << precision_name(eo.dtype) << ")\n";
  return 0;
}

Registrar register_export({"export", "Write a model in the merged Hugging Face layout (shards + index + config + tokenizer)",
               [](CLI::App& app) {
                 auto a = std::make_shared<ExportArgs>();
                 app.add_option("--out", a->out, "output model directory (written atomically)")->required();
                 add_model_source_options(app, a->model);
                 app.add_option("--dtype", a->dtype, "stored precision: bf16 (default, as the reference), fp32, fp16");
                 app.add_option("--max-shard-size-mb", a->max_shard_mb, "largest shard in MB (default 10000)");
                 app.add_flag("--no-vision-tower", a->no_vision_tower, "do not write the CLIP tower to vision_tower/");
                 app.add_option("--vision-tower-name", a->vision_tower_name,
                                "vision_tower value in config.json (default openai/clip-vit-large-patch14)");
                 app.add_flag("--overwrite", a->overwrite, "replace an existing model directory");
                 app.add_flag("--random-init", a->random_init,
                              "write seeded random weights of --config in the released layouts (model/, model-bin/, "
                              "SAM .pth, CLIP folder, llava/), tensor by tensor; tokenizer default configs/tokenizer");
                 app.add_option("--seed", a->seed, "--random-init: the seed (same seed, same bytes)");
                 app.add_flag("--no-bin", a->no_bin, "--random-init: skip the sharded .bin copy (model-bin/)");
                 return [a]() -> int { return run_export(*a); };
               }});

}  // namespace
}  // namespace m2sa::cli
