// The LLaMA tokenizer: sentencepiece parity with the golden cases, and the transformers 4.31 slow-tokenizer
// rules LISA relies on, with hand-derived ids.
//
// Rules (transformers v4.31.0, src/transformers/tokenization_utils.py, PreTrainedTokenizer.tokenize: the
// `tokens_trie.split(text)` call and the loop after it that strips `right.lstrip()` / `left.rstrip()`
// "by default" for tokens that are not AddedToken special tokens, and honours `tok_extended.rstrip/lstrip`
// for those that are; models/llama/tokenization_llama.py: `__init__` wraps bos/eos/unk in
// `AddedToken(..., lstrip=False, rstrip=False)`, `legacy=True` by default, and `_tokenize` calls
// `sp_model.encode(text, out_type=str)` on each piece, so each piece gets its own dummy prefix):
//   R1  [SEG], <im_start>, <im_end> (plain-string added tokens) eat all whitespace on both sides.
//   R2  <s>, </s>, <unk> are split off but strip nothing (AddedToken lstrip=rstrip=False).
//   R3  every remaining piece is encoded separately and gets its own "▁" (e.g. "." -> "▁." 869).
//   R4  Python str.strip whitespace is Unicode whitespace (U+3000 too), not only ' '.
// Sub-piece ids come from the sentencepiece golden cases (llama2_tokenizer_cases.json: "▁It" 739,
// "▁is" 338, "▁Sure" 18585, "," 29892, ...) and from encode_plain, which the parity tests check.
#include <gtest/gtest.h>

#include <fstream>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/text/tokenizer.h"
#include "test_util.h"

namespace m2sa {
namespace {

using Ids = std::vector<int64_t>;

Tokenizer& fixture_tokenizer() {
  static Tokenizer tok = Tokenizer::load(test::fixture("llama2_tokenizer.model"));
  return tok;
}

bool has_no_split_token(const std::string& text) {
  for (const char* t : {"<s>", "</s>", "<unk>", "[SEG]", "<im_start>", "<im_end>"})
    if (text.find(t) != std::string::npos) return true;
  return false;
}

void check_cases(const std::string& file) {
  const json cases = read_json_file(test::fixture(file));
  ASSERT_TRUE(cases.is_array());
  const Tokenizer& tok = fixture_tokenizer();
  int hf_checked = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const Ids expected = c.at("ids").get<Ids>();
    SCOPED_TRACE(file + ": " + text.substr(0, 80));
    // Sentencepiece alone (what the golden ids are), with BOS as stored.
    ASSERT_EQ(tok.encode_plain(text, true), expected);
    const auto pieces = c.at("pieces").get<std::vector<std::string>>();
    for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(tok.id_to_piece(expected[i]), pieces[i]);
    // The HF path gives the same ids whenever the text holds no token HF splits on.
    if (!has_no_split_token(text)) {
      EXPECT_EQ(tok.encode(text, true), expected);
      ++hf_checked;
    }
  }
  EXPECT_GT(hf_checked, 0);
}

TEST(TokenizerParity, GoldenCases) { check_cases("llama2_tokenizer_cases.json"); }
TEST(TokenizerParity, FuzzCases) { check_cases("llama2_tokenizer_fuzz_cases.json"); }

TEST(Tokenizer, AddedTokensHaveTheReferenceIds) {
  const Tokenizer& tok = fixture_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.size(), 32003);
  EXPECT_EQ(tok.seg_token_id(), 32000);  // add_tokens("[SEG]") first: id = vocab size at that moment
  EXPECT_EQ(tok.im_start_id(), 32001);
  EXPECT_EQ(tok.im_end_id(), 32002);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 0);  // pad_token = unk_token
  EXPECT_EQ(tok.encode("[SEG]", false), (Ids{32000}));
  EXPECT_EQ(tok.id_to_piece(32000), "[SEG]");
  EXPECT_EQ(tok.token_to_id("<im_end>"), 32002);
}

TEST(Tokenizer, SegStripsWhitespaceAndPiecesGetTheirOwnPrefix) {
  const Tokenizer& tok = fixture_tokenizer();
  // R1 + R3: "It is" + [SEG] + "." -> "▁It" "▁is" [SEG] "▁." (sentencepiece alone: "▁[" "SE" "G" "].")
  EXPECT_EQ(tok.encode("It is [SEG]."), (Ids{1, 739, 338, 32000, 869}));
  EXPECT_EQ(tok.tokenize("It is [SEG]."), (std::vector<std::string>{"▁It", "▁is", "[SEG]", "▁."}));
  // R1 on both sides of every [SEG]: ", " -> "," -> "▁," (1919); " and " -> "and" -> "▁and" (322).
  EXPECT_EQ(tok.encode("[SEG], [SEG] and [SEG]."), (Ids{1, 32000, 1919, 32000, 322, 32000, 869}));
  // R4: U+3000 IDEOGRAPHIC SPACE after [SEG] is stripped too; "x" -> "▁x" (921).
  EXPECT_EQ(tok.encode("[SEG]\xE3\x80\x80x", false), (Ids{32000, 921}));
}

