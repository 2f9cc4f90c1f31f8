// Fuzz target: a torch.save zip checkpoint (.pth / pytorch_model.bin): the zip central directory and record
// sizes, LibTorch's zip reader, data.pkl through the data-only unpickler with the tensor-rebuild hooks, storage
// sizes and strides; then every tensor loaded and read.
#include "fuzz_target.h"
#include "fuzz_tensors.h"
#include "m2sa/io/torch_checkpoint.h"

M2SA_FUZZ_TARGET(torch_checkpoint) {
  const auto path = m2sa::fuzz::write_temp("checkpoint.pth", data, size);
  return m2sa::fuzz::swallow_error([&] {
    m2sa::TorchCheckpointReader reader(path);
    m2sa::fuzz::load_all_tensors(reader);
  });
}
