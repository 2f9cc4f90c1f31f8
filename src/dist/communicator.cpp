#include "m2sa/dist/communicator.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#include "m2sa/core/error.h"

#if defined(USE_C10D_GLOO) && __has_include(<gloo/config.h>)
#define M2SA_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if defined(M2SA_WITH_NCCL) && defined(USE_C10D_NCCL)
#define M2SA_HAVE_NCCL 1
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#ifndef M2SA_HAVE_GLOO
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#endif

namespace m2sa::dist {

// ---------------------------------------------------------------------------------------------- environment

namespace {
std::optional<std::string> env_string(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::optional<long> env_int(const char* name, long lo, long hi) {
  auto s = env_string(name);
  if (!s) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s->c_str(), &end, 10);
  if (errno != 0 || end == s->c_str() || *end != '\0')
    fail("environment variable ", name, "='", *s, "' is not an integer");
  if (v < lo || v > hi) fail("environment variable ", name, "=", v, " is outside [", lo, ", ", hi, "]");
  return v;
}
}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv env;
  const auto world = env_int("WORLD_SIZE", 1, 1 << 20);
  const auto rank = env_int("RANK", 0, (1 << 20) - 1);
  if (!world) {
    M2SA_CHECK(!rank || *rank == 0, "environment variable RANK=", *rank,
               " is set but WORLD_SIZE is not: set both (torchrun-style) or neither");
    return env;
  }
  env.world_size = static_cast<int>(*world);
  if (env.world_size == 1) {
    M2SA_CHECK(!rank || *rank == 0, "RANK=", *rank, " with WORLD_SIZE=1: the only rank is 0");
    return env;
  }
  M2SA_CHECK(rank.has_value(), "WORLD_SIZE=", env.world_size, " but RANK is not set (torchrun sets RANK, "
             "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process)");
  M2SA_CHECK(*rank < env.world_size, "RANK=", *rank, " is not below WORLD_SIZE=", env.world_size);
  env.rank = static_cast<int>(*rank);
  env.local_rank = static_cast<int>(env_int("LOCAL_RANK", 0, env.world_size - 1).value_or(env.rank));
  env.local_world_size =
      static_cast<int>(env_int("LOCAL_WORLD_SIZE", 1, env.world_size).value_or(env.world_size));
  auto addr = env_string("MASTER_ADDR");
  M2SA_CHECK(addr.has_value(), "WORLD_SIZE=", env.world_size, " but MASTER_ADDR is not set (the host of rank 0)");
  env.master_addr = *addr;
  auto port = env_int("MASTER_PORT", 1, 65535);
  M2SA_CHECK(port.has_value(), "WORLD_SIZE=", env.world_size, " but MASTER_PORT is not set");
  env.master_port = static_cast<int>(*port);
  return env;
}

// ---------------------------------------------------------------------------------------------- helpers

