#include "m2sa/train/checkpoint.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"

namespace m2sa::train {
namespace fs = std::filesystem;

namespace {
constexpr const char* kFormat = "m2sa-train-checkpoint";
constexpr int kVersion = 1;

// step-NNNNNN -> NNNNNN, or -1.
int64_t parse_step_dir(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 5) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

std::string read_text(const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) return {};
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}
}  // namespace

CheckpointManager::CheckpointManager(CheckpointOptions options) : options_(std::move(options)) {
  M2SA_CHECK(!options_.dir.empty(), "checkpoints: no directory given");
  M2SA_CHECK(options_.keep_last >= 1, "checkpoints: keep_last must be at least 1, got ", options_.keep_last);
}

std::string CheckpointManager::dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%06lld", static_cast<long long>(step));
  return buf;
}

void CheckpointManager::clean_leftovers() const {
  if (!fs::exists(options_.dir)) return;
  for (const auto& entry : fs::directory_iterator(options_.dir)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && name[0] == '.') {
      std::error_code ec;
      fs::remove_all(entry.path(), ec);
    }
  }
}

std::vector<fs::path> CheckpointManager::step_dirs() const {
  std::vector<std::pair<int64_t, fs::path>> found;
  if (fs::exists(options_.dir)) {
    for (const auto& entry : fs::directory_iterator(options_.dir)) {
      const int64_t step = parse_step_dir(entry.path().filename().string());
      if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& [s, p] : found) out.push_back(p);
  return out;
}

fs::path CheckpointManager::save(const CheckpointData& data, const std::optional<BestCheckpoint>& best) {
  M2SA_CHECK(data.step >= 0, "checkpoints: negative step ", data.step);
  fs::create_directories(options_.dir);
  const std::string name = dir_name(data.step);
  const fs::path final_dir = options_.dir / name;
  const fs::path tmp = options_.dir / (".tmp-" + name + "-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  // A failed write (a full disk, a file size limit) leaves no partial directory behind; the previous checkpoints and
  // `latest` are untouched until the rename below.
  with_context("writing checkpoint " + final_dir.string(), [&] {
    struct RemoveUnfinished {
      const fs::path& dir;
      ~RemoveUnfinished() {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
      }
    } remove_unfinished{tmp};
    write_safetensors(tmp / "trainable.safetensors", data.weights,
                      {{"format", "m2sa-trainable"}, {"step", std::to_string(data.step)}});
    hook("weights");
    write_safetensors(tmp / "optimizer.safetensors", data.optimizer, data.optimizer_metadata);
    hook("optimizer");
    json state = data.state;
    state["format"] = kFormat;
    state["version"] = kVersion;
    state["step"] = data.step;
    write_json_file(tmp / "state.json", state);
    hook("state");
    replace_directory(tmp, final_dir);
    hook("renamed");
    write_file_atomic(options_.dir / "latest", name + "\n");
    hook("latest");
  });
  if (best) {
    BestCheckpoint b = *best;
    b.step = data.step;
    set_best(b);
    hook("best");
  }
  prune(data.step);
  hook("pruned");
  return final_dir;
}

void CheckpointManager::set_best(const BestCheckpoint& best) {
  const std::string name = dir_name(best.step);
  M2SA_CHECK(fs::is_directory(options_.dir / name), "checkpoints: cannot mark ", name,
             " as the best: it does not exist in ", options_.dir.string());
  write_json_file(options_.dir / "best.json",
                  json{{"dir", name}, {"step", best.step}, {"metric", best.metric}, {"value", best.value}});
}

std::optional<BestCheckpoint> CheckpointManager::best() const {
  const fs::path p = options_.dir / "best.json";
  if (!fs::exists(p)) return std::nullopt;
  const json j = read_json_file(p);
  JsonReader r(j, p.string());
  BestCheckpoint b;
  b.step = r.get<int64_t>("step");
  b.metric = r.get<std::string>("metric");
  b.value = r.get<double>("value");
  (void)r.get<std::string>("dir");
  r.finish();
  return b;
}

std::optional<fs::path> CheckpointManager::latest() const {
  const fs::path p = options_.dir / "latest";
  if (!fs::exists(p)) return std::nullopt;
  std::string name = read_text(p);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  M2SA_CHECK(parse_step_dir(name) >= 0, p.string(), ": expected a checkpoint name like step-000123, got \"", name,
             "\"");
  const fs::path dir = options_.dir / name;
  M2SA_CHECK(fs::is_directory(dir), p.string(), ": names ", name, ", which does not exist in ",
             options_.dir.string());
  return dir;
}

bool CheckpointManager::is_complete(const fs::path& dir) {
  for (const char* f : {"state.json", "trainable.safetensors", "optimizer.safetensors"})
    if (!fs::is_regular_file(dir / f)) return false;
  return true;
}

std::optional<fs::path> CheckpointManager::resume_point() const {
  const std::vector<fs::path> dirs = step_dirs();
  std::string why;
  if (fs::exists(options_.dir / "latest")) {
    try {
      const fs::path l = *latest();
      if (is_complete(l)) return l;
      why = (options_.dir / "latest").string() + " names " + l.filename().string() + ", which is incomplete";
    } catch (const Error& e) {
      why = e.what();
    }
  } else {
    why = (options_.dir / "latest").string() + " is missing";
  }
  if (dirs.empty()) {
    if (!fs::exists(options_.dir / "latest")) return std::nullopt;
    fail("resume: ", why, " and ", options_.dir.string(), " holds no step-* checkpoint");
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    if (!is_complete(*it)) continue;
    spdlog::warn("resume: {}; continuing from the newest complete checkpoint, {}", why, it->string());
    return *it;
  }
  fail("resume: ", why, ", and none of the ", dirs.size(), " step-* directories in ", options_.dir.string(),
       " is a complete checkpoint (state.json, trainable.safetensors, optimizer.safetensors); refusing to start "
       "again from step 0 over them: move them away to start afresh");
}

void CheckpointManager::prune(int64_t saved_step) const {
  std::vector<fs::path> dirs;
  for (fs::path& d : step_dirs())
    if (parse_step_dir(d.filename().string()) <= saved_step) dirs.push_back(std::move(d));
  std::set<std::string> keep;
  for (size_t i = dirs.size() > static_cast<size_t>(options_.keep_last) ? dirs.size() - options_.keep_last : 0;
       i < dirs.size(); ++i)
    keep.insert(dirs[i].filename().string());
  if (auto b = best()) keep.insert(dir_name(b->step));
  if (auto l = latest()) keep.insert(l->filename().string());
  for (const fs::path& d : dirs) {
    const std::string name = d.filename().string();
    if (keep.count(name)) continue;
    // Rename first (atomic) so that no half-deleted step-* directory is ever visible.
    const fs::path trash = options_.dir / (".trash-" + name + "-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::rename(d, trash, ec);
    if (ec) continue;
    fs::remove_all(trash, ec);
  }
}

LoadedCheckpoint load_checkpoint(const fs::path& dir) {
  LoadedCheckpoint ck;
  ck.dir = dir;
  M2SA_CHECK(fs::is_directory(dir), "checkpoint ", dir.string(), " does not exist or is not a directory");
  for (const char* f : {"state.json", "trainable.safetensors", "optimizer.safetensors"})
    M2SA_CHECK(fs::is_regular_file(dir / f), "checkpoint ", dir.string(), ": ", f, " is missing");
  ck.state = read_json_file(dir / "state.json");
  const std::string where = (dir / "state.json").string();
  M2SA_CHECK(ck.state.is_object() && ck.state.value("format", "") == kFormat, where, ": not an m2sa training "
             "checkpoint (\"format\" is not \"", kFormat, "\")");
  M2SA_CHECK(ck.state.value("version", 0) == kVersion, where, ": checkpoint version ", ck.state.value("version", 0),
             " is not supported (expected ", kVersion, ")");
  ck.weights = std::make_unique<SafetensorsReader>(dir / "trainable.safetensors");
  ck.optimizer = std::make_unique<SafetensorsReader>(dir / "optimizer.safetensors");
  return ck;
}

}  // namespace m2sa::train
