// The training batch prefetcher (train/batch_prefetcher.h) with a toy batch maker: batches come back in the asked
// order with the contents of making them in place, are made on the background thread, never past the run's end,
// an unexpected StepInfo (a resumed run) is made on the calling thread, and an error surfaces for its own batch.
#include "m2sa/train/batch_prefetcher.h"

#include <gtest/gtest.h>

#include <any>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "m2sa/core/error.h"

namespace m2sa::train {
namespace {

struct Maker {
  std::mutex mutex;
  std::vector<int64_t> made;              // global micro indices, in the order they were made
  std::set<std::thread::id> threads;      // where
  int64_t fail_at = -1;

  Batch make(const StepInfo& info) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      made.push_back(info.global_micro_index());
      threads.insert(std::this_thread::get_id());
    }
    if (info.global_micro_index() == fail_at) fail("bad entry at micro-batch ", fail_at);
    Batch b;
    b.data = info.global_micro_index() * 10 + info.micro;
    b.samples = info.step;
    return b;
  }
};

StepInfo info_of(int64_t step, int64_t micro) { return StepInfo{step, micro, 3, 0, 1, 100}; }

int64_t value(const Batch& b) { return std::any_cast<int64_t>(b.data); }

TEST(BatchPrefetcher, ReturnsTheBatchesInOrderMadeOnTheBackgroundThread) {
  for (int64_t depth : {0, 1, 4}) {
    Maker maker;
    const int64_t steps = 5;
    {
      BatchPrefetcher p([&](const StepInfo& i) { return maker.make(i); }, depth, steps);
      for (int64_t s = 0; s < steps; ++s)
        for (int64_t m = 0; m < 3; ++m) {
          const StepInfo info = info_of(s, m);
          const Batch b = p.next(info);
          EXPECT_EQ(value(b), info.global_micro_index() * 10 + m) << "depth " << depth;
          EXPECT_EQ(b.samples, s);
        }
      // The first batch is made on this thread (nothing was queued yet); every later one ahead of time.
      EXPECT_EQ(p.prefetched(), depth > 0 ? steps * 3 - 1 : 0) << "depth " << depth;
      EXPECT_GE(p.wait_seconds(), 0.0);
    }
    std::set<int64_t> unique(maker.made.begin(), maker.made.end());
    EXPECT_EQ(unique.size(), maker.made.size()) << "a batch was made twice, depth " << depth;
    EXPECT_EQ(*unique.rbegin(), 5 * 3 - 1) << "nothing past the last step, depth " << depth;
    EXPECT_EQ(maker.threads.size(), depth > 0 ? 2u : 1u) << "depth " << depth;
    EXPECT_EQ(maker.threads.count(std::this_thread::get_id()), 1u);
  }
}

TEST(BatchPrefetcher, AnUnexpectedStepIsMadeInPlaceAndPrefetchingGoesOnFromThere) {
  Maker maker;
  BatchPrefetcher p([&](const StepInfo& i) { return maker.make(i); }, 2, 100);
  EXPECT_EQ(value(p.next(info_of(0, 0))), 0);
  // A resumed run (or any jump): the queued (0, 1) and (0, 2) are dropped.
  EXPECT_EQ(value(p.next(info_of(7, 1))), (7 * 3 + 1) * 10 + 1);
  EXPECT_EQ(value(p.next(info_of(7, 2))), (7 * 3 + 2) * 10 + 2);
  EXPECT_EQ(value(p.next(info_of(8, 0))), (8 * 3) * 10);
  EXPECT_EQ(p.prefetched(), 2);
  EXPECT_EQ(BatchPrefetcher::following(info_of(3, 2)).step, 4);
  EXPECT_EQ(BatchPrefetcher::following(info_of(3, 2)).micro, 0);
  EXPECT_EQ(BatchPrefetcher::following(info_of(3, 1)).micro, 2);
}

TEST(BatchPrefetcher, AnErrorIsThrownForItsOwnBatch) {
  Maker maker;
  maker.fail_at = 4;  // step 1, micro 1
  BatchPrefetcher p([&](const StepInfo& i) { return maker.make(i); }, 3, 100);
  for (int64_t m = 0; m < 3; ++m) EXPECT_NO_THROW(p.next(info_of(0, m)));
  EXPECT_NO_THROW(p.next(info_of(1, 0)));
  try {
    p.next(info_of(1, 1));
    ADD_FAILURE() << "no error for the bad micro-batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad entry at micro-batch 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(BatchPrefetcher(nullptr, 1, 1), Error);
  EXPECT_THROW(BatchPrefetcher([&](const StepInfo& i) { return maker.make(i); }, -1, 1), Error);
}

}  // namespace
}  // namespace m2sa::train
