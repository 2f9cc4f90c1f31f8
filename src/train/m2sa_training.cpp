#include "m2sa/train/m2sa_training.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <any>
#include <chrono>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/core/sha256.h"
#include "m2sa/data/collate.h"
#include "m2sa/data/eval_datasets.h"
#include "m2sa/data/training_mix.h"
#include "m2sa/eval/evaluator.h"
#include "m2sa/infer/model_export.h"
#include "m2sa/eval/preview.h"
#include "m2sa/report/run_report.h"
#include "m2sa/vision/image_io.h"
#include "m2sa/infer/model_loading.h"
#include "m2sa/io/weight_store.h"
#include "m2sa/models/m2sa/m2sa_checkpoint.h"
#include "m2sa/train/batch_prefetcher.h"
#include "m2sa/train/m2sa_objective.h"
#include "m2sa/train/trainable_params.h"

namespace m2sa::train {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------- config

json ModelInitConfig::to_json() const {
  json j{{"from", from}};
  if (from == "scratch") j["seed"] = seed;
  if (!sam.empty()) j["sam"] = sam.string();
  if (!llava_dir.empty()) j["llava_dir"] = llava_dir.string();
  if (!clip_dir.empty()) j["clip_dir"] = clip_dir.string();
  if (!model_dir.empty()) j["model_dir"] = model_dir.string();
  return j;
}

json ValidationConfig::to_json() const {
  return json{{"split", split},
              {"dataset_dir", dataset_dir.empty() ? json() : json(dataset_dir.string())},
              {"limit", limit},
              {"images_per_batch", images_per_batch},
              {"every_steps", every_steps},
              {"previews", previews}};
}

TrainingRunConfig TrainingRunConfig::from_json(const JsonReader& r) {
  TrainingRunConfig c;
  c.config_file = r.file();
  const fs::path base = fs::path(r.file()).parent_path();
  // Files that ship with the repository: relative to the config file.
  auto beside_config = [&](const std::string& p) -> fs::path {
    fs::path path(p);
    return fs::absolute(path.is_relative() && !base.empty() ? base / path : path);
  };
  c.seed = r.get_or<uint64_t>("seed", c.seed);

  if (!r.has("model"))
    fail(r.location("model"), ": required: the model config file (relative to this file, e.g. \"../tiny.json\") "
         "or the model config object itself");
  const json& m = r.raw("model");
  if (m.is_string()) {
    c.model_config_file = beside_config(m.get<std::string>());
    c.model = with_context(r.location("model"), [&] { return m2sa_model::read_model_config(c.model_config_file); });
  } else if (m.is_object()) {
    c.model = m2sa_model::M2SAConfig::from_json(r.child("model"));
  } else {
    fail(r.location("model"), ": expected a file name or an object, got ", m.dump());
  }

  c.init.seed = c.seed;
  if (r.has("init")) {
    const JsonReader ir = r.child("init");
    c.init.from = ir.get_or<std::string>("from", c.init.from);
    c.init.seed = ir.get_or<uint64_t>("seed", c.seed);
    c.init.sam = ir.get_or<std::string>("sam", "");
    c.init.llava_dir = ir.get_or<std::string>("llava_dir", "");
    c.init.clip_dir = ir.get_or<std::string>("clip_dir", "");
    c.init.model_dir = ir.get_or<std::string>("model_dir", "");
    ir.finish();
  }
  if (r.has("tokenizer")) {
    c.tokenizer = beside_config(r.get<std::string>("tokenizer"));
  } else if (c.init.from == "scratch") {
    c.tokenizer = fs::absolute("configs/tokenizer");
  }
  const std::string mode = r.get_or<std::string>("train_mode", "lora");
  c.train_mode = with_context(r.location("train_mode"), [&] { return m2sa_model::train_mode_from_name(mode); });
  c.precision = r.get_or("precision", c.precision);
  c.device = r.get_or("device", c.device);
  c.images_per_micro_batch = r.get_or("images_per_micro_batch", c.images_per_micro_batch);
  c.gradient_checkpointing = r.get_or("gradient_checkpointing", c.gradient_checkpointing);
  if (r.has("data")) {
    const JsonReader dr = r.child("data");
    const bool has_seed = dr.object().contains("seed");
    c.data = data::DataConfig::from_json(dr);
    if (!has_seed) c.data.seed = c.seed;
  } else {
    c.data.seed = c.seed;
  }
  if (r.has("train")) c.train = TrainerConfig::from_json(r.child("train"));
  if (r.has("loss")) c.loss = LossWeights::from_json(r.child("loss"));
  if (r.has("validation")) {
    const JsonReader vr = r.child("validation");
    c.validation.split = vr.get_or("split", c.validation.split);
    if (auto d = vr.get_optional<std::string>("dataset_dir")) c.validation.dataset_dir = *d;
    c.validation.limit = vr.get_or("limit", c.validation.limit);
    c.validation.images_per_batch = vr.get_or("images_per_batch", c.validation.images_per_batch);
    c.validation.every_steps = vr.get_or("every_steps", c.validation.every_steps);
    c.validation.previews = vr.get_or("previews", c.validation.previews);
    vr.finish();
  }
  const std::string stem = fs::path(r.file()).stem().string();
  c.export_model = r.get_or("export", c.export_model);
  c.run_dir = r.get_or<std::string>("run_dir", "runs/" + (stem.empty() ? std::string("m2sa") : stem));
  r.finish();
  c.validate(r.file());
  return c;
}

TrainingRunConfig TrainingRunConfig::read(const fs::path& path) {
  const json j = read_json_file(path);
  return from_json(JsonReader(j, path.string()));
}

void TrainingRunConfig::validate(const std::string& where) const {
  const ModelInitConfig& i = init;
  auto forbid = [&](const fs::path& p, const char* field) {
    if (!p.empty())
      fail(where, ": init.", field, " is not used with init.from \"", i.from, "\" (",
           i.from == "scratch" ? "a model trained from scratch loads no weights"
                               : "\"weights\" takes sam + llava_dir + clip_dir, \"merged\" takes model_dir [+ clip_dir]",
           ")");
  };
  auto need = [&](const fs::path& p, const char* field, const char* what) {
    if (p.empty()) fail(where, ": init.", field, ": required with init.from \"", i.from, "\" (", what, ")");
  };
  if (i.from == "scratch") {
    forbid(i.sam, "sam");
    forbid(i.llava_dir, "llava_dir");
    forbid(i.clip_dir, "clip_dir");
    forbid(i.model_dir, "model_dir");
    if (tokenizer.empty())
      fail(where, ": tokenizer: required for a model trained from scratch (e.g. \"configs/tokenizer\")");
  } else if (i.from == "weights") {
    need(i.sam, "sam", "the SAM checkpoint, e.g. weights/sam_vit_h_4b8939.pth");
    need(i.llava_dir, "llava_dir", "the LLaVA folder, e.g. weights/LLaVA-Lightning-7B-v1-1");
    need(i.clip_dir, "clip_dir", "the CLIP folder, e.g. weights/clip-vit-large-patch14");
    forbid(i.model_dir, "model_dir");
  } else if (i.from == "merged") {
    need(i.model_dir, "model_dir", "a merged Hugging Face model folder, e.g. the output of m2sa export");
    forbid(i.sam, "sam");
    forbid(i.llava_dir, "llava_dir");
  } else {
    fail(where, ": init.from: \"", i.from, "\" is not one of \"scratch\" (initialise with a seed), \"weights\" "
         "(SAM .pth + LLaVA folder + CLIP folder) or \"merged\" (a merged model folder)");
  }
  if (precision != "auto" && precision != "fp32" && precision != "bf16")
    fail(where, ": precision: \"", precision, "\" is not one of \"auto\" (bf16 on CUDA, fp32 on the CPU), \"fp32\", "
         "\"bf16\"");
  if (device != "auto" && device != "cpu" && device != "cuda") {
    bool ok = device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
              device.find_first_not_of("0123456789", 5) == std::string::npos;
    if (!ok)
      fail(where, ": device: \"", device, "\" is not one of \"auto\", \"cpu\", \"cuda\" (cuda:LOCAL_RANK), \"cuda:N\"");
  }
  if (images_per_micro_batch < 1)
    fail(where, ": images_per_micro_batch: must be >= 1, got ", images_per_micro_batch);
  if (validation.previews < 0) fail(where, ": validation.previews: must be >= 0, got ", validation.previews);
  if (validation.images_per_batch < 1)
    fail(where, ": validation.images_per_batch: must be >= 1, got ", validation.images_per_batch);
  if (validation.limit == 0 || validation.limit < -1)
    fail(where, ": validation.limit: must be -1 (all) or positive, got ", validation.limit);
  if (validation.every_steps < 0)
    fail(where, ": validation.every_steps: must be >= 0 (0: at epoch ends only), got ", validation.every_steps);
  if (run_dir.empty()) fail(where, ": run_dir: empty");
  if (export_model != "best" && export_model != "last" && export_model != "none")
    fail(where, ": export: \"", export_model, "\" is not one of \"best\" (the best checkpoint, else the last weights), "
         "\"last\", \"none\"");
  model.validate(where + ": model");
  data.validate(where + ": data");
}

json TrainingRunConfig::to_json() const {
  return json{{"model", model.to_json()},
              {"init", init.to_json()},
              {"tokenizer", tokenizer.empty() ? json() : json(tokenizer.string())},
              {"train_mode", m2sa_model::train_mode_name(train_mode)},
              {"precision", precision},
              {"device", device},
              {"images_per_micro_batch", images_per_micro_batch},
              {"gradient_checkpointing", gradient_checkpointing},
              {"data", data.to_json()},
              {"train", train.to_json()},
              {"loss", loss.to_json()},
              {"validation", validation.to_json()},
              {"run_dir", run_dir.string()},
              {"export", export_model},
              {"seed", seed}};
}

c10::Device TrainingRunConfig::resolved_device(int local_rank) const {
  if (device == "cpu") return c10::Device(c10::kCPU);
  if (device == "auto") return at::hasCUDA() ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank))
                                             : c10::Device(c10::kCPU);
  M2SA_CHECK(at::hasCUDA(), "training config: device \"", device,
             "\": this LibTorch build (or this machine) has no CUDA; use \"cpu\" or \"auto\"");
  if (device == "cuda") return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(device.substr(5))));
}

