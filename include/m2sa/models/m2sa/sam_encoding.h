#pragma once
// The SAM image encoder started early, off the critical path (issue 15, "SAM and the mask decoder"): on a CUDA
// device, `start` queues the encoder on a side stream as soon as a request arrives and returns at once, so that
// the GPU runs it concurrently with CLIP, the prefill and decoding on the current stream; `wait` makes the current
// stream wait for it (an event, no host sync). On the CPU there is no concurrency to gain, and encoding images
// whose answer turns out to have no [SEG] would only cost time: `start` then encodes nothing and the caller
// encodes lazily, when a [SEG] needs the features (started() = false).
//
// Only device-generic c10 APIs are used (c10::Stream / c10::Event / c10::StreamGuard, dispatched to CUDA through
// the device guard registry), so the file compiles unchanged against CPU-only and CUDA LibTorch builds.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "m2sa/models/m2sa/m2sa_model.h"

namespace m2sa::m2sa_model {

class SamEncoding {
 public:
  SamEncoding() = default;
  // sam_images [B, 3, S, S] (any device; copied to the model's). Queues sam_features(sam_images, max_batch) on a
  // side stream when the model is on a CUDA device; otherwise does nothing.
  static SamEncoding start(const M2SAForCausalLMImpl& model, const at::Tensor& sam_images,
                           int64_t max_batch = kSamEncoderBatch);

  bool started() const { return started_; }
  // The features, safe to use on the current stream: the first call makes the current stream wait for the side
  // stream and tells the caching allocator that the tensors are used on it (record_stream), so that their memory
  // is not handed to the side stream again before the current stream is done with them. Requires started().
  const SamFeatures& wait();

 private:
  bool started_ = false, waited_ = false;
  SamFeatures features_;
  std::shared_ptr<void> done_;  // c10::Event recorded on the side stream after the encoder
};

}  // namespace m2sa::m2sa_model
