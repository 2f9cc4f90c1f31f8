#include "m2sa/text/tokenizer.h"


#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "m2sa/core/atomic_file.h"
#include "m2sa/core/error.h"
#include "m2sa/core/read_file.h"
#include "m2sa/core/strings.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/text/sentencepiece_bpe.h"

namespace m2sa {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSpieceUnderline = "\xE2\x96\x81";  // U+2581 "▁"

// Length of the UTF-8 sequence starting at s[i], or 0 if it is not a valid one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  // Overlong forms, surrogates and values above U+10FFFF are invalid (Python would never hold them).
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

uint32_t utf8_code_point(std::string_view s, std::size_t i, std::size_t n) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (n == 1) return c;
  uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void check_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_length(text, i);
    if (n == 0) fail("tokenizer: text is not valid UTF-8 (bad byte at offset ", i, ")");
    i += n;
  }
}

// Python's str.isspace() (what str.strip() removes when called without arguments).
bool python_isspace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string python_lstrip(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = utf8_length(s, i);
    if (n == 0 || !python_isspace(utf8_code_point(s, i, n))) break;
    i += n;
  }
  return s.substr(i);
}

std::string python_rstrip(const std::string& s) {
  // Walk forward remembering where the trailing whitespace run starts (UTF-8 cannot be walked back safely
  // without re-validating, and the strings are short).
  std::size_t end = 0, i = 0;
  while (i < s.size()) {
    const std::size_t n = utf8_length(s, i);
    if (n == 0) return s;  // validated before; defensive
    if (!python_isspace(utf8_code_point(s, i, n))) end = i + n;
    i += n;
  }
  return s.substr(0, end);
}

// A special token from tokenizer_config.json (AddedToken only with "__type": "AddedToken") or
// special_tokens_map.json (any dict is an AddedToken), as transformers 4.31 `_from_pretrained` reads them.
SpecialToken parse_special(const json& v, bool dict_needs_type, const std::string& where) {
  SpecialToken t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
    return t;
  }
  if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
    fail(where, ": expected a token string or an AddedToken object with \"content\", got ", v.dump());
  t.content = v["content"].get<std::string>();
  const bool typed = v.contains("__type") && v["__type"] == "AddedToken";
  t.is_added_token = typed || !dict_needs_type;
  auto flag = [&](const char* key, bool fallback) {
    if (!v.contains(key)) return fallback;
    if (!v[key].is_boolean()) fail(where, ".", key, ": expected a boolean, got ", v[key].dump());
    return v[key].get<bool>();
  };
  t.lstrip = flag("lstrip", false);
  t.rstrip = flag("rstrip", false);
  t.single_word = flag("single_word", false);
  t.normalized = flag("normalized", true);
  return t;
}

json special_to_json(const SpecialToken& t, bool with_type) {
  if (!t.is_added_token) return t.content;
  json j = json::object();
  if (with_type) j["__type"] = "AddedToken";
  j["content"] = t.content;
  j["lstrip"] = t.lstrip;
  j["normalized"] = t.normalized;
  j["rstrip"] = t.rstrip;
  j["single_word"] = t.single_word;
  return j;
}

}  // namespace

struct Tokenizer::Impl {
  // Shared between copies (read-only after loading); copies made by add_tokens share it.
  std::shared_ptr<const SentencePieceBpe> sp;
  std::string model_proto;  // serialized, for save()
  std::string source;       // file or folder, for messages

  // Special tokens by attribute (bos, eos, unk, pad) and the additional ones; `has_*` false = None.
  std::map<std::string, SpecialToken> specials;  // keys: bos_token, eos_token, unk_token, pad_token
  std::vector<SpecialToken> additional_special;

  std::vector<std::pair<std::string, int64_t>> added;  // added tokens in id order
  std::map<std::string, int64_t> added_encoder;
  std::set<std::string> special_added;  // added with special_tokens=True (for save only)

