#pragma once
// Writes a state dict in torch.save's zip format (`.pth` / `pytorch_model*.bin`), as torch.save(OrderedDict) does:
// archive/data.pkl (protocol 2: an OrderedDict of torch._utils._rebuild_tensor_v2 calls, one storage per tensor),
// archive/data/<i> (raw little-endian bytes, 64-byte aligned), archive/version, written tensor by tensor so that a
// file larger than memory can be written. torch.load and TorchCheckpointReader read it back.
#include <filesystem>
#include <vector>

#include "m2sa/io/safetensors.h"  // MakeTensor
#include "m2sa/io/tensor_info.h"

namespace m2sa {

// `make(info)` is called once per tensor, in order; it must return exactly the info's dtype and shape. Atomic: a
// temp file in the same folder, fsync'ed and renamed into place.
void write_torch_checkpoint_streamed(const std::filesystem::path& path, const std::vector<TensorInfo>& infos,
                                     const MakeTensor& make);

}  // namespace m2sa