std::vector<double> Communicator::all_reduce_sum(const std::vector<double>& values) {
  if (world_size() == 1 || values.empty()) return values;
  at::Tensor t = at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(device());
  all_reduce_sum_(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

double Communicator::all_reduce_sum(double value) { return all_reduce_sum(std::vector<double>{value})[0]; }

std::map<std::string, double> Communicator::all_reduce_sum(const std::map<std::string, double>& values) {
  if (world_size() == 1) return values;
  std::string names;
  for (const auto& [k, v] : values) names += k + "\n";
  const std::vector<std::string> all = all_gather_bytes(names);
  for (int r = 0; r < world_size(); ++r)
    M2SA_CHECK(all[r] == names, "all_reduce_sum: rank ", r, " reduces the metrics {", all[r], "} but rank ", rank(),
               " reduces {", names, "}: every rank must pass the same names");
  std::vector<double> flat;
  for (const auto& [k, v] : values) flat.push_back(v);
  flat = all_reduce_sum(flat);
  std::map<std::string, double> out;
  size_t i = 0;
  for (const auto& [k, v] : values) out[k] = flat[i++];
  return out;
}

std::string Communicator::broadcast_string(const std::string& value, int root) {
  if (world_size() == 1) return value;
  at::Tensor len = at::full({1}, static_cast<int64_t>(value.size()), at::TensorOptions().dtype(at::kLong))
                       .to(device());
  broadcast_(len, root);
  const int64_t n = len.cpu().item<int64_t>();
  at::Tensor bytes = at::zeros({std::max<int64_t>(n, 1)}, at::TensorOptions().dtype(at::kByte));
  if (rank() == root && n > 0) std::memcpy(bytes.data_ptr(), value.data(), value.size());
  bytes = bytes.to(device());
  broadcast_(bytes, root);
  bytes = bytes.cpu();
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(n));
}

void Communicator::broadcast_tensors_(const std::vector<at::Tensor>& tensors, int root, int64_t bucket_bytes) {
  if (world_size() == 1 || tensors.empty()) return;
  at::NoGradGuard no_grad;
  const int64_t bucket_elems = std::max<int64_t>(1, bucket_bytes / 4);
  size_t first = 0;
  while (first < tensors.size()) {
    size_t last = first;
    int64_t count = 0;
    while (last < tensors.size() && (count == 0 || count + tensors[last].numel() <= bucket_elems)) {
      M2SA_CHECK(tensors[last].scalar_type() == at::kFloat, "broadcast_tensors_: tensor ", last, " is ",
                 tensors[last].scalar_type(), ", expected fp32");
      count += tensors[last].numel();
      ++last;
    }
    std::vector<at::Tensor> flat_parts;
    for (size_t i = first; i < last; ++i) flat_parts.push_back(tensors[i].reshape({-1}).to(device()));
    at::Tensor flat = at::cat(flat_parts);
    broadcast_(flat, root);
    int64_t offset = 0;
    for (size_t i = first; i < last; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat.narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
    first = last;
  }
}

std::vector<int64_t> shard_indices(int64_t n, int rank, int world_size) {
  M2SA_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "shard_indices: rank ", rank,
             " is not in a world of ", world_size);
  std::vector<int64_t> out;
  for (int64_t i = rank; i < n; i += world_size) out.push_back(i);
  return out;
}

// ---------------------------------------------------------------------------------------------- local

namespace {
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string backend() const override { return "local"; }
  c10::Device device() const override { return c10::Device(c10::DeviceType::CPU); }
  void all_reduce_sum_(at::Tensor&) override {}
  void all_reduce_max_(at::Tensor&) override {}
  void broadcast_(at::Tensor&, int root) override {
    M2SA_CHECK(root == 0, "broadcast: root ", root, " does not exist in a world of 1");
  }
  void barrier() override {}
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override { return {bytes}; }
};
}  // namespace

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

// ---------------------------------------------------------------------------------------------- c10d

#if defined(M2SA_HAVE_GLOO) || defined(M2SA_HAVE_NCCL)
namespace {

void check_reducible(const at::Tensor& t, const std::string& backend, const char* op) {
  const auto dt = t.scalar_type();
  M2SA_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kInt || dt == at::kLong || dt == at::kByte,
             "distributed ", op, " (", backend, "): tensors must be fp32, fp64, int32, int64 or uint8, got ", dt,
             " (bf16/fp16 collectives abort the process with Gloo in LibTorch 1.13: reduce in fp32)");
  M2SA_CHECK(t.is_contiguous(), "distributed ", op, ": tensor must be contiguous");
}

// One process group type (ProcessGroupGloo or ProcessGroupNCCL); the API is the same on LibTorch 1.13 and 2.x.
template <typename PG>
class C10dCommunicator final : public Communicator {
 public:
  C10dCommunicator(const DistEnv& env, std::string backend, c10::Device device, std::chrono::milliseconds timeout,
                   c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<PG> pg)
      : env_(env), backend_(std::move(backend)), device_(device), timeout_(timeout), store_(std::move(store)),
        pg_(std::move(pg)) {}

  ~C10dCommunicator() override {
    if (broken_) {
      // A peer died or hung: destroying the process group would wait for its stuck worker threads. Leak it (the
      // process is about to exit with the error) so that no rank hangs.
      (void)pg_.release();
      (void)store_.release();
    }
  }

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  int local_rank() const override { return env_.local_rank; }
  std::string backend() const override { return backend_; }
  c10::Device device() const override { return device_; }

  void all_reduce_sum_(at::Tensor& t) override { all_reduce(t, c10d::ReduceOp::SUM, "all_reduce(sum)"); }
  void all_reduce_max_(at::Tensor& t) override { all_reduce(t, c10d::ReduceOp::MAX, "all_reduce(max)"); }

  void broadcast_(at::Tensor& t, int root) override {
    check_reducible(t, backend_, "broadcast");
    M2SA_CHECK(root >= 0 && root < env_.world_size, "broadcast: root ", root, " is not a rank of ",
               env_.world_size);
    run("broadcast", [&] {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      o.rootTensor = 0;
      o.timeout = timeout_;
      return pg_->broadcast(v, o);
    });
  }