  std::vector<std::string> no_split;  // unique_no_split_tokens (sorted, like HF)
  bool legacy = true;
  bool add_bos_token = true;
  bool add_eos_token = false;
  bool clean_up_tokenization_spaces = false;
  int64_t model_max_length = 2048;
  int64_t seg_id = -1;

  // HF all_special_tokens_extended order: bos, eos, unk, sep, pad, cls, mask, additional (LLaMA has no
  // sep/cls/mask).
  std::vector<SpecialToken> special_list() const {
    std::vector<SpecialToken> out;
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      auto it = specials.find(key);
      if (it != specials.end()) out.push_back(it->second);
    }
    for (const auto& t : additional_special) out.push_back(t);
    return out;
  }

  std::vector<std::string> all_special_tokens() const {
    std::vector<std::string> out;
    for (const auto& t : special_list())
      if (std::find(out.begin(), out.end(), t.content) == out.end()) out.push_back(t.content);
    return out;
  }

  bool is_special(const std::string& token) const {
    for (const auto& t : special_list())
      if (t.content == token) return true;
    return false;
  }

  int64_t token_to_id(const std::string& token) const {
    auto it = added_encoder.find(token);
    if (it != added_encoder.end()) return it->second;
    return sp->piece_to_id(token);
  }

  void add_no_split(const std::string& token) {
    auto pos = std::lower_bound(no_split.begin(), no_split.end(), token);
    if (pos == no_split.end() || *pos != token) no_split.insert(pos, token);
  }

  // HF `_add_tokens` (4.31): a token is added when it is not the unk token and maps to the unk id; every
  // token passed (special) or every added one (non-special) becomes "no split".
  int64_t add_tokens(const std::vector<std::string>& tokens, bool special) {
    const std::string unk = specials.count("unk_token") ? specials.at("unk_token").content : "<unk>";
    const int64_t unk_id = token_to_id(unk);
    std::vector<std::string> to_add;
    for (const auto& tok : tokens) {
      M2SA_CHECK(!tok.empty(), source, ": cannot add an empty token");
      check_utf8(tok);
      if (tok != unk && token_to_id(tok) == unk_id && std::find(to_add.begin(), to_add.end(), tok) == to_add.end())
        to_add.push_back(tok);
    }
    for (const auto& tok : to_add) {
      const int64_t id = static_cast<int64_t>(sp->size()) + static_cast<int64_t>(added.size());
      added.emplace_back(tok, id);
      added_encoder[tok] = id;
      if (special) special_added.insert(tok);
    }
    for (const auto& tok : special ? tokens : to_add) add_no_split(tok);
    return static_cast<int64_t>(to_add.size());
  }

  // HF sanitize_special_tokens(): every special token string becomes no-split (and is added if unknown).
  void sanitize_special_tokens() { add_tokens(all_special_tokens(), /*special=*/true); }

  // Strip flags for a no-split token: the AddedToken among the special tokens with that content (the
  // last one wins, as in the dict comprehension of 4.31 `tokenize`), else both sides.
  std::pair<bool, bool> strip_flags(const std::string& token) const {
    std::pair<bool, bool> flags{true, true};
    for (const auto& t : special_list())
      if (t.is_added_token && t.content == token) flags = {t.lstrip, t.rstrip};
    return flags;
  }

  // Trie.split equivalent: cut at the leftmost occurrence of any no-split token, longest match first.
  std::vector<std::string> split_on_tokens(const std::string& text) const {
    std::vector<std::string> out;
    std::size_t start = 0, i = 0;
    while (i < text.size()) {
      std::size_t best = 0;
      for (const auto& tok : no_split)
        if (tok.size() > best && text.compare(i, tok.size(), tok) == 0) best = tok.size();
      if (best > 0) {
        if (i > start) out.push_back(text.substr(start, i - start));
        out.push_back(text.substr(i, best));
        i += best;
        start = i;
      } else {
        std::size_t n = utf8_length(text, i);
        i += n == 0 ? 1 : n;
      }
    }
    if (start < text.size()) out.push_back(text.substr(start));
    return out;
  }

  std::vector<std::string> sp_pieces(const std::string& text) const {
    return sp->encode_pieces(text);
  }

  // LlamaTokenizer._tokenize (4.31).
  std::vector<std::string> tokenize_piece(std::string text) const {
    bool is_first = false;
    if (!legacy) {
      is_first = starts_with(text, kSpieceUnderline);
      if (is_first) text = text.substr(std::string(kSpieceUnderline).size());
    }
    std::vector<std::string> tokens = sp_pieces(text);
    if (!legacy && !is_first && !starts_with(text, " ") && !tokens.empty() &&
        starts_with(tokens[0], kSpieceUnderline)) {
      const std::size_t u = std::string(kSpieceUnderline).size();
      if (tokens[0].size() > u) tokens[0] = tokens[0].substr(u);
      else tokens.erase(tokens.begin());
    }
    return tokens;
  }

  // PreTrainedTokenizer.tokenize (4.31) with LlamaTokenizer.tokenize's non-legacy prefix.
  std::vector<std::string> tokenize(std::string_view input) const {
    check_utf8(input);
    std::string text(input);
    if (!legacy) text = kSpieceUnderline + replace_all(text, kSpieceUnderline, " ");
    std::vector<std::string> tokens = split_on_tokens(text);
    const std::set<std::string> no_split_set(no_split.begin(), no_split.end());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (!no_split_set.count(tokens[i])) continue;
      auto [lstrip, rstrip] = strip_flags(tokens[i]);
      // rstrip: the token eats the whitespace on its right, so the right neighbour is lstripped.
      if (rstrip && i + 1 < tokens.size() && !tokens[i + 1].empty()) tokens[i + 1] = python_lstrip(tokens[i + 1]);
      if (lstrip && i > 0 && !tokens[i - 1].empty()) tokens[i - 1] = python_rstrip(tokens[i - 1]);
    }
    std::vector<std::string> out;
    for (const auto& tok : tokens) {
      if (tok.empty()) continue;
      if (no_split_set.count(tok)) {
        out.push_back(tok);
      } else {
        for (auto& p : tokenize_piece(tok)) out.push_back(std::move(p));
      }
    }
    return out;
  }

  std::string sp_decode(const std::vector<std::string>& pieces) const {
    return sp->decode_pieces(pieces);
  }

  // LlamaTokenizer.convert_tokens_to_string (4.31).
  std::string convert_tokens_to_string(const std::vector<std::string>& tokens) const {
    const auto specials_list = all_special_tokens();
    std::vector<std::string> current;
    std::string out;
    bool prev_is_special = false;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (std::find(specials_list.begin(), specials_list.end(), tokens[i]) != specials_list.end()) {
        if (!prev_is_special && i != 0) out += " ";
        out += sp_decode(current) + tokens[i];
        prev_is_special = true;
        current.clear();
      } else {
        current.push_back(tokens[i]);
        prev_is_special = false;
      }
    }
    out += sp_decode(current);
    return out;
  }

  std::string id_to_piece(int64_t id) const {
    const int64_t n = static_cast<int64_t>(sp->size()) + static_cast<int64_t>(added.size());
    if (id < 0 || id >= n) fail(source, ": token id ", id, " is outside the vocabulary [0, ", n, ")");
    if (id >= static_cast<int64_t>(sp->size())) return added[static_cast<std::size_t>(id - sp->size())].first;
    return sp->id_to_piece(static_cast<int>(id));
  }
};