TEST(Tokenizer, ImageTokensEatTheNewline) {
  const Tokenizer& tok = fixture_tokenizer();
  // R1: the "\n" (and spaces) after <im_end> disappear; "What" gets its own prefix "▁What" (1724).
  EXPECT_EQ(tok.encode("<im_end>\n  What", false), (Ids{32002, 1724}));
  // R1: the space before <im_start> goes: "USER: <im_start>" -> "...:" 29901, 32001.
  EXPECT_EQ(tok.encode("USER: <im_start>"), (Ids{1, 3148, 1001, 29901, 32001}));
}

TEST(Tokenizer, SpecialTokensAreSplitButNotStripped) {
  const Tokenizer& tok = fixture_tokenizer();
  // R2 + R3: "Sure.</s>USER: next": "Sure." -> "▁Sure" "." (18585 29889), </s> -> 2, "USER: next" ->
  // "▁US" "ER" ":" "▁next" (3148 1001 29901 2446).
  EXPECT_EQ(tok.encode("Sure.</s>USER: next"), (Ids{1, 18585, 29889, 2, 3148, 1001, 29901, 2446}));
  // R2: the spaces around <s>, </s>, <unk> stay in the neighbouring pieces: " and " -> "▁" "▁and" "▁"
  // (29871 322 29871), " are plain text here" -> 29871 526 8656 1426 1244. Sentencepiece alone would give
  // "▁<" "s" ">" ... (the golden case 1, 529, 29879, 29958, ...).
  EXPECT_EQ(tok.encode("<s> and </s> and <unk> are plain text here"),
            (Ids{1, 1, 29871, 322, 29871, 2, 29871, 322, 29871, 0, 29871, 526, 8656, 1426, 1244}));
}

TEST(Tokenizer, DecodeLikeTransformers431) {
  const Tokenizer& tok = fixture_tokenizer();
  // Added tokens form their own sub-texts joined by " " (spaces_between_special_tokens=True); <s> is a
  // special token kept verbatim by convert_tokens_to_string.
  EXPECT_EQ(tok.decode({1, 739, 338, 32000, 869}), "<s>It is [SEG] .");
  DecodeOptions skip;
  skip.skip_special_tokens = true;
  EXPECT_EQ(tok.decode({1, 739, 338, 32000, 869, 2}, skip), "It is [SEG] .");
  // LlamaTokenizer.convert_tokens_to_string puts " " before a special token that follows normal ones.
  EXPECT_EQ(tok.decode({1, 18585, 29889, 2, 3148, 1001, 29901, 2446}), "<s> Sure.</s>USER: next");
  // Byte pieces: "\n" is <0x0A> (13); chat_decode drops -200 and newlines, then "  " -> " ".
  EXPECT_EQ(tok.chat_decode({1, 1724, -200, 13, 13, 1724}), "<s>What What");
  EXPECT_NE(test::m2sa_error_of([&] { tok.decode({32003}); }).find("32003"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { tok.decode({-200}); }).find("-200"), std::string::npos);
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  EXPECT_NE(test::m2sa_error_of([&] { fixture_tokenizer().encode("abc\xFF"); }).find("UTF-8"), std::string::npos);
}

