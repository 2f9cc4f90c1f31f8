#include "m2sa/io/torch_checkpoint.h"

#include <ATen/ops/from_blob.h>
#include <caffe2/serialize/inline_container.h>

#include <fstream>
#include <set>

#include "m2sa/core/error.h"
#include "m2sa/io/pickle.h"

namespace m2sa {

namespace {

const std::unordered_map<std::string, c10::ScalarType>& storage_types() {
  static const std::unordered_map<std::string, c10::ScalarType> m = {
      {"torch.FloatStorage", c10::kFloat},   {"torch.DoubleStorage", c10::kDouble},
      {"torch.HalfStorage", c10::kHalf},     {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},     {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},   {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},     {"torch.BoolStorage", c10::kBool},
  };
  return m;
}

const std::set<std::string>& rebuild_globals() {
  static const std::set<std::string> s = {
      "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state"};
  return s;
}

bool is_zip(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

std::vector<int64_t> int_list(const PyValue& v) {
  std::vector<int64_t> out;
  for (const PyValue& x : v.items()) out.push_back(x.as_int());
  return out;
}

}  // namespace

TorchCheckpointReader::~TorchCheckpointReader() = default;

TorchCheckpointReader::TorchCheckpointReader(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  if (!std::filesystem::is_regular_file(path)) fail(file, ": no such file");
  if (!is_zip(path))
    fail(file, ": not a zip-format torch.save checkpoint (legacy pre-1.6 files are not supported: re-save with "
               "torch.save(state_dict, path))");
  try {
    reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file);
  } catch (const std::exception& e) {
    fail(file, ": cannot open the zip archive: ", e.what());
  }
  if (!reader_->hasRecord("data.pkl")) fail(file, ": zip archive has no data.pkl: not a torch.save checkpoint");
  auto [pkl, pkl_size] = reader_->getRecord("data.pkl");
  std::string_view pickle(static_cast<const char*>(pkl.get()), pkl_size);

  PickleHooks hooks;
  hooks.allow_global = [](const std::string& g) {
    return rebuild_globals().count(g) > 0 || storage_types().count(g) > 0;
  };
  hooks.persistent_load = [&](const PyValue& pid) {
    const auto& t = pid.items();
    if (t.size() != 5 || !t[0].is_str() || t[0].as_str() != "storage")
      fail("unsupported persistent id (expected ('storage', type, key, location, numel))");
    const std::string& type = t[1].global_name();
    StorageRef s{t[2].as_str(), storage_types().at(type), t[4].as_int()};
    if (!reader_->hasRecord("data/" + s.key)) fail("storage record data/", s.key, " is missing from the archive");
    storages_.push_back(std::move(s));
    return PyValue::opaque("storage", static_cast<int64_t>(storages_.size() - 1));
  };
  hooks.reduce = [&](const std::string& g, const PyValue& args) -> PyValue {
    if (g == "collections.OrderedDict") return PyValue::dict();
    const auto& a = args.items();
    if (g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty()) fail(g, " without arguments");
      return a[0];
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a.size() < 4 || a[0].kind() != PyValue::Kind::Opaque || a[0].tag() != "storage")
      fail(g, ": unexpected arguments");
    TensorRef r;
    r.storage = static_cast<std::size_t>(a[0].opaque_id());
    r.offset = a[1].as_int();
    r.size = int_list(a[2]);
    r.stride = int_list(a[3]);
    if (r.size.size() != r.stride.size()) fail(g, ": size and stride have different lengths");
    refs_.push_back(std::move(r));
    return PyValue::opaque("tensor", static_cast<int64_t>(refs_.size() - 1));
  };
  hooks.build = [](const PyValue& obj, const PyValue&) { return obj; };  // OrderedDict._metadata, param state

  PyValue root = unpickle(pickle, hooks, file + ":data.pkl");

  // Flatten nested dicts into dotted names.
  std::function<void(const PyValue&, const std::string&)> walk = [&](const PyValue& v, const std::string& prefix) {
    if (v.kind() == PyValue::Kind::Dict) {
      for (const auto& [k, child] : v.dict_items()) {
        std::string key = k.is_str() ? k.as_str() : (k.kind() == PyValue::Kind::Int ? std::to_string(k.as_int()) : "");
        if (key.empty()) continue;
        walk(child, prefix.empty() ? key : prefix + "." + key);
      }
    } else if (v.kind() == PyValue::Kind::Opaque && v.tag() == "tensor") {
      std::size_t idx = static_cast<std::size_t>(v.opaque_id());
      const TensorRef& r = refs_[idx];
      const StorageRef& s = storages_[r.storage];
      // The largest element the view touches must lie inside the storage.
      int64_t extent = r.offset;
      bool empty = false;
      for (std::size_t d = 0; d < r.size.size(); ++d) {
        if (r.size[d] < 0 || r.stride[d] < 0) fail(file, ": tensor '", prefix, "' has a negative size or stride");
        if (r.size[d] == 0) empty = true;
        extent += (r.size[d] - 1) * r.stride[d];
      }
      if (!empty && (r.offset < 0 || extent >= s.numel))
        fail(file, ": tensor '", prefix, "' reaches element ", extent, " of a storage of ", s.numel, " elements");
      if (index_.count(prefix)) fail(file, ": duplicate tensor name '", prefix, "'");
      index_[prefix] = infos_.size();
      infos_.push_back(TensorInfo{prefix, s.dtype, r.size});
      order_.push_back(idx);
    }
  };
  walk(root, "");
  if (infos_.empty()) fail(file, ": the checkpoint holds no tensors (expected a state_dict)");
}

at::Tensor TorchCheckpointReader::load(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_.string(), ": no tensor named '", name, "'");
  const TensorRef& r = refs_[order_[it->second]];
  const StorageRef& s = storages_[r.storage];
  auto [ptr, nbytes] = reader_->getRecord("data/" + s.key);
  const std::size_t want = static_cast<std::size_t>(s.numel) * c10::elementSize(s.dtype);
  if (nbytes < want)
    fail(path_.string(), ": tensor '", name, "': storage data/", s.key, " holds ", nbytes, " bytes, expected ", want);
  auto holder = std::make_shared<at::DataPtr>(std::move(ptr));
  at::Tensor storage = at::from_blob(holder->get(), {s.numel}, [holder](void*) {},
                                     at::TensorOptions().dtype(s.dtype).device(at::kCPU));
  return storage.as_strided(r.size, r.stride, r.offset);
}

}  // namespace m2sa