namespace {

std::shared_ptr<Tokenizer::Impl> load_model(const fs::path& model_file) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->source = model_file.string();
  if (!fs::exists(model_file)) fail(model_file.string(), ": tokenizer model file not found");
  impl->model_proto = read_file(model_file);
  if (impl->model_proto.empty()) fail(model_file.string(), ": empty file, expected a sentencepiece model");
  impl->sp = std::make_shared<const SentencePieceBpe>(
      SentencePieceBpe::from_serialized(impl->model_proto, model_file.string()));
  // LlamaTokenizer defaults: <s>, </s>, <unk> wrapped in AddedToken(lstrip=False, rstrip=False); no pad.
  for (auto [key, content] : {std::pair<const char*, const char*>{"bos_token", "<s>"},
                              {"eos_token", "</s>"},
                              {"unk_token", "<unk>"}}) {
    SpecialToken t;
    t.content = content;
    t.is_added_token = true;
    impl->specials[key] = t;
  }
  return impl;
}

void read_tokenizer_config(Tokenizer::Impl& impl, const fs::path& file) {
  const json cfg = read_json_file(file);
  const std::string name = file.string();
  if (!cfg.is_object()) fail(name, ": expected a JSON object");
  auto boolean = [&](const char* key, bool& out) {
    if (!cfg.contains(key) || cfg[key].is_null()) return;
    if (!cfg[key].is_boolean()) fail(name, ": ", key, ": expected a boolean, got ", cfg[key].dump());
    out = cfg[key].get<bool>();
  };
  boolean("add_bos_token", impl.add_bos_token);
  boolean("add_eos_token", impl.add_eos_token);
  boolean("legacy", impl.legacy);
  boolean("clean_up_tokenization_spaces", impl.clean_up_tokenization_spaces);
  if (cfg.contains("model_max_length") && cfg["model_max_length"].is_number())
    impl.model_max_length = static_cast<int64_t>(std::min(cfg["model_max_length"].get<double>(), 1e15));
  if (cfg.contains("tokenizer_class") && cfg["tokenizer_class"].is_string()) {
    const std::string cls = cfg["tokenizer_class"].get<std::string>();
    if (cls.find("Llama") == std::string::npos)
      fail(name, ": tokenizer_class is \"", cls, "\", expected LlamaTokenizer (the LLaMA sentencepiece tokenizer)");
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (!cfg.contains(key)) continue;
    if (cfg[key].is_null()) {
      impl.specials.erase(key);
      continue;
    }
    SpecialToken t = parse_special(cfg[key], /*dict_needs_type=*/true, name + ": " + key);
    // LlamaTokenizer.__init__ wraps plain strings in AddedToken(lstrip=False, rstrip=False).
    if (!t.is_added_token) t.is_added_token = true;
    impl.specials[key] = t;
  }
  if (cfg.contains("additional_special_tokens") && cfg["additional_special_tokens"].is_array()) {
    impl.additional_special.clear();
    for (const auto& v : cfg["additional_special_tokens"])
      impl.additional_special.push_back(parse_special(v, true, name + ": additional_special_tokens"));
  }
}

