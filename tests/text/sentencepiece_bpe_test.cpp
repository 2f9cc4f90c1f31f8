// The own sentencepiece BPE decoder against sentencepiece 0.1.97 on stored piece runs
// (tests/fixtures/sentencepiece_decode_cases.json; the encoder is checked by TokenizerParity).
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/text/sentencepiece_bpe.h"
#include "test_util.h"

namespace m2sa {
namespace {

TEST(TokenizerParity, SentencepieceDecodeCases) {
  const SentencePieceBpe sp =
      SentencePieceBpe::from_serialized(test::read_bytes(test::fixture("llama2_tokenizer.model")), "llama2_tokenizer.model");
  const json cases = read_json_file(test::repo_root() / "tests/fixtures/sentencepiece_decode_cases.json").at("cases");
  ASSERT_GT(cases.size(), 100u);
  for (const auto& c : cases) {
    const auto pieces = c.at("pieces").get<std::vector<std::string>>();
    EXPECT_EQ(sp.decode_pieces(pieces), c.at("text").get<std::string>()) << c.at("pieces").dump();
  }
}

TEST(SentencePieceBpe, ModelFacts) {
  const SentencePieceBpe sp =
      SentencePieceBpe::from_serialized(test::read_bytes(test::fixture("llama2_tokenizer.model")), "m");
  EXPECT_EQ(sp.size(), 32000);
  EXPECT_EQ(sp.unk_id(), 0);
  EXPECT_EQ(sp.bos_id(), 1);
  EXPECT_EQ(sp.eos_id(), 2);
  EXPECT_EQ(sp.type(3), SentencePieceBpe::PieceType::kByte);
  EXPECT_EQ(sp.id_to_piece(13), "<0x0A>");
  EXPECT_EQ(sp.piece_to_id("not a piece"), 0);
  EXPECT_THROW(sp.id_to_piece(32000), Error);
  // Decoding: "<unk>" shows as " ⁇ ", control pieces vanish, a leading "▁" is consumed once.
  EXPECT_EQ(sp.decode_pieces({"<s>", "▁", "▁Hi", "<unk>", "</s>"}), " Hi \xE2\x81\x87 ");
  EXPECT_EQ(sp.decode_pieces({}), "");
  EXPECT_EQ(sp.encode_pieces(""), std::vector<std::string>{});
}

TEST(SentencePieceBpe, TruncatedModelIsRefused) {
  const std::string bytes = test::read_bytes(test::fixture("llama2_tokenizer.model"));
  EXPECT_THROW(SentencePieceBpe::from_serialized(bytes.substr(0, bytes.size() / 3), "cut.model"), Error);
  try {
    SentencePieceBpe::from_serialized(bytes.substr(0, 1000), "cut.model");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.model"), std::string::npos) << e.what();
  }
}

// A byte piece must be <0x> and two hex digits; "<0x-9>" once indexed the byte table at 4294967287
// (fuzz/regressions/tokenizer_model/).
TEST(SentencePieceBpe, MalformedBytePieceIsRefused) {
  std::string bytes = test::read_bytes(test::fixture("llama2_tokenizer.model"));
  const std::size_t at = bytes.find("<0x0A>");
  ASSERT_NE(at, std::string::npos);
  for (const char* bad : {"<0x-9>", "<0x 9>", "<0x+A>", "<0xG0>"}) {
    std::string edited = bytes;
    edited.replace(at, 6, bad);
    try {
      SentencePieceBpe::from_serialized(edited, "bad.model");
      ADD_FAILURE() << bad << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is not of the form <0xXX>"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace m2sa
