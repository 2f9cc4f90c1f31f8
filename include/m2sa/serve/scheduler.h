#pragma once
// The scheduler: one thread owns the model and decodes every request (continuous batching,
// m2sa_model::DecodeBatch). Requests wait in a bounded queue; at each step the thread admits waiting requests while
// the batch has room (preprocess + CLIP once per image unless a session keeps it, then a prefill), runs one decoding
// step for every running sequence, and finishes the sequences that ended (SAM encoder once per image, masks,
// targets). Requests past their deadline are answered 504, in the queue or in the batch. stop() admits nothing new,
// finishes what is queued and running, then ends the thread.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "m2sa/infer/predictor.h"
#include "m2sa/serve/metrics.h"
#include "m2sa/serve/request.h"
#include "m2sa/serve/sessions.h"
#include "m2sa/text/dialog.h"

namespace m2sa::serve {

struct Job {
  using Clock = std::chrono::steady_clock;
  // ---- input ----
  std::shared_ptr<Session> session;  // a session's question (acquired): its encodings and history are used
  at::Tensor rgb;                    // otherwise the image
  // Its preprocessed inputs (Scheduler::preprocess), made on the HTTP thread so that the scheduler thread only runs
  // the model; empty: the scheduler preprocesses `rgb` itself.
  std::optional<infer::Predictor::EncodedImages> encoded;
  double preprocess_s = 0;
  Dialog dialog;                     // the conversation to answer: the last turn's answer is empty
  int64_t max_new_tokens = 512;
  bool compute_masks = true;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  // Streaming: called on the scheduler thread after each token with the answer text so far.
  std::function<void(const std::string& answer_so_far)> on_progress;

  // ---- output ----
  // Waits until the job is done; true if it succeeded (prediction set), false with `error`.
  bool wait();
  bool done() const;
  std::optional<infer::Prediction> prediction;
  ApiError error;
  double queue_s = 0;  // arrival -> admission

  void complete(infer::Prediction p);
  void fail(ApiError e);

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
};

struct SchedulerOptions {
  int64_t max_batch = 16;
  int64_t max_queue = 64;
};

class Scheduler {
 public:
  Scheduler(const infer::Predictor& predictor, SchedulerOptions options, Metrics& metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job; false (and the job untouched) when the queue is full or the scheduler is stopping.
  bool submit(const std::shared_ptr<Job>& job);
  // Finishes the queued and running jobs, then ends the thread (idempotent).
  void stop();
  // Tests: while paused, nothing is admitted from the queue (running sequences still decode).
  void pause(bool paused);
  int64_t queue_depth() const;
  int64_t running() const;
  // Preprocesses an image (CPU) for a session; thread-safe.
  infer::Predictor::EncodedImages preprocess(const at::Tensor& rgb) const;

 private:
  struct Running;
  void loop();
  void admit(const std::shared_ptr<Job>& job);
  void drain_decoder();
  void expire_running();

  const infer::Predictor& predictor_;
  SchedulerOptions options_;
  Metrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false, paused_ = false;
  int64_t running_count_ = 0;  // guarded by mutex_ (mirrors running_.size() for other threads)
  std::map<int64_t, std::unique_ptr<Running>> running_;  // scheduler thread only
  struct DecoderHolder;
  std::unique_ptr<DecoderHolder> decoder_;
  std::thread thread_;
};

}  // namespace m2sa::serve