  void barrier() override {
    run("barrier", [&] {
      // A tiny all-reduce instead of pg->barrier(): the NCCL barrier needs device ids guessed from the rank.
      at::Tensor t = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device_));
      std::vector<at::Tensor> v{t};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      o.timeout = timeout_;
      return pg_->allreduce(v, o);
    });
  }

  std::vector<std::string> all_gather_bytes(const std::string& bytes) override {
    const int world = env_.world_size;
    const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device_);
    at::Tensor len = at::full({1}, static_cast<int64_t>(bytes.size()), long_opts);
    std::vector<at::Tensor> lens_in{len};
    std::vector<std::vector<at::Tensor>> lens_out(1);
    for (int r = 0; r < world; ++r) lens_out[0].push_back(at::zeros({1}, long_opts));
    run("all_gather", [&] {
      c10d::AllgatherOptions o;
      o.timeout = timeout_;
      return pg_->allgather(lens_out, lens_in, o);
    });
    std::vector<int64_t> lengths;
    int64_t max_len = 1;
    for (const at::Tensor& l : lens_out[0]) {
      lengths.push_back(l.cpu().item<int64_t>());
      max_len = std::max(max_len, lengths.back());
    }
    at::Tensor mine = at::zeros({max_len}, at::TensorOptions().dtype(at::kByte));
    if (!bytes.empty()) std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
    std::vector<at::Tensor> in{mine.to(device_)};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world; ++r)
      out[0].push_back(at::zeros({max_len}, at::TensorOptions().dtype(at::kByte).device(device_)));
    run("all_gather", [&] {
      c10d::AllgatherOptions o;
      o.timeout = timeout_;
      return pg_->allgather(out, in, o);
    });
    std::vector<std::string> result;
    for (int r = 0; r < world; ++r) {
      at::Tensor b = out[0][r].cpu();
      result.emplace_back(static_cast<const char*>(b.data_ptr()), static_cast<size_t>(lengths[r]));
    }
    return result;
  }

 private:
  void all_reduce(at::Tensor& t, c10d::ReduceOp op, const char* what) {
    check_reducible(t, backend_, what);
    M2SA_CHECK(t.device() == device_, "distributed ", what, ": tensor is on ", t.device(), ", the ", backend_,
               " communicator on ", device_);
    run(what, [&] {
      std::vector<at::Tensor> v{t};
      c10d::AllreduceOptions o;
      o.reduceOp = op;
      o.timeout = timeout_;
      return pg_->allreduce(v, o);
    });
  }

  template <typename Fn>
  void run(const char* what, Fn&& start) {
    if (broken_)
      fail("distributed ", what, " on rank ", env_.rank, ": the ", backend_,
           " communicator failed earlier and cannot be used (", broken_reason_, ")");
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      broken_ = true;
      broken_reason_ = e.what();
      fail("distributed ", what, " failed on rank ", env_.rank, " of ", env_.world_size, " (", backend_,
           ", timeout ", timeout_.count() / 1000.0, " s): ", first_line(e.what()),
           " -- another rank probably died, failed or hangs; stopping this rank too");
    }
  }

  static std::string first_line(const std::string& s) {
    const auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
  }

  DistEnv env_;
  std::string backend_;
  c10::Device device_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<PG> pg_;
  bool broken_ = false;
  std::string broken_reason_;
};

bool is_loopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

c10::intrusive_ptr<c10d::Store> make_store(const DistEnv& env, std::chrono::milliseconds timeout) {
  // A process group of one rank (asked for explicitly, e.g. to check NCCL on one GPU) needs no rendezvous.
  if (env.world_size == 1) return c10::make_intrusive<c10d::HashStore>();
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<std::size_t>(env.world_size);
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    return c10::make_intrusive<c10d::PrefixStore>("m2sa", store);
  } catch (const std::exception& e) {
    fail("distributed rendezvous failed on rank ", env.rank, " of ", env.world_size, " at ", env.master_addr, ":",
         env.master_port, " (timeout ", timeout.count() / 1000.0, " s): ", e.what());
  }
}

