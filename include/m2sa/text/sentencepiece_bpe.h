#pragma once
// A sentencepiece BPE model (the LLaMA tokenizer.model) read and run without libsentencepiece.
//
// Why not libsentencepiece: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite and exports
// its symbols; in a process that also loads LibTorch (which needs libprotobuf.so.32) those symbols interpose
// protobuf's own and the process crashes during static initialisation. This file implements exactly what
// sentencepiece 0.1.97 does for BPE models (ModelProto parsing, the identity normaliser with the dummy
// prefix and whitespace escaping, bpe_model.cc's merge loop: highest score first, leftmost on ties, byte
// fallback for characters outside the vocabulary, and DecodePieces), checked against the sentencepiece
// golden cases in the fixtures. Models that need more (unigram, NFKC charsmaps, removal of extra
// whitespace, user-defined symbols) are refused with a clear error instead of being encoded differently.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace m2sa {

class SentencePieceBpe {
 public:
  enum class PieceType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

  // Parses a serialized ModelProto; `name` (the file) is used in error messages.
  static SentencePieceBpe from_serialized(const std::string& bytes, const std::string& name);

  // Pieces of `text` (valid UTF-8), as SentencePieceProcessor::Encode(text, &pieces).
  std::vector<std::string> encode_pieces(std::string_view text) const;
  std::vector<int> encode_ids(std::string_view text) const;
  // SentencePieceProcessor::Decode(pieces): unknown piece strings are kept verbatim.
  std::string decode_pieces(const std::vector<std::string>& pieces) const;

  int piece_to_id(std::string_view piece) const;  // unk id when unknown
  const std::string& id_to_piece(int id) const;   // throws outside [0, size())
  int size() const { return static_cast<int>(pieces_.size()); }
  int unk_id() const { return unk_id_; }
  int bos_id() const { return piece_to_id("<s>"); }
  int eos_id() const { return piece_to_id("</s>"); }
  PieceType type(int id) const { return types_.at(static_cast<std::size_t>(id)); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  std::string normalize(std::string_view text) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<PieceType> types_;
  std::unordered_map<std::string, int> all_;     // every piece -> id (sentencepiece PieceToId)
  std::unordered_map<std::string, int> merges_;  // NORMAL / USER_DEFINED / UNUSED pieces (bpe merge targets)
  int unk_id_ = 0;
  int byte_ids_[256];
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool escape_whitespaces_ = true;
  std::string name_;
};

}  // namespace m2sa
