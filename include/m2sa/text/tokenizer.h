#pragma once
// The LLaMA tokenizer exactly as the reference uses it: transformers 4.31's slow `LlamaTokenizer`
// (sentencepiece + "added tokens", legacy mode) loaded with `AutoTokenizer.from_pretrained(..., use_fast=False)`,
// `pad_token = unk_token`, then `add_tokens("[SEG]")` and `add_tokens(["<im_start>", "<im_end>"],
// special_tokens=True)` (MMR:train_ds.py; ../shared/spec/M2SA.md section 2.1).
//
// Encoding (`encode`) follows transformers 4.31 `PreTrainedTokenizer.tokenize` (tokenization_utils.py):
//  1. the text is cut around every "no-split" token (the added tokens and the special tokens <s>, </s>,
//     <unk>; leftmost, longest match, like its `Trie.split`);
//  2. whitespace next to a no-split token is stripped (Python `str.lstrip()/rstrip()`, all Unicode
//     whitespace): both sides for plain-string tokens such as [SEG], <im_start>, <im_end>; for special
//     tokens held as `AddedToken` (LlamaTokenizer wraps <s>, </s>, <unk> in AddedToken(lstrip=False,
//     rstrip=False)) only where their own lstrip/rstrip flag says so, i.e. not at all by default;
//  3. each remaining piece is encoded by sentencepiece on its own, so each gets its own dummy "▁" prefix
//     (legacy=True, the 4.31 default), and BOS is prepended when asked.
// `encode_plain` is sentencepiece alone (no splitting), what the golden fixture cases contain.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace m2sa {

inline constexpr const char* kSegToken = "[SEG]";
inline constexpr const char* kImStartToken = "<im_start>";
inline constexpr const char* kImEndToken = "<im_end>";
inline constexpr const char* kImageToken = "<image>";
inline constexpr int64_t kImageTokenIndex = -200;  // IMAGE_TOKEN_INDEX (MMR:utils/utils.py)
inline constexpr int64_t kIgnoreIndex = -100;      // IGNORE_INDEX

struct TokenizerOptions {
  // The id the model's [SEG] must have (the checkpoint's embedding rows and `seg_token_idx`). A tokenizer
  // whose [SEG] encodes to anything else is refused (LISA #55: 29871 instead of 32000 doubles the masks).
  int64_t expected_seg_token_id = 32000;
  // Add [SEG] (non-special), then <im_start>, <im_end> (special) when the tokenizer lacks them, like
  // train_ds.py. When false, missing tokens are an error.
  bool add_missing_tokens = true;
  // Overrides tokenizer_config.json's model_max_length when > 0 (the reference passes 2048).
  int64_t model_max_length = 2048;
};

struct DecodeOptions {
  bool skip_special_tokens = false;
  bool spaces_between_special_tokens = true;  // " ".join(sub_texts) around added tokens (4.31 default)
  // -1: the tokenizer's clean_up_tokenization_spaces (false for LlamaTokenizer unless its config says so).
  int clean_up_tokenization_spaces = -1;
};

// A special token as HF holds it: a plain string (stripped on both sides when splitting) or an AddedToken
// with its own strip flags.
struct SpecialToken {
  std::string content;
  bool is_added_token = false;  // AddedToken object (dict in JSON) rather than a plain string
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = true;
};

class Tokenizer {
 public:
  // `path` is a sentencepiece model file, or a folder holding tokenizer.model and optionally
  // added_tokens.json, special_tokens_map.json, tokenizer_config.json (HF layout). Adds the missing
  // LISA tokens (options) and checks the [SEG] id. Errors name the file and what was expected.
  static Tokenizer load(const std::filesystem::path& path, const TokenizerOptions& options = {});
  // A bare sentencepiece model file with nothing added (for raw tests and tools).
  static Tokenizer load_plain(const std::filesystem::path& model_file);

  // HF `tokenizer(text).input_ids` (add_bos: add_special_tokens). Throws on invalid UTF-8.
  std::vector<int64_t> encode(std::string_view text, bool add_bos = true) const;
  // HF `tokenizer.tokenize(text)`: pieces and no-split tokens, no BOS.
  std::vector<std::string> tokenize(std::string_view text) const;
  // Sentencepiece alone on the whole text (no added/special token handling), optionally with BOS.
  std::vector<int64_t> encode_plain(std::string_view text, bool add_bos = true) const;

  // HF `decode` (4.31 slow). Ids must be in [0, size()); -200 is refused (remove it first, see chat_decode).
  std::string decode(const std::vector<int64_t>& ids, const DecodeOptions& options = {}) const;
  // LISA chat.py: drop -200 ids, decode with special tokens, remove "\n", replace "  " by " ".
  std::string chat_decode(const std::vector<int64_t>& ids) const;

  std::string id_to_piece(int64_t id) const;  // added tokens by their text; sentencepiece pieces otherwise
  // HF convert_tokens_to_ids: added tokens first, then the sentencepiece piece (unk id if unknown).
  int64_t token_to_id(const std::string& token) const;

  // HF add_tokens: tokens already known (in the vocabulary or added) are skipped; each new one gets id
  // size() at that moment. Returns the number added.
  int64_t add_tokens(const std::vector<std::string>& tokens, bool special);

  int64_t size() const;          // len(tokenizer): sentencepiece pieces + added tokens
  int64_t vocab_size() const;    // sentencepiece pieces
  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t unk_id() const;
  int64_t pad_id() const;        // = unk (pad_token = unk_token), 0 for LLaMA
  int64_t seg_token_id() const;  // tokenizer("[SEG]", add_special_tokens=False).input_ids[0], checked
  int64_t im_start_id() const;
  int64_t im_end_id() const;
  int64_t model_max_length() const;
  bool legacy() const;
  // Added tokens in id order.
  std::vector<std::pair<std::string, int64_t>> added_tokens() const;
  // Every special token string (bos, eos, unk, pad, additional), deduplicated, in HF order.
  std::vector<std::string> all_special_tokens() const;

  // Writes tokenizer.model, added_tokens.json, special_tokens_map.json and tokenizer_config.json in the
  // layout transformers 4.31 writes (and reads back into the same tokenizer), each file atomically.
  void save(const std::filesystem::path& dir) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace m2sa