void read_special_tokens_map(Tokenizer::Impl& impl, const fs::path& file) {
  const json m = read_json_file(file);
  const std::string name = file.string();
  if (!m.is_object()) fail(name, ": expected a JSON object");
  for (auto it = m.begin(); it != m.end(); ++it) {
    const std::string& key = it.key();
    if (key == "additional_special_tokens") {
      if (!it.value().is_array()) fail(name, ": additional_special_tokens: expected a list");
      impl.additional_special.clear();
      for (const auto& v : it.value()) impl.additional_special.push_back(parse_special(v, false, name + ": " + key));
    } else if (key == "bos_token" || key == "eos_token" || key == "unk_token" || key == "pad_token") {
      if (it.value().is_null()) continue;
      impl.specials[key] = parse_special(it.value(), /*dict_needs_type=*/false, name + ": " + key);
    } else if (key == "sep_token" || key == "cls_token" || key == "mask_token") {
      fail(name, ": ", key, " is not used by the LLaMA tokenizer (unexpected special token)");
    }
  }
}

void read_added_tokens(Tokenizer::Impl& impl, const fs::path& file) {
  const json m = read_json_file(file);
  const std::string name = file.string();
  if (!m.is_object()) fail(name, ": expected a JSON object {token: id}");
  std::vector<std::pair<int64_t, std::string>> entries;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_number_integer()) fail(name, ": \"", it.key(), "\": expected an integer id, got ", it.value().dump());
    entries.emplace_back(json_int(it.value(), name + ": \"" + it.key() + "\"", 0), it.key());
  }
  std::sort(entries.begin(), entries.end());
  // 4.31 _from_pretrained: slow tokenizers need consecutive ids starting at len(tokenizer); runs of
  // special / non-special tokens are added together.
  const auto specials = impl.all_special_tokens();
  for (const auto& [id, token] : entries) {
    const int64_t expected = static_cast<int64_t>(impl.sp->size()) + static_cast<int64_t>(impl.added.size());
    if (id != expected)
      fail(name, ": non-consecutive added token \"", token, "\": should have id ", expected, " but has id ", id);
    const bool special = std::find(specials.begin(), specials.end(), token) != specials.end();
    if (impl.add_tokens({token}, special) != 1)
      fail(name, ": added token \"", token, "\" (id ", id, ") is already in the sentencepiece vocabulary");
  }
}

}  // namespace