// One process group of type PG (gloo or nccl) over `store`; a failure names the backend and the rank.
template <class PG, class Options>
c10::intrusive_ptr<PG> make_process_group(const char* backend, const c10::intrusive_ptr<c10d::Store>& store,
                                          const DistEnv& env, const Options& opts) {
  try {
    return c10::make_intrusive<PG>(store, env.rank, env.world_size, opts);
  } catch (const std::exception& e) {
    fail("distributed: creating the ", backend, " process group failed on rank ", env.rank, " of ", env.world_size,
         ": ", e.what());
  }
}

}  // namespace
#endif

bool gloo_available() {
#ifdef M2SA_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef M2SA_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const CommOptions& options) {
  M2SA_CHECK(env.world_size >= 1 && env.rank >= 0 && env.rank < env.world_size, "distributed: rank ", env.rank,
             " is not in a world of ", env.world_size);
  // One rank needs no process group; an explicit backend still gets one (a check of NCCL or Gloo on one device).
  if (env.world_size == 1 && options.backend == "auto") return make_local_communicator();
  M2SA_CHECK(options.timeout_s > 0, "distributed: collective timeout must be positive, got ", options.timeout_s);
  std::string backend = options.backend;
  if (backend == "auto") backend = options.device.is_cuda() ? "nccl" : "gloo";
  M2SA_CHECK(backend == "gloo" || backend == "nccl", "distributed: unknown backend \"", options.backend,
             "\" (expected \"auto\", \"gloo\" or \"nccl\")");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000.0));
  if (backend == "gloo") {
#ifdef M2SA_HAVE_GLOO
    M2SA_CHECK(options.device.is_cpu(), "distributed: the gloo backend here reduces CPU tensors; device ",
               options.device, " needs nccl");
    auto store = make_store(env, timeout);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (auto ifname = env_string("GLOO_SOCKET_IFNAME")) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname->substr(0, ifname->find(','))));
    } else if (is_loopback(env.master_addr)) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto pg = make_process_group<c10d::ProcessGroupGloo>("gloo", store, env, opts);
    spdlog::debug("rank {}/{}: gloo process group ready ({}:{})", env.rank, env.world_size, env.master_addr,
                  env.master_port);
    return std::make_unique<C10dCommunicator<c10d::ProcessGroupGloo>>(env, "gloo", options.device, timeout, store,
                                                                     pg);
#else
    fail("distributed: this LibTorch was built without the c10d Gloo process group (USE_C10D_GLOO), or the gloo "
         "headers (libgloo-dev) were missing at build time");
#endif
  }
#ifdef M2SA_HAVE_NCCL
  M2SA_CHECK(options.device.is_cuda(), "distributed: nccl needs a CUDA device, got ", options.device);
  const int gpus = c10::cuda::device_count();
  M2SA_CHECK(gpus > 0, "distributed: nccl needs a CUDA GPU, but none is visible to rank ", env.rank,
             " (this LibTorch has CUDA, the machine has no usable GPU or driver; CUDA_VISIBLE_DEVICES=",
             env_string("CUDA_VISIBLE_DEVICES").value_or("<unset>"), "); use \"gloo\" on the CPU");
  const int gpu = options.device.has_index() ? options.device.index() : env.local_rank;
  M2SA_CHECK(gpu < gpus, "distributed: rank ", env.rank, " wants GPU ", gpu, " but only ", gpus, " are visible");
  // Before any CUDA work: otherwise every rank creates a context on GPU 0.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(gpu));
  // A dead or hung peer must end every surviving rank within the collective timeout with the message of run()
  // ("rank N failed ... another rank probably died"), as on Gloo. NCCL's Work::wait only orders the streams and
  // returns at once, and the watchdog's asynchronous error handling ends the process with an abort, not with our
  // error. Blocking wait makes wait() block the host until the collective finished or the timeout passed, then
  // throw (and abort the communicator); ProcessGroupNCCL reads it in its constructor and then turns the watchdog's
  // handling off. The cost is one host wait per collective, a few per optimizer step. A user's own setting wins.
  // Compiled in CI; not yet run on a GPU with a dead rank (scripts/gpu-check.sh, docs/TRAINING.md).
  ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
  auto store = make_store(env, timeout);
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  auto pg = make_process_group<c10d::ProcessGroupNCCL>("nccl", store, env, opts);
  return std::make_unique<C10dCommunicator<c10d::ProcessGroupNCCL>>(env, "nccl", options.device, timeout, store, pg);
#else
  fail("distributed: nccl was requested but this build has no NCCL process group (needs a CUDA LibTorch with "
       "USE_C10D_NCCL and -DM2SA_WITH_NCCL=ON); use \"gloo\" for CPU training");
#endif
}

}  // namespace m2sa::dist
