#include "m2sa/serve/scheduler.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/core/stopwatch.h"
#include "m2sa/models/m2sa/decode_batch.h"

namespace m2sa::serve {

// ---- Job ----

bool Job::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
  return prediction.has_value();
}

bool Job::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void Job::complete(infer::Prediction p) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    prediction = std::move(p);
    done_ = true;
  }
  cv_.notify_all();
}

void Job::fail(ApiError e) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = std::move(e);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::DecoderHolder {
  m2sa_model::DecodeBatch batch;
};

struct Scheduler::Running {
  std::shared_ptr<Job> job;
  infer::Predictor::EncodedImages own;   // the request's image (non-session jobs)
  infer::Predictor::EncodedImages* enc;  // own or the session's
  infer::Predictor::PromptJob prompt;
  infer::PredictionTimings timings;
  Clock::time_point decode_start;
  std::vector<int64_t> ids;  // generated so far (for streaming)
  bool had_sam = false;
};

Scheduler::Scheduler(const infer::Predictor& predictor, SchedulerOptions options, Metrics& metrics)
    : predictor_(predictor), options_(options), metrics_(metrics) {
  M2SA_CHECK(options_.max_batch >= 1, "serve: --max-batch must be >= 1, got ", options_.max_batch);
  M2SA_CHECK(options_.max_queue >= 0, "serve: --max-queue must be >= 0, got ", options_.max_queue);
  decoder_ = std::make_unique<DecoderHolder>(
      DecoderHolder{m2sa_model::DecodeBatch(*predictor_.model(), predictor_.tokenizer().eos_id())});
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

bool Scheduler::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    // Room: a free place in the batch for each queued job, plus max_queue waiting.
    const int64_t free_slots = std::max<int64_t>(0, options_.max_batch - running_count_);
    if (static_cast<int64_t>(queue_.size()) >= free_slots + options_.max_queue) return false;
    queue_.push_back(job);
    metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
  }
  cv_.notify_all();
  return true;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    paused_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::pause(bool paused) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    paused_ = paused;
  }
  cv_.notify_all();
}

int64_t Scheduler::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

int64_t Scheduler::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_count_;
}

infer::Predictor::EncodedImages Scheduler::preprocess(const at::Tensor& rgb) const {
  infer::Predictor::EncodedImages enc;
  enc.images = predictor_.preprocess({rgb});
  enc.sam.assign(1, std::nullopt);
  return enc;
}

void Scheduler::admit(const std::shared_ptr<Job>& job) {
  const auto now = Clock::now();
  job->queue_s = std::chrono::duration<double>(now - job->arrival).count();
  if (now > job->deadline) {
    job->fail(ApiError{504, "timeout", "the request timed out while waiting in the queue"});
    return;
  }
  auto r = std::make_unique<Running>();
  r->job = job;
  try {
    at::NoGradGuard no_grad;
    auto t0 = Clock::now();
    if (job->session) {
      r->enc = &job->session->encoded;
    } else if (job->encoded) {
      r->own = std::move(*job->encoded);
      job->encoded.reset();
      r->enc = &r->own;
      r->timings.preprocess_s = job->preprocess_s;
    } else {
      r->own = preprocess(job->rgb);
      r->enc = &r->own;
      r->timings.preprocess_s = seconds_since(t0);
    }
    t0 = Clock::now();
    if (r->enc->clip_features.defined()) {
      r->timings.clip_cached = true;
    } else {
      r->enc->clip_features = predictor_.model()->image_features(r->enc->images.clip_images);
      r->timings.clip_s = seconds_since(t0);
      metrics_.image_encodings(1, 0);
      if (job->session) ++job->session->clip_encodings;
    }
    r->had_sam = r->enc->sam.size() == 1 && r->enc->sam[0].has_value();
    r->prompt.ids = predictor_.prompt_ids(job->dialog);
    r->prompt.image = 0;
    r->prompt.question = job->dialog.back().user;
    if (job->dialog.size() == 1) {
      const std::string prefix = "<image>\n";
      if (r->prompt.question.rfind(prefix, 0) == 0) r->prompt.question = r->prompt.question.substr(prefix.size());
    }
    t0 = Clock::now();
    const int64_t handle = decoder_->batch.add(r->prompt.ids, r->enc->clip_features, job->max_new_tokens);
    r->timings.prefill_s = seconds_since(t0);
    r->decode_start = Clock::now();
    running_[handle] = std::move(r);
  } catch (const std::exception& e) {
    // The prompt itself is at fault (too long for the context): the client's error.
    job->fail(ApiError{400, "question", e.what()});
  }
}