at::ScalarType TrainingRunConfig::resolved_dtype(const c10::Device& dev) const {
  if (precision == "fp32") return at::kFloat;
  if (precision == "bf16") return at::kBFloat16;
  return dev.is_cuda() ? at::kBFloat16 : at::kFloat;
}

std::vector<int64_t> micro_batch_sample_indices(const StepInfo& info, int64_t images_per_micro_batch) {
  std::vector<int64_t> out;
  const int64_t first = info.global_micro_index() * images_per_micro_batch;
  for (int64_t j = 0; j < images_per_micro_batch; ++j) out.push_back(first + j);
  return out;
}

// ---------------------------------------------------------------------------------------------- model

namespace {

// An inline model config as a file for load_model (removed when this object dies).
class TempModelConfig {
 public:
  explicit TempModelConfig(const m2sa_model::M2SAConfig& config) {
    path_ = fs::temp_directory_path() /
            ("m2sa_model_config_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++) + ".json");
    write_json_file(path_, config.to_json());
  }
  ~TempModelConfig() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path path_;
};

}  // namespace

TrainingModel build_training_model(const TrainingRunConfig& config, const c10::Device& device, at::ScalarType dtype) {
  m2sa_model::M2SAForCausalLM model{nullptr};
  std::optional<Tokenizer> tokenizer;
  std::vector<std::string> log;
  if (config.init.from == "scratch") {
    TokenizerOptions to;
    to.expected_seg_token_id = config.model.m2sa.seg_token_id;
    to.add_missing_tokens = true;
    to.model_max_length = config.model.m2sa.model_max_length;
    tokenizer = with_context("loading the tokenizer from " + config.tokenizer.string(),
                             [&] { return Tokenizer::load(config.tokenizer, to); });
    infer::check_tokenizer(*tokenizer, config.model, config.tokenizer.string());
    at::manual_seed(config.init.seed);
    model = m2sa_model::M2SAForCausalLM(config.model);
    log.push_back("initialised from scratch (torch seed " + std::to_string(config.init.seed) + ")");
  } else {
    std::optional<TempModelConfig> temp;
    infer::ModelSource src;
    if (config.model_config_file.empty()) {
      temp.emplace(config.model);
      src.config = temp->path();
    } else {
      src.config = config.model_config_file;
    }
    src.tokenizer = config.tokenizer;
    if (config.init.from == "weights") {
      src.sam = config.init.sam;
      src.llava_dir = config.init.llava_dir;
      src.clip_dir = config.init.clip_dir;
    } else {
      src.model_dir = config.init.model_dir;
      src.clip_dir = config.init.clip_dir;
    }
    infer::LoadModelOptions lo;
    lo.dtype = dtype;
    lo.device = device;
    lo.eval = false;
    infer::LoadedModel loaded = infer::load_model(src, lo);
    model = loaded.model;
    tokenizer = loaded.tokenizer;
    log = loaded.log;
  }
  // LoRA adapters (lora mode) are initialised from the run seed: the same on every rank.
  at::manual_seed(config.seed);
  std::vector<std::string> trainable = m2sa_model::set_trainable(*model, config.train_mode);
  model->to(device, dtype);
  model->llm->set_gradient_checkpointing(config.gradient_checkpointing);
  model->train();
  return TrainingModel{model, *tokenizer, std::move(trainable), std::move(log)};
}

// ---------------------------------------------------------------------------------------------- the task

namespace {

using Clock = std::chrono::steady_clock;

class M2SATask {
 public:
  M2SATask(const TrainingRunConfig& config, TrainingModel& tm, data::TrainingMix& mix,
           const data::EvalDataset* val, const c10::Device& device, int64_t prefetch)
      : config_(config),
        model_(tm.model),
        tokenizer_(tm.tokenizer),
        mix_(mix),
        val_(val),
        device_(device),
        collate_(data::CollateConfig::for_model(config.model, /*training=*/true)),
        prefetcher_([this](const StepInfo& info) { return make_batch(info); }, prefetch,
                    config.train.total_steps()) {}

