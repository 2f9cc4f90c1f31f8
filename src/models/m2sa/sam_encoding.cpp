#include "m2sa/models/m2sa/sam_encoding.h"

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "m2sa/core/error.h"

namespace m2sa::m2sa_model {

SamEncoding SamEncoding::start(const M2SAForCausalLMImpl& model, const at::Tensor& sam_images, int64_t max_batch) {
  SamEncoding e;
  const c10::Device device = model.device();
  if (!device.is_cuda()) return e;
  const c10::impl::VirtualGuardImpl impl(device.type());
  const c10::Stream current = impl.getStream(device);
  const c10::Stream side = impl.getStreamFromGlobalPool(device, /*isHighPriority=*/false);
  // Whatever the current stream still has queued (weights being copied, an earlier request's work) comes first.
  c10::Event inputs_ready(device.type());
  inputs_ready.record(current);
  side.wait(inputs_ready);
  auto done = std::make_shared<c10::Event>(device.type());
  {
    const c10::StreamGuard on_side(side);
    e.features_ = model.sam_features(sam_images, max_batch);
    done->record(side);
  }
  e.done_ = std::move(done);
  e.started_ = true;
  return e;
}

const SamFeatures& SamEncoding::wait() {
  M2SA_CHECK(started_, "SAM encoding: wait() without a started encoding (started() is false on the CPU)");
  if (!waited_) {
    const auto& done = *static_cast<const c10::Event*>(done_.get());
    const c10::Device device = features_.neck.device();
    const c10::Stream current = c10::impl::VirtualGuardImpl(device.type()).getStream(device);
    current.wait(done);
    for (const at::Tensor* t : {&features_.neck, &features_.early, &features_.image})
      if (t->defined()) t->record_stream(current);
    waited_ = true;
  }
  return features_;
}

}  // namespace m2sa::m2sa_model
