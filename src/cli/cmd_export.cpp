// m2sa export --out DIR (--model DIR | --peft FILE --config C | --sam PTH --llava DIR --config C) [--clip DIR]
//             [--trainable FILE] [--tokenizer PATH] [--dtype bf16|fp32|fp16] [--max-shard-size-mb N]
//             [--no-vision-tower] [--vision-tower-name NAME] [--overwrite]
// Writes the model in the merged Hugging Face layout (infer/model_export.h).
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>

#include "command.h"
#include "model_source_options.h"
#include "m2sa/core/dtype.h"
#include "m2sa/core/error.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/model_loading.h"

namespace m2sa::cli {
namespace {

struct ExportArgs {
  ModelSourceArgs model;
  std::string out, dtype = "bf16";
  double max_shard_mb = 10000.0;
  bool no_vision_tower = false, overwrite = false;
  std::string vision_tower_name = "openai/clip-vit-large-patch14";
};

int run_export(const ExportArgs& a) {
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
                 return [a]() -> int { return run_export(*a); };
               }});

}  // namespace
}  // namespace m2sa::cli