  TrainTask task() {
    TrainTask t;
    t.next_batch = [this](const StepInfo& info) { return next_batch(info); };
    t.forward = [this](const Batch& b, const StepInfo&) { return forward(b); };
    if (val_) t.validate = [this](const StepInfo& info, dist::Communicator& comm) { return validate(info, comm); };
    if (val_ && config_.validation.previews > 0) t.previews = [this](const StepInfo&) { return previews(); };
    t.data_state = [this] {
      json s = mix_.state();
      s["position"] = position_;
      return json{{"mix", s}};
    };
    t.restore_data_state = [this](const json& j) {
      with_context("restoring the data sampler state", [&] {
        mix_.restore(j.at("mix"));
        position_ = json_int(j.at("mix").at("position"), "sampler state: position", 0);
      });
    };
    return t;
  }

 private:
  Batch next_batch(const StepInfo& info) {
    Batch b = prefetcher_.next(info);
    position_ = micro_batch_sample_indices(info, config_.images_per_micro_batch).back() + 1;
    return b;
  }

  // The micro-batch of `info`: sampling (image and mask decoding), collation (resizing, tokenising). A pure
  // function of `info` (TrainingMix::sample is one of the sample index), so that the prefetch thread may run it.
  Batch make_batch(const StepInfo& info) const {
    const std::vector<int64_t> indices = micro_batch_sample_indices(info, config_.images_per_micro_batch);
    const std::string where = "step " + std::to_string(info.step + 1) + ", micro-batch " + std::to_string(info.micro) +
                              " of rank " + std::to_string(info.rank);
    std::vector<Sample> samples;
    for (int64_t idx : indices) {
      try {
        samples.push_back(mix_.sample(idx));
      } catch (const data::BadEntry& e) {
        fail(where, ", sample ", idx, ": ", e.what(),
             " (a bad entry stops training; --skip-bad or \"data\": {\"skip_bad\": true} skips and counts them)");
      } catch (const std::exception& e) {
        fail(where, ", sample ", idx, ": ", e.what());
      }
    }
    auto batch = std::make_shared<data::M2SATrainBatch>(
        with_context(where + ": collating", [&] { return data::collate_samples(samples, tokenizer_, collate_); }));
    // On CUDA the host tensors go to page-locked memory here, off the training thread, so that the step's
    // host-to-device copies are asynchronous (micro_batch_objective copies pinned tensors with non_blocking).
    if (device_.is_cuda()) pin_batch(*batch);
    Batch b;
    b.samples = static_cast<int64_t>(samples.size());
    b.sources = batch->sources;
    b.data = std::move(batch);
    return b;
  }

