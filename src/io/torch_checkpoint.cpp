#include "m2sa/io/torch_checkpoint.h"

#include <ATen/ops/from_blob.h>
#include <caffe2/serialize/inline_container.h>

#include <fstream>
#include <set>
#include <unordered_set>

#include "m2sa/core/checked_math.h"
#include "m2sa/core/error.h"
#include "m2sa/io/mapped_file.h"
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

uint64_t zip_le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Reads the zip's central directory (as miniz finds it: the last end-of-central-directory record, then its zip64
// form when a zip64 locator precedes it) and refuses any record that claims more bytes, compressed or not, than
// the whole file holds. LibTorch's reader allocates a record's claimed uncompressed size before reading it, its
// constructor included; torch.save stores records uncompressed, so no honest record is larger than the file.
// Returns the names (without the archive folder) of the records stored uncompressed (method 0, equal sizes): those
// can be viewed in a mapping.
std::unordered_set<std::string> check_torch_zip_record_sizes(const std::string& file) {
  std::unordered_set<std::string> stored;
  std::ifstream in(file, std::ios::binary);
  in.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  auto read_at = [&](uint64_t offset, uint64_t n, const char* what) {
    if (offset > size || n > size - offset) fail(file, ": zip ", what, " lies outside the file (", size, " bytes)");
    std::string buf(static_cast<std::size_t>(n), '\0');
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(buf.data(), static_cast<std::streamsize>(n));
    if (static_cast<uint64_t>(in.gcount()) != n) fail(file, ": cannot read the zip ", what);
    return buf;
  };
  constexpr uint64_t kEocd = 22, kMaxComment = 65535;
  if (size < kEocd) fail(file, ": not a zip archive (", size, " bytes, no end of central directory)");
  const uint64_t tail_start = size - std::min(size, kEocd + kMaxComment);
  const std::string tail = read_at(tail_start, size - tail_start, "end of central directory");
  std::size_t eocd = std::string::npos;
  for (std::size_t i = tail.size() - kEocd + 1; i-- > 0;)
    if (zip_le(&tail[i], 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) fail(file, ": not a zip archive (no end of central directory record)");
  uint64_t entries = zip_le(&tail[eocd + 10], 2), cd_size = zip_le(&tail[eocd + 12], 4),
           cd_offset = zip_le(&tail[eocd + 16], 4);
  const uint64_t eocd_pos = tail_start + eocd;
  if (eocd_pos >= 20) {
    const std::string locator = read_at(eocd_pos - 20, 20, "zip64 locator");
    if (zip_le(&locator[0], 4) == 0x07064b50) {
      const std::string z = read_at(zip_le(&locator[8], 8), 56, "zip64 end of central directory");
      if (zip_le(&z[0], 4) != 0x06064b50) fail(file, ": bad zip64 end of central directory record");
      entries = zip_le(&z[32], 8);
      cd_size = zip_le(&z[40], 8);
      cd_offset = zip_le(&z[48], 8);
    }
  }
  const std::string cd = read_at(cd_offset, cd_size, "central directory");
  std::size_t pos = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    if (cd.size() - pos < 46 || zip_le(&cd[pos], 4) != 0x02014b50)
      fail(file, ": zip central directory entry ", e, " is truncated or corrupt");
    uint64_t comp = zip_le(&cd[pos + 20], 4), uncomp = zip_le(&cd[pos + 24], 4);
    const std::size_t name_len = zip_le(&cd[pos + 28], 2), extra_len = zip_le(&cd[pos + 30], 2),
                      comment_len = zip_le(&cd[pos + 32], 2);
    if (cd.size() - pos - 46 < name_len + extra_len + comment_len)
      fail(file, ": zip central directory entry ", e, " is truncated");
    const std::string name = cd.substr(pos + 46, name_len);
    // zip64: the 32-bit fields that hold 0xFFFFFFFF continue, in this order, in the 0x0001 extra field.
    for (std::size_t x = pos + 46 + name_len, end = x + extra_len; x + 4 <= end;) {
      const uint64_t id = zip_le(&cd[x], 2), len = zip_le(&cd[x + 2], 2);
      if (len > end - x - 4) break;
      if (id == 1) {
        std::size_t f = x + 4;
        for (uint64_t* field : {&uncomp, &comp})
          if (*field == 0xFFFFFFFFu && f + 8 <= x + 4 + len) {
            *field = zip_le(&cd[f], 8);
            f += 8;
          }
      }
      x += 4 + len;
    }
    if (uncomp > size || comp > size)
      fail(file, ": zip record '", name, "' claims ", std::max(uncomp, comp), " bytes, more than the whole file (",
           size, " bytes): torch.save stores records uncompressed, so the archive is corrupt or crafted");
    if (zip_le(&cd[pos + 10], 2) == 0 && comp == uncomp) {
      const std::size_t slash = name.find('/');  // "<archive>/data/0" -> "data/0", as the reader names records
      stored.insert(slash == std::string::npos ? name : name.substr(slash + 1));
    }
    pos += 46 + name_len + extra_len + comment_len;
  }
  return stored;
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
  stored_ = check_torch_zip_record_sizes(file);
  try {
    reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file);
  } catch (const std::exception& e) {
    fail(file, ": cannot open the zip archive: ", e.what());
  }
  // Records stored uncompressed (torch.save never compresses) are viewed in a copy-on-write mapping of the file:
  // loading reads nothing up front and processes opening the same file share its page cache.
  mapped_ = MappedFile::open(path);
  if (!reader_->hasRecord("data.pkl")) fail(file, ": zip archive has no data.pkl: not a torch.save checkpoint");
  auto [pkl, pkl_size] = with_context(file, [&] { return reader_->getRecord("data.pkl"); });
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
    auto dtype = storage_types().find(type);
    if (dtype == storage_types().end()) fail("unsupported storage type ", type);
    StorageRef s{t[2].as_str(), dtype->second, t[4].as_int()};
    uint64_t nbytes = 0;
    if (!checked_nbytes({s.numel}, s.dtype, nbytes))
      fail("storage data/", s.key, " has a negative or overflowing size of ", s.numel, " elements");
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

  // Flatten nested dicts into dotted names. The unpickler bounds the depth (kMaxPickleDepth) and refuses cycles;
  // a dict reached twice is refused too, as a pickle of n dicts that each hold the next one twice would
  // otherwise flatten into 2^n names.
  std::unordered_set<const void*> walked;
  std::function<void(const PyValue&, const std::string&)> walk = [&](const PyValue& v, const std::string& prefix) {
    if (v.kind() == PyValue::Kind::Dict) {
      if (!walked.insert(v.container_id()).second)
        fail(file, ": the dict at '", prefix, "' appears twice in the checkpoint (expected a tree of state dicts)");
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
      bool overflow = false;
      for (std::size_t d = 0; d < r.size.size(); ++d) {
        if (r.size[d] < 0 || r.stride[d] < 0) fail(file, ": tensor '", prefix, "' has a negative size or stride");
        if (r.size[d] == 0) empty = true;
        int64_t reach = 0;
        if (r.size[d] > 0 && (!checked_mul(r.size[d] - 1, r.stride[d], reach) || !checked_add(extent, reach, extent)))
          overflow = true;
      }
      if (r.offset < 0) fail(file, ": tensor '", prefix, "' has a negative storage offset ", r.offset);
      uint64_t view_bytes = 0;
      if (!checked_nbytes(r.size, s.dtype, view_bytes)) overflow = true;
      if (overflow)
        fail(file, ": tensor '", prefix, "': size, stride and offset overflow 64-bit arithmetic");
      if (!empty && extent >= s.numel)
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

void TorchCheckpointReader::release(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  const StorageRef& s = storages_[refs_[order_[it->second]].storage];
  const std::string record = "data/" + s.key;
  if (!stored_.count(record)) return;
  try {
    mapped_->release(reader_->getRecordOffset(record), reader_->getRecordSize(record));
  } catch (const std::exception&) {
    // Only a memory hint: a record whose header cannot be read was not viewed either.
  }
}

at::Tensor TorchCheckpointReader::load(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_.string(), ": no tensor named '", name, "'");
  const TensorRef& r = refs_[order_[it->second]];
  const StorageRef& s = storages_[r.storage];
  const std::size_t want = static_cast<std::size_t>(s.numel) * c10::elementSize(s.dtype);  // checked when read
  const auto opts = at::TensorOptions().dtype(s.dtype).device(at::kCPU);
  const std::string record = "data/" + s.key;
  if (want > 0 && stored_.count(record)) {
    const std::size_t offset = with_context(path_.string() + ": tensor '" + name + "'", [&] {
      const std::size_t size = reader_->getRecordSize(record);
      if (size < want)
        fail("storage ", record, " holds ", size, " bytes, expected ", want);
      return reader_->getRecordOffset(record);
    });
    if (offset <= mapped_->size() && want <= mapped_->size() - offset &&
        (offset % c10::elementSize(s.dtype)) == 0) {
      auto keep = mapped_;
      at::Tensor storage = at::from_blob(mapped_->mutable_data() + offset, {s.numel}, [keep](void*) {}, opts);
      return storage.as_strided(r.size, r.stride, r.offset);
    }
  }
  auto [ptr, nbytes] = with_context(path_.string() + ": tensor '" + name + "'",
                                    [&] { return reader_->getRecord(record); });
  if (nbytes < want)
    fail(path_.string(), ": tensor '", name, "': storage data/", s.key, " holds ", nbytes, " bytes, expected ", want);
  auto holder = std::make_shared<at::DataPtr>(std::move(ptr));
  at::Tensor storage = at::from_blob(holder->get(), {s.numel}, [holder](void*) {}, opts);
  return storage.as_strided(r.size, r.stride, r.offset);
}

}  // namespace m2sa
