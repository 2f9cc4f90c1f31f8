#include "m2sa/dist/communicator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "m2sa/core/error.h"
#include "m2sa/dist/launcher.h"
#include "test_util.h"

namespace m2sa::dist {
namespace {

// The error `fn` throws contains `part`.
template <typename Fn>
::testing::AssertionResult FailsWith(Fn&& fn, const std::string& part) {
  const std::string msg = test::error_of(fn);
  if (msg.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected an error containing \"" << part << "\", got \"" << msg << "\"";
}

// Sets environment variables for one test and restores them afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& values) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* v = std::getenv(k);
      saved_[k] = v ? std::optional<std::string>(v) : std::nullopt;
      ::unsetenv(k);
    }
    for (const auto& [k, v] : values) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(TrainDistEnv, ReadsTheTorchrunEnvironment) {
  {
    ScopedEnv e({});
    DistEnv env = DistEnv::from_environment();
    EXPECT_EQ(env.world_size, 1);
    EXPECT_FALSE(env.distributed());
  }
  {
    ScopedEnv e({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "node1"},
                 {"MASTER_PORT", "29511"}});
    DistEnv env = DistEnv::from_environment();
    EXPECT_EQ(env.rank, 2);
    EXPECT_EQ(env.world_size, 4);
    EXPECT_EQ(env.local_rank, 0);
    EXPECT_EQ(env.master_addr, "node1");
    EXPECT_EQ(env.master_port, 29511);
  }
}

TEST(TrainDistEnv, BadValuesNameTheVariable) {
  auto message = [](const std::map<std::string, std::string>& vars) {
    ScopedEnv e(vars);
    try {
      DistEnv::from_environment();
    } catch (const Error& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE='two' is not an integer"), std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}).find("RANK is not set"),
            std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT"),
            std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_PORT", "5"}}).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "1"}}).find("WORLD_SIZE is not"), std::string::npos);
}

TEST(DistCommunicator, WorldOfOneIsANoOp) {
  auto comm = make_communicator(DistEnv{});
  EXPECT_EQ(comm->backend(), "local");
  EXPECT_EQ(comm->world_size(), 1);
  at::Tensor t = at::arange(4, at::kFloat);
  comm->all_reduce_sum_(t);
  comm->broadcast_(t, 0);
  comm->barrier();
  EXPECT_TRUE(at::equal(t, at::arange(4, at::kFloat)));
  EXPECT_EQ(comm->all_reduce_sum(std::vector<double>{1.5, 2}), (std::vector<double>{1.5, 2}));
  EXPECT_EQ(comm->all_gather_bytes("abc"), std::vector<std::string>{"abc"});
  EXPECT_EQ(comm->broadcast_string("x", 0), "x");
  EXPECT_THROW(comm->broadcast_(t, 1), Error);
}

TEST(DistCommunicator, ShardsCoverEverySampleOnce) {
  std::vector<int> seen(10, 0);
  for (int r = 0; r < 3; ++r)
    for (int64_t i : shard_indices(10, r, 3)) ++seen[i];
  EXPECT_EQ(seen, std::vector<int>(10, 1));
  EXPECT_EQ(shard_indices(10, 2, 3), (std::vector<int64_t>{2, 5, 8}));
  EXPECT_THROW(shard_indices(10, 3, 3), Error);
}

TEST(DistCommunicator, GlooIsAvailableInThisBuild) {
  EXPECT_TRUE(gloo_available());
  DistEnv env;
  env.world_size = 2;
  CommOptions o;
  o.backend = "mpi";
  EXPECT_TRUE(FailsWith([&] { make_communicator(env, o); }, "unknown backend \"mpi\""));
}

// A Gloo process group of one rank (an explicit backend at world size 1) runs real collectives.
TEST(DistCommunicator, GlooAtWorldSizeOne) {
  CommOptions o;
  o.backend = "gloo";
  auto comm = make_communicator(DistEnv{}, o);
  EXPECT_EQ(comm->backend(), "gloo");
  at::Tensor t = at::arange(4, at::kFloat);
  comm->all_reduce_sum_(t);
  EXPECT_TRUE(t.equal(at::arange(4, at::kFloat)));
  comm->barrier();
}

// NCCL is compiled in exactly when this LibTorch has CUDA. Without a usable GPU (CI, this machine) asking for it
// must fail with a message that says so, not crash in the CUDA runtime. With a GPU (scripts/gpu-check.sh) it runs
// a real one-rank NCCL all-reduce instead.
TEST(DistCommunicator, NcclAtWorldSizeOne) {
  CommOptions o;
  o.backend = "nccl";
  o.device = c10::Device(c10::kCUDA, 0);
#if defined(M2SA_WITH_NCCL)
  // The CUDA wheel CI builds against has the c10d NCCL process group: the NCCL code is compiled and linked.
  EXPECT_TRUE(nccl_available());
#endif
  if (!nccl_available()) {
    EXPECT_TRUE(FailsWith([&] { make_communicator(DistEnv{}, o); }, "no NCCL process group"));
    return;
  }
  if (at::hasCUDA() && at::getNumGPUs() > 0) {
    auto comm = make_communicator(DistEnv{}, o);
    EXPECT_EQ(comm->backend(), "nccl");
    at::Tensor t = at::arange(4, at::TensorOptions().dtype(at::kFloat).device(o.device));
    comm->all_reduce_sum_(t);
    EXPECT_TRUE(t.cpu().equal(at::arange(4, at::kFloat)));
    return;
  }
  EXPECT_TRUE(FailsWith([&] { make_communicator(DistEnv{}, o); }, "nccl needs a CUDA GPU, but none is visible to rank 0"));
  o.device = c10::Device(c10::kCPU);
  EXPECT_TRUE(FailsWith([&] { make_communicator(DistEnv{}, o); }, "nccl needs a CUDA device"));
}

TEST(DistLauncher, FreePortAndNesting) {
  const int port = find_free_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
  EXPECT_THROW(launch_local(0, {}), Error);
}

}  // namespace
}  // namespace m2sa::dist