  static void pin_batch(data::M2SATrainBatch& batch) {
    m2sa_model::M2SABatch& x = batch.inputs;
    for (at::Tensor* t : {&x.images.sam_images, &x.images.clip_images, &x.input_ids, &x.attention_mask, &x.labels})
      if (t->defined() && t->is_cpu()) *t = t->pin_memory();
    for (at::Tensor& t : batch.gt_masks)
      if (t.defined() && t.is_cpu()) t = t.pin_memory();
  }

  ForwardResult forward(const Batch& b) {
    const auto& batch = std::any_cast<const std::shared_ptr<data::M2SATrainBatch>&>(b.data);
    return to_forward_result(micro_batch_objective(*model_, batch->inputs, batch->gt_masks, config_.loss, device_).losses);
  }

  std::map<std::string, double> validate(const StepInfo&, dist::Communicator& comm) {
    eval::EvaluateOptions eo;
    eo.mode = eval::EvalMode::kTeacherForced;
    eo.images_per_batch = config_.validation.images_per_batch;
    eo.limit = config_.validation.limit;
    eo.log_progress = false;
    // --skip-bad ("data": {"skip_bad": true}) covers the validation split too: a bad item is left out and counted.
    data::SkipReport skipped;
    eo.skip_bad = config_.data.skip_bad;
    eo.skip_report = &skipped;
    model_->eval();
    eval::SegMeter meter = [&] {
      try {
        return eval::evaluate(model_, tokenizer_, *val_, eo, &comm);
      } catch (...) {
        model_->train();
        throw;
      }
    }();
    model_->train();
    std::map<std::string, double> out{{"giou", meter.giou()}, {"ciou", meter.ciou()}};
    if (skipped.count() > 0) {  // every rank holds the skips of all ranks
      if (comm.rank() == 0) spdlog::warn("validation: {}", skipped.summary());
      out["skipped_items"] = static_cast<double>(skipped.count());
    }
    return out;
  }