Tokenizer Tokenizer::load_plain(const fs::path& model_file) {
  return with_context("loading tokenizer " + model_file.string(), [&] {
    auto impl = load_model(model_file);
    impl->sanitize_special_tokens();
    return Tokenizer(impl);
  });
}

Tokenizer Tokenizer::load(const fs::path& path, const TokenizerOptions& options) {
  auto impl = [&] {
    if (fs::is_directory(path)) {
      const fs::path model = path / "tokenizer.model";
      if (!fs::exists(model))
        fail(path.string(), ": no tokenizer.model in this folder (expected a Hugging Face LLaMA tokenizer folder)");
      auto im = load_model(model);
      im->source = path.string();
      if (fs::exists(path / "tokenizer_config.json")) read_tokenizer_config(*im, path / "tokenizer_config.json");
      if (fs::exists(path / "special_tokens_map.json")) read_special_tokens_map(*im, path / "special_tokens_map.json");
      if (fs::exists(path / "added_tokens.json")) read_added_tokens(*im, path / "added_tokens.json");
      return im;
    }
    if (!fs::exists(path)) fail(path.string(), ": tokenizer not found (expected tokenizer.model or its folder)");
    return load_model(path);
  }();
  impl->sanitize_special_tokens();
  if (options.model_max_length > 0) impl->model_max_length = options.model_max_length;

  // train_ds.py: pad_token = unk_token (a plain string: the unk AddedToken keeps deciding the strip flags).
  if (!impl->specials.count("unk_token")) fail(impl->source, ": the tokenizer has no unk_token (needed as pad token)");
  SpecialToken pad;
  pad.content = impl->specials.at("unk_token").content;
  impl->specials["pad_token"] = pad;

  for (const auto& [tok, special] : {std::pair<const char*, bool>{kSegToken, false}, {kImStartToken, true},
                                     {kImEndToken, true}}) {
    if (impl->added_encoder.count(tok)) continue;
    if (!options.add_missing_tokens) fail(impl->source, ": the tokenizer has no ", tok, " token");
    impl->add_tokens({tok}, special);
  }

  Tokenizer t(impl);
  // train_ds.py / chat.py: seg_token_idx = tokenizer("[SEG]", add_special_tokens=False).input_ids[0].
  const auto seg = t.encode(kSegToken, /*add_bos=*/false);
  if (seg.size() != 1 || seg[0] != options.expected_seg_token_id)
    fail(impl->source, ": \"[SEG]\" encodes to ", seg.empty() ? std::string("nothing") : std::to_string(seg[0]),
         seg.size() > 1 ? " (and more tokens)" : "", " but the model expects id ", options.expected_seg_token_id,
         ". This tokenizer does not match the checkpoint (LISA issue #55: a wrong [SEG] id silently breaks the "
         "masks); use the tokenizer saved with the model, or a base LLaMA tokenizer with no other added tokens");
  impl->seg_id = seg[0];
  return t;
}

