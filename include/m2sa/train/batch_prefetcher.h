#pragma once
// Keeps the next micro-batches ready: a background thread makes the batches of the coming (step, micro) pairs
// while the training thread computes the current one (issue 15, "Training input pipeline"). Decoding, resizing
// and mask decoding then overlap the forward and backward passes instead of preceding them.
//
// Results are those of making each batch on the training thread, bit for bit, provided `make` is a pure
// function of its StepInfo (M2SA's is: TrainingMix::sample(index) depends only on (config, seed, rank, index),
// collation on the samples). The order in which batches are made therefore does not matter, no sampler state is
// advanced ahead of time, and a resumed run, whose first StepInfo is not the one expected, simply makes that
// batch on the calling thread and prefetches from there.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "m2sa/train/trainer.h"

namespace m2sa::train {

class BatchPrefetcher {
 public:
  using MakeBatch = std::function<Batch(const StepInfo&)>;

  // `make` must be thread-safe and pure in its StepInfo. `depth`: micro-batches made ahead (0: no thread, next()
  // makes every batch itself). Nothing is made for steps >= total_steps (the run ends there).
  BatchPrefetcher(MakeBatch make, int64_t depth, int64_t total_steps);
  ~BatchPrefetcher();  // waits for the batch being made, drops the rest
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The batch of `info`: the one made ahead, waiting for it if it is still being made, or (none made ahead for
  // it) made now on this thread. Then queues the following micro-batches. An error of `make` is thrown here, for
  // the batch that caused it, exactly as if it had been made here.
  Batch next(const StepInfo& info);

  // Seconds next() spent waiting for or making batches since construction (the step's wait for data).
  double wait_seconds() const { return wait_s_; }
  // Batches next() returned from the background thread (the rest were made on the calling thread).
  int64_t prefetched() const { return prefetched_; }

  // The micro-batch after `info` in the run's order: the next micro-batch of the step, else micro 0 of the next
  // step.
  static StepInfo following(StepInfo info);

 private:
  struct Slot {
    StepInfo info;
    bool started = false, done = false;
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void work();

  MakeBatch make_;
  int64_t depth_, total_steps_;
  std::mutex mutex_;
  std::condition_variable wake_worker_, batch_done_;
  std::deque<std::shared_ptr<Slot>> queue_;  // the coming micro-batches, in order
  bool stop_ = false;
  double wait_s_ = 0;
  int64_t prefetched_ = 0;
  std::thread worker_;
};

}  // namespace m2sa::train