  std::vector<PreviewImage> previews() {
    model_->eval();
    std::vector<eval::Preview> drawn;
    try {
      drawn = eval::render_previews(model_, tokenizer_, *val_, config_.validation.previews);
    } catch (...) {
      model_->train();
      throw;
    }
    model_->train();
    std::vector<PreviewImage> out;
    for (const eval::Preview& p : drawn) {
      PreviewImage img;
      img.name = p.name;
      img.png = encode_image(p.image, ".png");
      img.height = p.image.size(0);
      img.width = p.image.size(1);
      img.info = p.info;
      out.push_back(std::move(img));
    }
    return out;
  }

  const TrainingRunConfig& config_;
  m2sa_model::M2SAForCausalLM model_;
  const Tokenizer& tokenizer_;
  data::TrainingMix& mix_;
  const data::EvalDataset* val_;
  c10::Device device_;
  data::CollateConfig collate_;
  int64_t position_ = 0;  // the sample stream position after this rank's last micro-batch
  BatchPrefetcher prefetcher_;  // last member: its thread calls make_batch, which reads the members above
};

// Writes <run_dir>/model from the best checkpoint's weights (export "best", when there is one) or the final ones, in
// the training dtype (bf16 on CUDA as the reference's merge script, fp32 on the CPU).
std::filesystem::path export_trained_model(const TrainingRunConfig& config, TrainingModel& tm,
                                           const TrainSummary& summary, at::ScalarType dtype) {
  std::string which = "the last weights (step " + std::to_string(summary.end_step) + ")";
  if (config.export_model == "best" && summary.best) {
    const fs::path file = config.run_dir / "checkpoints" / CheckpointManager::dir_name(summary.best->step) /
                          "trainable.safetensors";
    with_context("exporting the best checkpoint", [&] {
      m2sa_model::load_trainable_weights(*tm.model, WeightStore::open(file));
    });
    which = "the best checkpoint (step " + std::to_string(summary.best->step) + ")";
  }  // else: the model holds the last weights (the masters are copied into it after every step)
  infer::ExportOptions eo;
  eo.dtype = dtype;
  eo.overwrite = true;
  const fs::path dir = config.run_dir / "model";
  tm.model->eval();
  infer::export_model(*tm.model, tm.tokenizer, dir, eo);
  spdlog::info("model exported to {} from {}", dir.string(), which);
  return dir;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- the run

TrainingRunResult run_training(const TrainingRunConfig& config, const TrainingRunOptions& options) {
  std::unique_ptr<dist::Communicator> owned;
  dist::Communicator* comm = options.comm;
  c10::Device device(c10::kCPU);
  if (!comm) {
    const dist::DistEnv env = dist::DistEnv::from_environment();
    device = config.resolved_device(env.local_rank);
    dist::CommOptions co;
    co.timeout_s = config.train.collective_timeout_s;
    co.device = device;
    owned = dist::make_communicator(env, co);
    comm = owned.get();
  } else {
    device = config.resolved_device(comm->local_rank());
  }
  const bool main = comm->is_main();
  const at::ScalarType dtype = config.resolved_dtype(device);
  const json resolved = config.to_json();
  TrainingRunResult result;
  result.run_dir = config.run_dir;
  result.config_hash = sha256_hex(resolved.dump()).substr(0, 16);

  if (main)
    spdlog::info("m2sa train: {} on {} ({}), {} rank(s) ({}), {} intra-op thread(s), train mode {}", 
                 config.config_file.empty() ? std::string("(config in code)") : config.config_file.string(),
                 device.str(), dtype == at::kBFloat16 ? "bf16 weights, fp32 masters" : "fp32",
                 comm->world_size(), comm->backend(), at::get_num_threads(),
                 m2sa_model::train_mode_name(config.train_mode));
  const auto t0 = Clock::now();
  TrainingModel tm = with_context("building the model", [&] { return build_training_model(config, device, dtype); });
  // Independent dropout streams per rank (the initial weights above are the same on every rank).
  at::manual_seed(config.seed * 1000003ull + static_cast<uint64_t>(comm->rank()) + 1);
  if (main) {
    for (const auto& line : tm.log) spdlog::info("model: {}", line);
    spdlog::info("model ready in {:.1f} s: {} trainable parameters in {} tensors, gradient checkpointing {}",
                 std::chrono::duration<double>(Clock::now() - t0).count(), m2sa_model::trainable_numel(*tm.model),
                 tm.trainable.size(), config.gradient_checkpointing ? "on" : "off");
  }
  TrainableParamsOptions po;
  po.bucket_bytes = config.train.bucket_mb << 20;
  TrainableParams params = TrainableParams::from_module(*tm.model, po);

  // Every rank reads the same sample stream (rank 0's) and takes its share by global micro-batch index.
  data::TrainingMix mix = with_context("opening the training data", [&] { return data::TrainingMix(config.data, 0); });
  if (main) spdlog::info("training data:\n{}", mix.describe());
  std::unique_ptr<data::EvalDataset> val;
  data::SkipReport val_load_skips;
  if (config.validation.enabled()) {
    const fs::path dir = config.validation.dataset_dir.empty() ? config.data.dataset_dir : config.validation.dataset_dir;
    val = with_context("opening the validation split \"" + config.validation.split + "\"",
                       [&] {
                         data::EvalOptions vo;
                         vo.skip_bad = config.data.skip_bad;
                         vo.report = &val_load_skips;
                         return data::make_eval_dataset(config.validation.split, dir, vo);
                       });
    if (main && val_load_skips.count() > 0) spdlog::warn("validation split: {}", val_load_skips.summary());
    if (main) spdlog::info("validation: {} ({} images{}), teacher-forced", config.validation.split, val->size(),
                           config.validation.limit > 0 ? ", first " + std::to_string(config.validation.limit) : "");
  }
  if (main) {
    fs::create_directories(config.run_dir);
    write_json_file(config.run_dir / "train_config.json", resolved);
  }

  M2SATask m2sa_task(config, tm, mix, val.get(), device,
                     options.prefetch >= 0 ? options.prefetch : (device.is_cpu() ? 0 : 2));
  TrainTask task = m2sa_task.task();
  task.on_step = options.on_step;
  TrainerOptions to;
  to.run_dir = config.run_dir;
  to.resume = options.resume;
  to.config_hash = result.config_hash;
  to.device = device;
  to.checkpoint_fault_hook = options.checkpoint_fault_hook;
  to.validate_every = config.validation.every_steps;
  Trainer trainer(config.train, params, *comm, std::move(task), to);
  result.summary = trainer.run();
  result.last_validation = result.summary.last_validation;
  if (result.summary.stopped) return result;  // not finished: no export and no report until the run resumes and ends
  if (main && config.export_model != "none")
    result.model_dir = export_trained_model(config, tm, result.summary, dtype);
  if (main) {
    if (mix.skipped().count() > 0) spdlog::warn("{}", mix.skipped().summary());
    if (mix.empty_draws() > 0) spdlog::info("{} empty draws were redrawn", mix.empty_draws());
    // The page is for people: failing to write it is reported, and the run (already checkpointed) still succeeds.
    try {
      result.report = report::write_run_report({config.run_dir, {}, {}});
      spdlog::info("run report: {} (TensorBoard: tensorboard --logdir {})", result.report.string(),
                   (config.run_dir / "tb").string());
    } catch (const std::exception& e) {
      spdlog::warn("the run report was not written: {}", e.what());
    }
    spdlog::info("training finished: steps {}..{} in {:.1f} s{}", result.summary.start_step, result.summary.end_step,
                 result.summary.seconds,
                 result.summary.best ? ", best " + result.summary.best->metric + " " +
                                           std::to_string(result.summary.best->value) + " at step " +
                                           std::to_string(result.summary.best->step)
                                     : std::string());
  }
  return result;
}

}  // namespace m2sa::train
