#include "m2sa/infer/random_init_export.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/checkpoint_keys.h"
#include "m2sa/io/safetensors.h"
#include "m2sa/io/torch_checkpoint_writer.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/models/m2sa/m2sa_model.h"
#include "m2sa/nn/init.h"
#include "m2sa/text/tokenizer.h"

namespace m2sa::infer {

namespace fs = std::filesystem;

namespace {

bool name_ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<TensorInfo> tensor_infos_of(const NamedTensors& state, at::ScalarType float_dtype) {
  std::vector<TensorInfo> out;
  for (const auto& [name, t] : state)
    out.push_back(TensorInfo{name, t.is_floating_point() ? float_dtype : t.scalar_type(), t.sizes().vec()});
  return out;
}

// Groups tensors in order into shards of at most max_bytes (a larger tensor gets its own shard).
std::vector<std::vector<TensorInfo>> group_into_shards(const std::vector<TensorInfo>& infos, int64_t max_bytes,
                                                       int64_t& total) {
  std::vector<std::vector<TensorInfo>> shards(1);
  int64_t in_shard = 0;
  total = 0;
  for (const TensorInfo& t : infos) {
    const int64_t bytes = t.numel() * static_cast<int64_t>(c10::elementSize(t.dtype));
    if (in_shard > 0 && in_shard + bytes > max_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += bytes;
    total += bytes;
  }
  return shards;
}

using ShardWriter = std::function<void(const fs::path&, const std::vector<TensorInfo>&, const MakeTensor&)>;

// HF sharded layout: <stem>-0000k-of-0000n<ext> + <index_name> {"metadata": {"total_size"}, "weight_map"}.
void write_sharded(const fs::path& dir, const std::vector<TensorInfo>& infos, int64_t max_bytes, const char* stem,
                   const char* ext, const char* index_name, const MakeTensor& make, const ShardWriter& writer) {
  int64_t total = 0;
  const auto shards = group_into_shards(infos, max_bytes, total);
  json weight_map = json::object();
  for (std::size_t i = 0; i < shards.size(); ++i) {
    char file[96];
    std::snprintf(file, sizeof(file), "%s-%05zu-of-%05zu%s", stem, i + 1, shards.size(), ext);
    spdlog::info("random init: writing {} ({} tensors)", (dir / file).string(), shards[i].size());
    writer(dir / file, shards[i], make);
    for (const TensorInfo& t : shards[i]) weight_map[t.name] = file;
  }
  write_json_file(dir / index_name, json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
}

void write_safetensors_shards_streamed(const fs::path& dir, const std::vector<TensorInfo>& infos, int64_t max_bytes,
                                      const MakeTensor& make) {
  write_sharded(dir, infos, max_bytes, "model", ".safetensors", "model.safetensors.index.json", make,
                [](const fs::path& p, const std::vector<TensorInfo>& s, const MakeTensor& m) {
                  write_safetensors_streamed(p, s, m, {{"format", "pt"}});
                });
}

void write_bin_shards_streamed(const fs::path& dir, const std::vector<TensorInfo>& infos, int64_t max_bytes,
                               const MakeTensor& make) {
  write_sharded(dir, infos, max_bytes, "pytorch_model", ".bin", "pytorch_model.bin.index.json", make,
                [](const fs::path& p, const std::vector<TensorInfo>& s, const MakeTensor& m) {
                  write_torch_checkpoint_streamed(p, s, m);
                });
}

// The LLaVA start's tensors (the rest of the merged folder is M2SA's: SAM, text_hidden_fcs).
bool is_llava_tensor(const std::string& name) {
  for (const char* p : {"model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.", "model.mm_projector."})
    if (name.compare(0, std::char_traits<char>::length(p), p) == 0) return true;
  return false;
}

}  // namespace

at::Tensor random_init_tensor(const TensorInfo& info, uint64_t seed) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (!c10::isFloatingType(info.dtype)) return at::zeros(info.shape, at::TensorOptions().dtype(info.dtype));
  at::Tensor t;
  if (name_ends_with(info.name, ".bias")) {
    t = at::zeros(info.shape, f32);
  } else if (info.shape.size() == 1 && name_ends_with(info.name, ".weight")) {
    t = at::ones(info.shape, f32);  // LayerNorm / RMSNorm / LayerNorm2d scales
  } else {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ fnv1a64(info.name));
    t = at::empty(info.shape, f32);
    t.normal_(0.0, name_ends_with(info.name, "positional_encoding_gaussian_matrix") ? 1.0 : 0.02, gen);
  }
  return info.dtype == at::kFloat ? t : t.to(info.dtype);
}

RandomInitLayout random_init_layout(const m2sa_model::M2SAConfig& config, c10::ScalarType dtype) {
  // Names and shapes from a shape-only model: exactly the layout the loaders check.
  m2sa_model::M2SAForCausalLM model{nullptr};
  {
    nn::ShapeOnlyScope shape_only;
    model = m2sa_model::M2SAForCausalLM(config);
  }
  RandomInitLayout l;
  const NamedTensors state = m2sa_model::merged_hf_state(*model);
  l.merged = tensor_infos_of(state, dtype);
  const std::string sam_prefix = key_rules::kSam;
  for (const TensorInfo& t : tensor_infos_of(state, at::kFloat))
    if (t.name.compare(0, sam_prefix.size(), sam_prefix) == 0 && t.name.find(".compress_vit.") == std::string::npos)
      l.sam.push_back(TensorInfo{t.name.substr(sam_prefix.size()), t.dtype, t.shape});
  l.clip = tensor_infos_of(m2sa_model::clip_state(*model), at::kFloat);
  return l;
}

void write_random_init_model(const m2sa_model::M2SAConfig& config, const fs::path& out,
                             const RandomInitOptions& options) {
  M2SA_CHECK(!out.empty(), "random init: no output directory");
  M2SA_CHECK(!options.tokenizer.empty(), "random init: give the tokenizer (e.g. configs/tokenizer)");
  M2SA_CHECK(options.max_shard_bytes > 0, "random init: max_shard_bytes must be positive");
  if (fs::exists(out)) {
    M2SA_CHECK(fs::is_directory(out), out.string(), ": exists and is not a directory");
    const bool empty = fs::is_empty(out);
    M2SA_CHECK(empty || options.overwrite, out.string(), ": exists and is not empty (pass --overwrite to replace it)");
    M2SA_CHECK(empty || fs::exists(out / kRandomModelDir / m2sa_model::kHfConfigFile), out.string(),
               ": exists and was not written by --random-init (no model/config.json); refusing to replace it");
  }
  const RandomInitLayout layout = random_init_layout(config, options.dtype);
  const std::vector<TensorInfo>& merged = layout.merged;

  TokenizerOptions to;
  to.expected_seg_token_id = config.m2sa.seg_token_id;
  to.add_missing_tokens = true;
  to.model_max_length = config.m2sa.model_max_length;
  const Tokenizer tokenizer = with_context("loading the tokenizer from " + options.tokenizer.string(),
                                           [&] { return Tokenizer::load(options.tokenizer, to); });
  check_tokenizer(tokenizer, config, options.tokenizer.string());

  const uint64_t seed = options.seed;
  const MakeTensor make = [seed](const TensorInfo& info) { return random_init_tensor(info, seed); };
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  fs::create_directories(parent);
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path tmp = parent / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(stamp));
  try {
    const json hf_config = m2sa_model::hf_config_json(config, options.dtype, "openai/clip-vit-large-patch14");
    // model/
    const fs::path model_dir = tmp / kRandomModelDir;
    fs::create_directories(model_dir);
    write_safetensors_shards_streamed(model_dir, merged, options.max_shard_bytes, make);
    write_json_file(model_dir / m2sa_model::kHfConfigFile, hf_config);
    tokenizer.save(model_dir);
    // model-bin/
    if (options.write_bin) {
      const fs::path bin_dir = tmp / kRandomModelBinDir;
      fs::create_directories(bin_dir);
      write_bin_shards_streamed(bin_dir, merged, options.max_shard_bytes, make);
      write_json_file(bin_dir / m2sa_model::kHfConfigFile, hf_config);
      tokenizer.save(bin_dir);
    }
    // SAM
    spdlog::info("random init: writing {}", (tmp / kRandomSamFile).string());
    // SAM's tensors get the values of their merged-layout names, so the training start equals model/ there.
    write_torch_checkpoint_streamed(tmp / kRandomSamFile, layout.sam, [seed](const TensorInfo& info) {
      TensorInfo merged_name = info;
      merged_name.name = std::string(key_rules::kSam) + info.name;
      return random_init_tensor(merged_name, seed);
    });
    // CLIP
    const fs::path clip_dir = tmp / kRandomClipDir;
    fs::create_directories(clip_dir);
    write_safetensors_streamed(clip_dir / "model.safetensors", layout.clip, make, {{"format", "pt"}});
    write_json_file(clip_dir / m2sa_model::kHfConfigFile, m2sa_model::clip_hf_config_json(config.clip, at::kFloat));
    write_json_file(clip_dir / "preprocessor_config.json", clip_preprocessor_config(config.clip));
    // llava/: hard links to model/'s shards, indexed for the LLaVA tensors only.
    const fs::path llava_dir = tmp / kRandomLlavaDir;
    fs::create_directories(llava_dir);
    const json index = read_json_file(model_dir / "model.safetensors.index.json");
    json weight_map = json::object();
    int64_t total = 0;
    for (const TensorInfo& t : merged)
      if (is_llava_tensor(t.name)) {
        weight_map[t.name] = index.at("weight_map").at(t.name);
        total += t.numel() * static_cast<int64_t>(c10::elementSize(t.dtype));
      }
    for (const auto& e : fs::directory_iterator(model_dir))
      if (e.path().extension() == ".safetensors") fs::create_hard_link(e.path(), llava_dir / e.path().filename());
    write_json_file(llava_dir / "model.safetensors.index.json",
                    json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
    write_json_file(llava_dir / m2sa_model::kHfConfigFile, hf_config);
    tokenizer.save(llava_dir);
    replace_directory(tmp, out);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw Error("random init to " + out.string() + ": " + e.what());
  }
}

}  // namespace m2sa::infer
