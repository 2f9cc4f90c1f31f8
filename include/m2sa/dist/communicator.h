#pragma once
// Data-parallel communication on torch c10d (M2SA.md Decisions: "torch c10d: NCCL on CUDA, Gloo on CPU;
// torchrun-style environment").
//
// The rendezvous reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so
// torchrun, Slurm (export the variables), mpirun wrappers or launch_local() (launcher.h) can start the ranks.
// Rank 0 hosts a c10d::TCPStore at MASTER_ADDR:MASTER_PORT. World size 1 needs no environment and no store: the
// local communicator's collectives are no-ops.
//
// Every collective has a timeout (CommOptions::timeout_s, 300 s by default). A rank that dies makes the
// collectives of the others fail (connection closed, or the timeout); the error names the operation, the rank
// and the backend, and the communicator is then marked broken: later calls fail at once and its destructor does
// not wait for the stuck process group, so every rank ends with a clear error instead of hanging.
//
// Gloo (LibTorch 1.13) aborts the whole process on a bf16 all-reduce (TOOLCHAIN.md section 5); these wrappers
// refuse reduced-precision floats with an error instead: reduce in fp32.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace m2sa::dist {

// The torchrun-style environment. With WORLD_SIZE unset (or 1) the process is a single rank.
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  // Reads the environment; malformed or inconsistent values are errors naming the variable.
  static DistEnv from_environment();
  bool distributed() const { return world_size > 1; }
};

struct CommOptions {
  std::string backend = "auto";  // "auto" (NCCL when `device` is CUDA, else Gloo) | "gloo" | "nccl"
  double timeout_s = 300.0;      // every collective and the rendezvous
  c10::Device device = c10::Device(c10::DeviceType::CPU);  // where the collectives' tensors live (NCCL: CUDA)
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string backend() const = 0;  // "local", "gloo", "nccl"
  virtual c10::Device device() const = 0;
  bool is_main() const { return rank() == 0; }

  // In-place sum over ranks. fp32/fp64/int32/int64 (fp16/bf16 are refused, see above).
  virtual void all_reduce_sum_(at::Tensor& tensor) = 0;
  virtual void all_reduce_max_(at::Tensor& tensor) = 0;
  // In-place broadcast from `root`; the tensor must have the same shape and dtype on every rank.
  virtual void broadcast_(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's bytes, in rank order.
  virtual std::vector<std::string> all_gather_bytes(const std::string& bytes) = 0;

  // ---- helpers built on the collectives above ----
  // Sums of doubles (metric numerators/denominators, counts) across ranks, in fp64 (counts exact to 2^53).
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  double all_reduce_sum(double value);
  // Reduces named sums; every rank must pass the same names (checked, naming the difference).
  std::map<std::string, double> all_reduce_sum(const std::map<std::string, double>& values);
  // Root's string on every rank.
  std::string broadcast_string(const std::string& value, int root);
  // Broadcasts fp32 tensors (any shapes, on device()) from root through flat buckets of `bucket_bytes`.
  void broadcast_tensors_(const std::vector<at::Tensor>& tensors, int root, int64_t bucket_bytes = int64_t{64} << 20);
};

// The validation samples of `rank`: indices rank, rank + world, ... below n. Every sample is evaluated exactly once
// across ranks (no padding as DistributedSampler adds), so summed metrics count each sample once.
std::vector<int64_t> shard_indices(int64_t n, int rank, int world_size);

// World size 1: every collective is a no-op (or the identity).
std::unique_ptr<Communicator> make_local_communicator();

// Connects to the other ranks of `env` (a local communicator when env.world_size == 1).
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const CommOptions& options = {});

// True when this LibTorch has the c10d Gloo / NCCL process groups compiled in.
bool gloo_available();
bool nccl_available();

}  // namespace m2sa::dist