std::vector<std::string> Tokenizer::tokenize(std::string_view text) const { return impl_->tokenize(text); }

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int64_t> ids;
  if (add_bos && impl_->add_bos_token) ids.push_back(bos_id());
  for (const auto& tok : impl_->tokenize(text)) ids.push_back(impl_->token_to_id(tok));
  if (add_bos && impl_->add_eos_token) ids.push_back(eos_id());
  return ids;
}

std::vector<int64_t> Tokenizer::encode_plain(std::string_view text, bool add_bos) const {
  check_utf8(text);
  const std::vector<int> raw = impl_->sp->encode_ids(text);
  std::vector<int64_t> ids;
  if (add_bos) ids.push_back(impl_->sp->bos_id());
  ids.insert(ids.end(), raw.begin(), raw.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, const DecodeOptions& options) const {
  const auto& im = *impl_;
  std::vector<int64_t> special_ids;
  for (const auto& t : im.all_special_tokens()) special_ids.push_back(im.token_to_id(t));
  // convert_ids_to_tokens(skip_special_tokens)
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    if (id == kImageTokenIndex)
      fail(im.source, ": cannot decode the image placeholder -200 (remove it first, as chat.py does)");
    if (options.skip_special_tokens && std::find(special_ids.begin(), special_ids.end(), id) != special_ids.end())
      continue;
    tokens.push_back(im.id_to_piece(id));
  }
  // _decode: added tokens form their own sub-texts.
  std::vector<std::string> sub_texts, current;
  for (const auto& tok : tokens) {
    if (im.added_encoder.count(tok)) {
      if (!current.empty()) {
        sub_texts.push_back(im.convert_tokens_to_string(current));
        current.clear();
      }
      sub_texts.push_back(tok);
    } else {
      current.push_back(tok);
    }
  }
  if (!current.empty()) sub_texts.push_back(im.convert_tokens_to_string(current));
  std::string text;
  for (std::size_t i = 0; i < sub_texts.size(); ++i) {
    if (i > 0 && options.spaces_between_special_tokens) text += " ";
    text += sub_texts[i];
  }
  const bool clean = options.clean_up_tokenization_spaces < 0 ? im.clean_up_tokenization_spaces
                                                             : options.clean_up_tokenization_spaces > 0;
  if (clean) {
    for (auto [from, to] : {std::pair<const char*, const char*>{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","},
                            {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"},
                            {" 're", "'re"}})
      text = replace_all(text, from, to);
  }
  return text;
}

std::string Tokenizer::chat_decode(const std::vector<int64_t>& ids) const {
  std::vector<int64_t> kept;
  for (int64_t id : ids)
    if (id != kImageTokenIndex) kept.push_back(id);
  std::string text = decode(kept);
  text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
  return replace_all(text, "  ", " ");  // Python str.replace: one left-to-right pass
}

std::string Tokenizer::id_to_piece(int64_t id) const { return impl_->id_to_piece(id); }
int64_t Tokenizer::token_to_id(const std::string& token) const { return impl_->token_to_id(token); }

int64_t Tokenizer::add_tokens(const std::vector<std::string>& tokens, bool special) {
  if (impl_.use_count() > 1) impl_ = std::make_shared<Impl>(*impl_);  // copies do not share added tokens
  return impl_->add_tokens(tokens, special);
}

int64_t Tokenizer::size() const {
  return static_cast<int64_t>(impl_->sp->size()) + static_cast<int64_t>(impl_->added.size());
}
int64_t Tokenizer::vocab_size() const { return impl_->sp->size(); }
int64_t Tokenizer::bos_id() const {
  M2SA_CHECK(impl_->specials.count("bos_token"), impl_->source, ": the tokenizer has no bos_token");
  return impl_->token_to_id(impl_->specials.at("bos_token").content);
}
int64_t Tokenizer::eos_id() const {
  M2SA_CHECK(impl_->specials.count("eos_token"), impl_->source, ": the tokenizer has no eos_token");
  return impl_->token_to_id(impl_->specials.at("eos_token").content);
}
int64_t Tokenizer::unk_id() const {
  M2SA_CHECK(impl_->specials.count("unk_token"), impl_->source, ": the tokenizer has no unk_token");
  return impl_->token_to_id(impl_->specials.at("unk_token").content);
}
int64_t Tokenizer::pad_id() const {
  M2SA_CHECK(impl_->specials.count("pad_token"), impl_->source, ": the tokenizer has no pad_token");
  return impl_->token_to_id(impl_->specials.at("pad_token").content);
}
int64_t Tokenizer::seg_token_id() const {
  M2SA_CHECK(impl_->seg_id >= 0, impl_->source, ": plain tokenizer without [SEG] (use Tokenizer::load)");
  return impl_->seg_id;
}
int64_t Tokenizer::im_start_id() const {
  auto it = impl_->added_encoder.find(kImStartToken);
  M2SA_CHECK(it != impl_->added_encoder.end(), impl_->source, ": the tokenizer has no <im_start> token");
  return it->second;
}
int64_t Tokenizer::im_end_id() const {
  auto it = impl_->added_encoder.find(kImEndToken);
  M2SA_CHECK(it != impl_->added_encoder.end(), impl_->source, ": the tokenizer has no <im_end> token");
  return it->second;
}
int64_t Tokenizer::model_max_length() const { return impl_->model_max_length; }
bool Tokenizer::legacy() const { return impl_->legacy; }
std::vector<std::pair<std::string, int64_t>> Tokenizer::added_tokens() const { return impl_->added; }
std::vector<std::string> Tokenizer::all_special_tokens() const { return impl_->all_special_tokens(); }

void Tokenizer::save(const fs::path& dir) const {
  const auto& im = *impl_;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir.string(), ": cannot create the tokenizer folder: ", ec.message());
  write_file_atomic(dir / "tokenizer.model", im.model_proto);

  json added = json::object();
  for (const auto& [tok, id] : im.added) added[tok] = id;
  write_json_file(dir / "added_tokens.json", added);

  // special_tokens_map.json: AddedTokens as plain dicts (no "__type"), plain strings as strings (4.31).
  json smap = json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    auto it = im.specials.find(key);
    if (it != im.specials.end()) smap[key] = special_to_json(it->second, false);
  }
  if (!im.additional_special.empty()) {
    json list = json::array();
    for (const auto& t : im.additional_special) list.push_back(special_to_json(t, false));
    smap["additional_special_tokens"] = list;
  }
  write_json_file(dir / "special_tokens_map.json", smap);

  // tokenizer_config.json: the init kwargs, AddedTokens tagged with "__type".
  json cfg = json::object();
  cfg["add_bos_token"] = im.add_bos_token;
  cfg["add_eos_token"] = im.add_eos_token;
  for (const char* key : {"bos_token", "eos_token", "unk_token"}) {
    auto it = im.specials.find(key);
    if (it != im.specials.end()) cfg[key] = special_to_json(it->second, true);
  }
  cfg["pad_token"] = nullptr;  // the reference sets pad_token = unk_token after loading (special_tokens_map)
  cfg["clean_up_tokenization_spaces"] = im.clean_up_tokenization_spaces;
  cfg["legacy"] = im.legacy;
  cfg["model_max_length"] = im.model_max_length;
  cfg["padding_side"] = "right";
  cfg["sp_model_kwargs"] = json::object();
  cfg["tokenizer_class"] = "LlamaTokenizer";
  write_json_file(dir / "tokenizer_config.json", cfg);
}

}  // namespace m2sa
