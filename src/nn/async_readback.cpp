#include "m2sa/nn/async_readback.h"

#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "m2sa/core/error.h"

namespace m2sa::nn {

AsyncReadback::AsyncReadback(const at::Tensor& t) {
  M2SA_CHECK(t.defined(), "AsyncReadback: undefined tensor");
  if (t.device().is_cpu()) {
    host_ = t.contiguous();
    return;
  }
  host_ = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(true));
  host_.copy_(t, /*non_blocking=*/true);
  const c10::impl::VirtualGuardImpl guard(t.device().type());
  ready_.emplace(t.device().type());
  ready_->record(guard.getStream(t.device()));
}

at::Tensor AsyncReadback::wait() {
  M2SA_CHECK(host_.defined(), "AsyncReadback: nothing was started");
  if (ready_) {
    ready_->synchronize();
    ready_.reset();
  }
  return host_;
}

}  // namespace m2sa::nn
