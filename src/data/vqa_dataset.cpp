#include <ATen/ATen.h>

#include "entry_json.h"
#include "m2sa/data/image_files.h"
#include "m2sa/data/vqa_reason_datasets.h"

namespace m2sa::data {

namespace fs = std::filesystem;
using detail::json;

namespace {

// preprocess_multimodal: "<image>" removed, the message stripped, then "<image>\n" put in front.
std::string move_image_token(const std::string& value) {
  const std::string tok = kImageToken;
  if (value.find(tok) == std::string::npos) return value;
  std::string rest;
  std::size_t p = 0;
  for (std::size_t q = value.find(tok); q != std::string::npos; q = value.find(tok, p)) {
    rest += value.substr(p, q - p);
    p = q + tok.size();
  }
  rest += value.substr(p);
  return detail::py_strip(tok + "\n" + detail::py_strip(rest));
}

}  // namespace

VqaDataset::VqaDataset(const fs::path& dataset_dir, const std::string& vqa_data, bool skip_bad, SkipReport* report)
    : image_root_(dataset_dir / "coco" / "train2017"),
      json_path_(dataset_dir / "llava_dataset" / (vqa_data + ".json")),
      name_(vqa_data) {
  int64_t index = 0;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth != 1 || !(event == json::parse_event_t::object_end || event == json::parse_event_t::value ||
                        event == json::parse_event_t::array_end))
      return true;
    const int64_t i = index++;
    detail::guarded(skip_bad, report, name_, [&] {
      const std::string where = json_path_.string() + ": entry " + std::to_string(i);
      Item item;
      item.index = i;
      item.image = detail::need_string(parsed, "image", where);
      const json& conv = detail::need_array(parsed, "conversations", where);
      std::vector<std::pair<std::string, std::string>> msgs;
      for (std::size_t k = 0; k < conv.size(); ++k) {
        const std::string wk = where + ": conversations[" + std::to_string(k) + "]";
        const std::string& from = detail::need_string(conv[k], "from", wk);
        if (from != "human" && from != "gpt") bad_entry(wk, ": \"from\" is \"", from, "\", expected \"human\" or \"gpt\"");
        msgs.emplace_back(from, move_image_token(detail::need_string(conv[k], "value", wk)));
      }
      if (!msgs.empty() && msgs[0].first != "human") msgs.erase(msgs.begin());  // skip a leading non-human message
      if (msgs.empty()) bad_entry(where, ": empty conversation");
      for (std::size_t k = 0; k < msgs.size(); ++k)
        if (msgs[k].first != (k % 2 == 0 ? "human" : "gpt"))
          bad_entry(where, ": message ", k, " is from \"", msgs[k].first, "\"; roles must alternate human, gpt");
      if (msgs.size() % 2) bad_entry(where, ": the last human message has no gpt answer");
      for (std::size_t k = 0; k < msgs.size(); k += 2) item.dialog.push_back(Turn{msgs[k].second, msgs[k + 1].second});
      items_.push_back(std::move(item));
    });
    return false;
  };
  const json root = detail::parse_json_file(json_path_, cb);
  if (!root.is_array()) fail(json_path_.string(), ": expected a list of conversations");
  if (items_.empty()) fail(json_path_.string(), ": no usable conversations");
}

std::optional<Sample> VqaDataset::get(int64_t index, Rng&) const {
  const Item& item = items_.at(static_cast<std::size_t>(index));
  Sample s;
  s.dataset = name_;
  s.source = name_ + ":" + std::to_string(item.index);
  s.image_path = (image_root_ / item.image).string();
  const ImageSize size = probe_image(s.image_path, json_path_.string() + ": entry " + std::to_string(item.index));
  s.height = size.height;
  s.width = size.width;
  s.conversations.push_back(item.dialog);
  s.masks = at::zeros({0, size.height, size.width}, at::kByte);
  return s;
}

}  // namespace m2sa::data
