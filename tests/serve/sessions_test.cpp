// Sessions (serve/sessions.h): ids, one question at a time, deletion, expiry by TTL and by count; and the Prometheus
// text of the metrics (serve/metrics.h).
#include "m2sa/serve/sessions.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "m2sa/serve/metrics.h"
#include "m2sa/serve/request.h"

namespace m2sa {
namespace {

at::Tensor tiny_rgb() { return at::zeros({4, 5, 3}, at::kByte); }

TEST(ServeSessions, AcquireReleaseDelete) {
  serve::SessionStore store(8, 3600);
  const auto s = store.create(tiny_rgb(), {});
  EXPECT_TRUE(serve::valid_session_id(s->id));
  serve::ApiError e;
  const auto a = store.acquire(s->id, e);
  ASSERT_TRUE(a);
  EXPECT_FALSE(store.acquire(s->id, e)) << "one question at a time";
  EXPECT_EQ(e.status, 409);
  EXPECT_EQ(e.field, "session");
  store.release(a);
  EXPECT_TRUE(store.acquire(s->id, e));
  EXPECT_TRUE(store.remove(s->id));
  EXPECT_FALSE(store.remove(s->id));
  EXPECT_FALSE(store.acquire(s->id, e));
  EXPECT_EQ(e.status, 404);
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.insert(serve::new_session_id());
  EXPECT_EQ(ids.size(), 50u);
}

TEST(ServeSessions, ExpireByCountAndTtl) {
  serve::SessionStore store(2, 3600);
  const auto a = store.create(tiny_rgb(), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto b = store.create(tiny_rgb(), {});
  serve::ApiError e;
  const auto busy_a = store.acquire(a->id, e);  // the oldest, but busy: kept
  ASSERT_TRUE(busy_a);
  const auto c = store.create(tiny_rgb(), {});
  EXPECT_EQ(store.size(), 2);
  EXPECT_FALSE(store.acquire(b->id, e)) << "the least recently used idle session is dropped";
  EXPECT_EQ(e.status, 404);
  store.release(busy_a);

  serve::SessionStore short_lived(8, 0.0);
  const auto d = short_lived.create(tiny_rgb(), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(short_lived.expire(), 0);
  EXPECT_FALSE(short_lived.acquire(d->id, e));
}

TEST(ServeMetrics, PrometheusText) {
  serve::Metrics m;
  m.request("segment", 200, 0.3);
  m.request("segment", 200, 7.0);
  m.request("segment", 400, 0.001);
  m.batch_size(3);
  m.generated_tokens(12);
  m.set_queue_depth(2);
  const std::string t = m.render();
  EXPECT_NE(t.find("m2sa_requests_total{endpoint=\"segment\",status=\"200\"} 2"), std::string::npos) << t;
  EXPECT_NE(t.find("m2sa_requests_total{endpoint=\"segment\",status=\"400\"} 1"), std::string::npos);
  EXPECT_NE(t.find("m2sa_request_duration_seconds_bucket{endpoint=\"segment\",le=\"0.5\"} 2"), std::string::npos);
  EXPECT_NE(t.find("m2sa_request_duration_seconds_bucket{endpoint=\"segment\",le=\"+Inf\"} 3"), std::string::npos);
  EXPECT_NE(t.find("m2sa_request_duration_seconds_count{endpoint=\"segment\"} 3"), std::string::npos);
  EXPECT_NE(t.find("m2sa_decode_batch_size_bucket{le=\"4\"} 1"), std::string::npos);
  EXPECT_NE(t.find("m2sa_generated_tokens_total 12"), std::string::npos);
  EXPECT_NE(t.find("m2sa_queue_depth 2"), std::string::npos);
  EXPECT_NE(t.find("# TYPE m2sa_request_duration_seconds histogram"), std::string::npos);
  EXPECT_EQ(m.requests("segment", 200), 2);
}

}  // namespace
}  // namespace m2sa
