#include "m2sa/train/batch_prefetcher.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <utility>

#include "m2sa/core/error.h"

namespace m2sa::train {

namespace {
bool same_micro_batch(const StepInfo& a, const StepInfo& b) {
  return a.step == b.step && a.micro == b.micro && a.micro_steps == b.micro_steps && a.rank == b.rank &&
         a.world_size == b.world_size && a.steps_per_epoch == b.steps_per_epoch;
}
}  // namespace

BatchPrefetcher::BatchPrefetcher(MakeBatch make, int64_t depth, int64_t total_steps)
    : make_(std::move(make)), depth_(depth), total_steps_(total_steps) {
  M2SA_CHECK(make_, "batch prefetcher: no batch maker");
  M2SA_CHECK(depth_ >= 0, "batch prefetcher: the prefetch depth must be >= 0, got ", depth_);
  if (depth_ > 0) worker_ = std::thread([this] { work(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  wake_worker_.notify_all();
  if (worker_.joinable()) worker_.join();
}

StepInfo BatchPrefetcher::following(StepInfo info) {
  if (++info.micro >= info.micro_steps) {
    info.micro = 0;
    ++info.step;
  }
  return info;
}

void BatchPrefetcher::work() {
  // A new thread starts with OpenMP's default team size; give it LibTorch's configured one (init_runtime).
  at::init_num_threads();
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    std::shared_ptr<Slot> slot;
    wake_worker_.wait(lock, [&] {
      if (stop_) return true;
      for (const auto& s : queue_)
        if (!s->started) {
          slot = s;
          return true;
        }
      return false;
    });
    if (stop_) return;
    slot->started = true;
    lock.unlock();
    std::optional<Batch> batch;
    std::exception_ptr error;
    try {
      batch = make_(slot->info);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    // The slot may have been dropped meanwhile (another order of batches was asked for): then nobody reads it.
    slot->batch = std::move(batch);
    slot->error = error;
    slot->done = true;
    batch_done_.notify_all();
  }
}

Batch BatchPrefetcher::next(const StepInfo& info) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<Batch> batch;
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // The queue holds the micro-batches that follow the last one asked for; anything else (a resumed run's first
    // step, a caller that skipped) drops it.
    if (!queue_.empty() && !same_micro_batch(queue_.front()->info, info)) queue_.clear();
    if (!queue_.empty()) {
      // It stays queued until done: the worker takes the first slot not started, so it is made there even if the
      // worker has not reached it yet.
      std::shared_ptr<Slot> slot = queue_.front();
      batch_done_.wait(lock, [&] { return slot->done; });
      queue_.pop_front();
      batch = std::move(slot->batch);
      error = slot->error;
      ++prefetched_;
    }
    // Queue what follows, up to depth_ micro-batches ahead, before this thread goes on.
    if (depth_ > 0) {
      StepInfo last = queue_.empty() ? info : queue_.back()->info;
      while (static_cast<int64_t>(queue_.size()) < depth_) {
        last = following(last);
        if (last.step >= total_steps_) break;
        auto slot = std::make_shared<Slot>();
        slot->info = last;
        queue_.push_back(std::move(slot));
      }
    }
  }
  wake_worker_.notify_all();
  if (error) {
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::rethrow_exception(error);
  }
  if (!batch) batch = make_(info);  // nothing made ahead for it: make it here
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::move(*batch);
}

}  // namespace m2sa::train
