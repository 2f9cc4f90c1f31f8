#pragma once
// The flags that say where a model's weights come from (infer::ModelSource), shared by `m2sa infer`, `m2sa eval`
// and `m2sa export` so they read the same everywhere.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "m2sa/core/error.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/nn/attention.h"

namespace m2sa::cli {

struct ModelSourceArgs {
  std::string model, peft, sam, llava, clip, config, trainable, tokenizer;
  std::string attention;  // empty: the model config's m2sa.attention

  std::optional<nn::AttentionMode> attention_mode() const {
    if (attention.empty()) return std::nullopt;
    return nn::parse_attention_mode(attention, "--attention");
  }

  infer::ModelSource source() const {
    infer::ModelSource s;
    s.model_dir = model;
    s.peft = peft;
    s.sam = sam;
    s.llava_dir = llava;
    s.clip_dir = clip;
    s.config = config;
    s.trainable = trainable;
    s.tokenizer = tokenizer;
    return s;
  }
  // Fails naming the first given path that does not exist (before any slower check, such as the device's).
  void check_paths_exist() const {
    const std::pair<const char*, const std::string*> paths[] = {{"--model", &model},     {"--peft", &peft},
                                                                {"--sam", &sam},         {"--llava", &llava},
                                                                {"--clip", &clip},       {"--trainable", &trainable},
                                                                {"--tokenizer", &tokenizer}};
    for (const auto& [flag, path] : paths)
      M2SA_CHECK(path->empty() || std::filesystem::exists(*path), flag, " ", *path, " does not exist");
  }
};

// --model, --clip, --peft, --sam, --llava, --trainable, --tokenizer and the model config flag (`config_flag`:
// "--config", or "--model-config" where --config means a training config).
inline void add_model_source_options(CLI::App& app, ModelSourceArgs& a, const std::string& config_flag = "--config") {
  app.add_option("--model", a.model, "merged HF model directory (released M2SA / LISA, m2sa export, <run_dir>/model)");
  app.add_option("--clip", a.clip, "HF CLIP vision folder (default: <model>/vision_tower)");
  app.add_option(config_flag, a.config, "M2SA model config JSON (required with --peft / --sam; overrides the sizes "
                                        "of a --model folder)");
  app.add_option("--peft", a.peft, "un-merged PEFT state dict (reference training output, zero_to_fp32.py)");
  app.add_option("--sam", a.sam, "SAM checkpoint (.pth), with --llava and --clip: an untrained training start");
  app.add_option("--llava", a.llava, "LLaVA folder, with --sam");
  app.add_option("--trainable", a.trainable, "trained weights to apply (a trainer checkpoint's trainable.safetensors)");
  app.add_option("--attention", a.attention, "sdpa (fused kernels) or exact (the reference's arithmetic, softmax in "
                                             "fp32 for LLaMA; for bf16 parity runs); default: the model config's "
                                             "m2sa.attention, else sdpa");
  app.add_option("--tokenizer", a.tokenizer, "tokenizer folder or tokenizer.model (default: the model or LLaVA "
                                             "folder)");
}

}  // namespace m2sa::cli