void Scheduler::drain_decoder() {
  auto& batch = decoder_->batch;
  for (const auto& t : batch.take_tokens()) {
    const auto it = running_.find(t.handle);
    if (it == running_.end()) continue;
    Running& r = *it->second;
    r.ids.push_back(t.id);
    if (r.job->on_progress) {
      try {
        r.job->on_progress(predictor_.answer_text(r.ids));
      } catch (const std::exception& e) {
        spdlog::warn("serve: streaming callback failed: {}", e.what());
      }
    }
  }
  for (auto& [handle, result] : batch.take_finished()) {
    const auto it = running_.find(handle);
    if (it == running_.end()) continue;
    std::unique_ptr<Running> r = std::move(it->second);
    running_.erase(it);
    metrics_.generated_tokens(static_cast<int64_t>(result.output_ids.size()));
    metrics_.prompt_tokens(result.prompt_length);
    try {
      r->timings.decode_s = seconds_since(r->decode_start);
      r->timings.decode_steps = std::max<int64_t>(0, static_cast<int64_t>(result.output_ids.size()) - 1);
      r->timings.batch_queries = 1;
      r->timings.batch_images = 1;
      infer::PredictOptions po;
      po.max_new_tokens = r->job->max_new_tokens;
      po.compute_masks = r->job->compute_masks;
      const auto t0 = Clock::now();
      infer::Prediction p = predictor_.finish_prediction(*r->enc, r->prompt, result, po, r->timings);
      const bool has_sam = r->enc->sam[0].has_value();
      if (has_sam && !r->had_sam) {
        metrics_.image_encodings(0, 1);
        if (r->job->session) ++r->job->session->sam_encodings;
      }
      p.timings.sam_cached = r->had_sam && !p.targets.empty();
      p.timings.masks_s = std::max(0.0, seconds_since(t0) - p.timings.sam_s);
      p.timings.total_s = std::chrono::duration<double>(Clock::now() - r->job->arrival).count();
      r->job->complete(std::move(p));
    } catch (const std::exception& e) {
      spdlog::error("serve: finishing a prediction failed: {}", e.what());
      r->job->fail(ApiError{500, "", std::string("internal error: ") + e.what()});
    }
  }
}

void Scheduler::expire_running() {
  const auto now = Clock::now();
  for (auto it = running_.begin(); it != running_.end();) {
    if (now > it->second->job->deadline) {
      decoder_->batch.cancel(it->first);
      it->second->job->fail(ApiError{504, "timeout", "the request timed out while decoding"});
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::loop() {
  while (true) {
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      running_count_ = static_cast<int64_t>(running_.size());
      cv_.wait(lock, [&] {
        return !running_.empty() || stopping_ ||
               (!paused_ && !queue_.empty() && static_cast<int64_t>(running_.size()) < options_.max_batch);
      });
      if (stopping_ && queue_.empty() && running_.empty()) break;
      while (!paused_ && !queue_.empty() &&
             static_cast<int64_t>(running_.size() + admitted.size()) < options_.max_batch) {
        admitted.push_back(queue_.front());
        queue_.pop_front();
      }
      metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
      running_count_ = static_cast<int64_t>(running_.size() + admitted.size());
    }
    for (const auto& job : admitted) admit(job);
    drain_decoder();  // sequences that ended on their first token
    const int64_t rows = decoder_->batch.running();
    if (rows > 0) {
      try {
        decoder_->batch.step();
        metrics_.batch_size(rows);
      } catch (const std::exception& e) {
        // Should not happen (inputs were checked at admission): fail every running request rather than the server.
        spdlog::error("serve: a decoding step failed: {}", e.what());
        for (auto& [handle, r] : running_) {
          decoder_->batch.cancel(handle);
          r->job->fail(ApiError{500, "", std::string("internal error while decoding: ") + e.what()});
        }
        running_.clear();
      }
    }
    drain_decoder();
    expire_running();
    metrics_.set_running(static_cast<int64_t>(running_.size()));
  }
  // Anything left (nothing, normally) is answered.
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& job : queue_) job->fail(ApiError{503, "", "the server is shutting down"});
  queue_.clear();
  running_count_ = 0;
}

}  // namespace m2sa::serve
