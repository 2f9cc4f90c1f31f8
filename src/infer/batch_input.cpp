#include "m2sa/infer/batch_input.h"

#include <cstdio>
#include <fstream>
#include <map>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/infer/output_writer.h"

namespace m2sa::infer {

namespace fs = std::filesystem;

namespace {

// One line to an item; throws m2sa::Error naming `where` and the field.
BatchItem parse_line(const std::string& text, const std::string& where, int64_t line, const fs::path& root) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    fail(where, ": not valid JSON (", e.what(), ")");
  }
  M2SA_CHECK(j.is_object(), where, ": expected a JSON object {\"image\": ..., \"question\": ...}, got ",
             dump_json(j, -1));
  BatchItem item;
  item.line = line;
  for (auto it = j.begin(); it != j.end(); ++it)
    M2SA_CHECK(it.key() == "image" || it.key() == "question" || it.key() == "id", where, ": unknown field \"",
               it.key(), "\" (expected \"image\", \"question\" and optionally \"id\")");
  M2SA_CHECK(j.contains("image") && j["image"].is_string() && !j["image"].get<std::string>().empty(), where,
             ": \"image\" must be a non-empty string (the image path)");
  M2SA_CHECK(j.contains("question") && j["question"].is_string() && !j["question"].get<std::string>().empty(), where,
             ": \"question\" must be a non-empty string");
  item.image_as_given = j["image"].get<std::string>();
  const fs::path p(item.image_as_given);
  item.image = p.is_absolute() ? p : root / p;
  item.question = j["question"].get<std::string>();
  if (j.contains("id")) {
    const json& id = j["id"];
    M2SA_CHECK(id.is_string() || id.is_number_integer(), where, ": \"id\" must be a string or an integer, got ",
               dump_json(id, -1));
    item.id = id.is_string() ? id.get<std::string>() : std::to_string(json_int(id, where + ": \"id\""));
    item.folder = sanitize_file_name(item.id, 64);
    M2SA_CHECK(!item.folder.empty(), where, ": \"id\" \"", item.id,
               "\" has no letters or digits to name its output folder");
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04lld", static_cast<long long>(line));
    item.folder = buf;
  }
  return item;
}

}  // namespace

BatchFile read_batch_file(const fs::path& path, const fs::path& image_root) {
  std::error_code ec;
  M2SA_CHECK(fs::is_regular_file(path, ec), path.string(), ": batch file not found (expected a JSONL file with one "
             "{\"image\": ..., \"question\": ...} object per line)");
  std::ifstream in(path, std::ios::binary);
  M2SA_CHECK(in, path.string(), ": cannot open the batch file");
  const fs::path root = image_root.empty() ? path.parent_path() : image_root;
  BatchFile out;
  std::map<std::string, int64_t> ids, folders;
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path.string() + ":" + std::to_string(line);
    try {
      BatchItem item = parse_line(text, where, line, root);
      if (!item.id.empty())
        M2SA_CHECK(!ids.count(item.id), where, ": duplicate \"id\" \"", item.id, "\" (first on line ", ids[item.id], ")");
      M2SA_CHECK(!folders.count(item.folder), where, ": output folder \"", item.folder, "\" is already used by line ",
                 folders[item.folder], " (ids must differ after sanitising to letters, digits and '-')");
      if (!item.id.empty()) ids[item.id] = line;
      folders[item.folder] = line;
      out.items.push_back(std::move(item));
    } catch (const Error& e) {
      out.errors.push_back(BatchLineError{line, e.what()});
    }
  }
  M2SA_CHECK(!in.bad(), path.string(), ": read error after line ", line);
  M2SA_CHECK(!out.items.empty() || !out.errors.empty(), path.string(),
             ": the batch file has no items (expected one {\"image\": ..., \"question\": ...} object per line)");
  return out;
}

}  // namespace m2sa::infer