TEST(Tokenizer, SaveAndReloadGiveTheSameTokenizer) {
  test::TempDir dir;
  const Tokenizer& tok = fixture_tokenizer();
  tok.save(dir.path());
  for (const char* f : {"tokenizer.model", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(dir / f)) << f;
  EXPECT_EQ(test::read_bytes(dir / "tokenizer.model"), test::read_bytes(test::fixture("llama2_tokenizer.model")));
  const json added = read_json_file(dir / "added_tokens.json");
  EXPECT_EQ(added, json({{"[SEG]", 32000}, {"<im_start>", 32001}, {"<im_end>", 32002}}));
  const json smap = read_json_file(dir / "special_tokens_map.json");
  EXPECT_EQ(smap.at("bos_token").at("content"), "<s>");
  EXPECT_EQ(smap.at("bos_token").at("rstrip"), false);
  EXPECT_EQ(smap.at("pad_token"), "<unk>");
  const json cfg = read_json_file(dir / "tokenizer_config.json");
  EXPECT_EQ(cfg.at("tokenizer_class"), "LlamaTokenizer");
  EXPECT_EQ(cfg.at("bos_token").at("__type"), "AddedToken");

  Tokenizer back = Tokenizer::load(dir.path());
  EXPECT_EQ(back.added_tokens(), tok.added_tokens());
  for (const char* text : {"It is [SEG].", "<s> and </s> and <unk>", "USER: <im_start><image><im_end>\nhi"})
    EXPECT_EQ(back.encode(text), tok.encode(text)) << text;
}

TEST(Tokenizer, PlainStringSpecialTokenIsStrippedLikeHf) {
  // special_tokens_map.json with a plain string "<s>" (not an AddedToken dict): 4.31 sets it as a str,
  // so it falls under the default strip-both-sides rule (R1) instead of R2.
  test::TempDir dir;
  fixture_tokenizer().save(dir.path());
  test::write_bytes(dir / "special_tokens_map.json", R"({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})");
  Tokenizer tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok.encode("a <s> b"), (Ids{1, 263, 1, 289}));  // "a" -> "▁a" 263, "b" -> "▁b" 289
  // R2: nothing stripped: "a " -> "▁a" "▁" (263 29871), " b" -> "▁" "▁b" (29871 289).
  EXPECT_EQ(fixture_tokenizer().encode("a <s> b"), (Ids{1, 263, 29871, 1, 29871, 289}));
}

TEST(Tokenizer, WrongSegIdIsRefused) {
  // LLaVA-v0-style folder: <im_patch> etc. were added before [SEG], which would get id 32003 (LISA #55).
  test::TempDir dir;
  std::filesystem::copy_file(test::fixture("llama2_tokenizer.model"), dir / "tokenizer.model");
  test::write_bytes(dir / "added_tokens.json", R"({"<im_patch>": 32000, "<im_start>": 32001, "<im_end>": 32002})");
  const std::string msg = test::m2sa_error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(msg.find("32003"), std::string::npos) << msg;
  EXPECT_NE(msg.find("32000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("#55"), std::string::npos) << msg;
  // The same folder is fine for a model that expects 32003.
  TokenizerOptions o;
  o.expected_seg_token_id = 32003;
  EXPECT_EQ(Tokenizer::load(dir.path(), o).seg_token_id(), 32003);
  // Without adding, a bare model has no [SEG] at all.
  TokenizerOptions no_add;
  no_add.add_missing_tokens = false;
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(test::fixture("llama2_tokenizer.model"), no_add); }).find("[SEG]"),
            std::string::npos);
}

TEST(Tokenizer, BadFilesAreNamed) {
  test::TempDir dir;
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(dir / "missing.model"); }).find("missing.model"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(dir.path()); }).find("tokenizer.model"), std::string::npos);
  test::write_bytes(dir / "junk.model", "definitely not a protobuf \xff\xff\xff\xff");
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(dir / "junk.model"); }).find("junk.model"), std::string::npos);
  test::write_bytes(dir / "empty.model", "");
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(dir / "empty.model"); }).find("empty.model"), std::string::npos);
  // Non-consecutive added token ids (the slow tokenizer refuses them too).
  std::filesystem::copy_file(test::fixture("llama2_tokenizer.model"), dir / "tokenizer.model");
  test::write_bytes(dir / "added_tokens.json", R"({"[SEG]": 32005})");
  const std::string msg = test::m2sa_error_of([&] { Tokenizer::load(dir.path()); });
  EXPECT_NE(msg.find("added_tokens.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("32005"), std::string::npos) << msg;
  test::write_bytes(dir / "added_tokens.json", "{not json");
  EXPECT_NE(test::m2sa_error_of([&] { Tokenizer::load(dir.path()); }).find("added_tokens.json"), std::string::npos);
}

TEST(Tokenizer, AddTokensFollowsHf) {
  Tokenizer tok = fixture_tokenizer();  // a copy: adding must not change the shared one
  EXPECT_EQ(tok.add_tokens({"[SEG]", "<s>", "<unk>"}, false), 0);  // known tokens are skipped
  EXPECT_EQ(tok.add_tokens({"<extra>"}, false), 1);
  EXPECT_EQ(tok.token_to_id("<extra>"), 32003);
  EXPECT_EQ(fixture_tokenizer().size(), 32003);
  EXPECT_EQ(tok.encode("a <extra> b", false), (Ids{263, 32003, 289}));
}

}  // namespace
}  // namespace m2sa
