#pragma once
// Reads a small device tensor (a decoding step's token ids) on the host without stalling the device: start()
// queues a non-blocking copy into pinned host memory and records an event behind it; wait() blocks only until
// that event. A decoding loop starts the copy of step s, launches step s + 1, and then waits for step s, so the
// device always has the next step queued while the host checks for EOS (issue 15: no host sync per token).
// On the CPU the copy is the tensor itself and nothing waits.
#include <ATen/core/Tensor.h>
#include <c10/core/Event.h>

#include <optional>

namespace m2sa::nn {

class AsyncReadback {
 public:
  AsyncReadback() = default;
  // Starts reading `t`, which must not be modified until wait() returns (a fresh result, such as an argmax).
  explicit AsyncReadback(const at::Tensor& t);
  // The host copy (CPU, contiguous); blocks until the copy has landed.
  at::Tensor wait();

 private:
  at::Tensor host_;
  std::optional<c10::Event> ready_;
};

}  // namespace m2sa::nn
