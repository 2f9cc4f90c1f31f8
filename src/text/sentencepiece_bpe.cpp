#include "m2sa/text/sentencepiece_bpe.h"

#include <cstring>
#include <queue>

#include "m2sa/core/error.h"

namespace m2sa {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Minimal protobuf wire-format reader.
struct ProtoReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& name;

  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) fail(name, ": truncated sentencepiece model (varint)");
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(name, ": corrupt sentencepiece model (varint too long)");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end - p)) fail(name, ": truncated sentencepiece model (field of ", n, " bytes)");
    std::string_view out(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    p += n;
    return out;
  }
  uint32_t fixed32() {
    if (end - p < 4) fail(name, ": truncated sentencepiece model (fixed32)");
    uint32_t v;
    std::memcpy(&v, p, 4);  // little-endian hosts only (x86-64, aarch64)
    p += 4;
    return v;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        if (end - p < 8) fail(name, ": truncated sentencepiece model (fixed64)");
        p += 8;
        break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail(name, ": not a sentencepiece model (unknown protobuf wire type ", wire, ")");
    }
  }
};

ProtoReader sub(std::string_view b, const std::string& name) {
  return {reinterpret_cast<const uint8_t*>(b.data()), reinterpret_cast<const uint8_t*>(b.data()) + b.size(), name};
}

// sentencepiece's UTF-8 rule: invalid sequences are consumed one byte at a time.
std::size_t utf8_len(std::string_view s, std::size_t i, bool* valid) {
  const auto c = static_cast<unsigned char>(s[i]);
  *valid = true;
  if (c < 0x80) return 1;
  auto trail = [&](std::size_t k) { return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80; };
  auto ok_cp = [](uint32_t cp) { return cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF); };
  if ((c & 0xE0) == 0xC0 && trail(1)) {
    const uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    if (cp >= 0x80 && ok_cp(cp)) return 2;
  } else if ((c & 0xF0) == 0xE0 && trail(1) && trail(2)) {
    const uint32_t cp = ((c & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                        (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    if (cp >= 0x800 && ok_cp(cp)) return 3;
  } else if ((c & 0xF8) == 0xF0 && trail(1) && trail(2) && trail(3)) {
    const uint32_t cp = ((c & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
                        ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) |
                        (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
    if (cp >= 0x10000 && ok_cp(cp)) return 4;
  }
  *valid = false;
  return 1;
}

}  // namespace

SentencePieceBpe SentencePieceBpe::from_serialized(const std::string& bytes, const std::string& name) {
  SentencePieceBpe m;
  m.name_ = name;
  int model_type = 1;  // UNIGRAM (proto default)
  bool remove_extra_whitespaces = true;
  std::string charsmap;
  ProtoReader r = sub(bytes, name);
  while (!r.done()) {
    const uint64_t key = r.varint();
    const uint32_t field = static_cast<uint32_t>(key >> 3), wire = static_cast<uint32_t>(key & 7);
    if (field == 1 && wire == 2) {  // repeated SentencePiece pieces
      ProtoReader pr = sub(r.bytes(), name);
      std::string piece;
      float score = 0.f;
      int type = 1;
      while (!pr.done()) {
        const uint64_t k = pr.varint();
        const uint32_t f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 1 && w == 2) piece = std::string(pr.bytes());
        else if (f == 2 && w == 5) {
          const uint32_t bits = pr.fixed32();
          std::memcpy(&score, &bits, 4);
        } else if (f == 3 && w == 0) type = static_cast<int>(pr.varint());
        else pr.skip(w);
      }
      if (type < 1 || type > 6) fail(name, ": piece \"", piece, "\" has unknown type ", type);
      m.pieces_.push_back(piece);
      m.scores_.push_back(score);
      m.types_.push_back(static_cast<PieceType>(type));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      ProtoReader tr = sub(r.bytes(), name);
      while (!tr.done()) {
        const uint64_t k = tr.varint();
        const uint32_t f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 3 && w == 0) model_type = static_cast<int>(tr.varint());
        else tr.skip(w);
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      ProtoReader nr = sub(r.bytes(), name);
      while (!nr.done()) {
        const uint64_t k = nr.varint();
        const uint32_t f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 2 && w == 2) charsmap = std::string(nr.bytes());
        else if (f == 3 && w == 0) m.add_dummy_prefix_ = nr.varint() != 0;
        else if (f == 4 && w == 0) remove_extra_whitespaces = nr.varint() != 0;
        else if (f == 5 && w == 0) m.escape_whitespaces_ = nr.varint() != 0;
        else nr.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces_.empty()) fail(name, ": not a sentencepiece model (no pieces)");
  if (model_type != 2)
    fail(name, ": sentencepiece model type ", model_type, " is not supported; expected BPE (2), as LLaMA's tokenizer.model");
  if (!charsmap.empty())
    fail(name, ": the sentencepiece normaliser has a precompiled charsmap (e.g. NFKC); only the identity normaliser "
               "of the LLaMA tokenizer is supported");
  if (remove_extra_whitespaces)
    fail(name, ": remove_extra_whitespaces=true is not supported (LLaMA's tokenizer.model has false)");

  std::fill(std::begin(m.byte_ids_), std::end(m.byte_ids_), -1);
  bool has_unk = false;
  for (int i = 0; i < m.size(); ++i) {
    const auto t = m.types_[static_cast<std::size_t>(i)];
    const std::string& piece = m.pieces_[static_cast<std::size_t>(i)];
    if (!m.all_.emplace(piece, i).second) fail(name, ": duplicate piece \"", piece, "\" (id ", i, ")");
    if (t == PieceType::kNormal || t == PieceType::kUserDefined || t == PieceType::kUnused) m.merges_.emplace(piece, i);
    if (t == PieceType::kUserDefined)
      fail(name, ": user-defined piece \"", piece, "\" found; user-defined symbols are not supported");
    if (t == PieceType::kUnused) fail(name, ": unused piece \"", piece, "\" found; not supported");
    if (t == PieceType::kUnknown) {
      m.unk_id_ = i;
      has_unk = true;
    }
    if (t == PieceType::kByte) {
      // Two hex digits, checked one by one: sscanf("%2X") also takes a sign or a space ("<0x-9>" gave
      // 4294967287, an index far outside byte_ids_; found by fuzz/tokenizer_model_fuzz.cpp).
      auto hex = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      };
      if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>' || hex(piece[3]) < 0 ||
          hex(piece[4]) < 0)
        fail(name, ": byte piece \"", piece, "\" is not of the form <0xXX>");
      m.byte_ids_[hex(piece[3]) * 16 + hex(piece[4])] = i;
      m.byte_fallback_ = true;
    }
  }
  if (!has_unk) fail(name, ": the sentencepiece model has no unknown piece");
  if (m.byte_fallback_)
    for (int b = 0; b < 256; ++b)
      if (m.byte_ids_[b] < 0) fail(name, ": byte fallback is enabled but piece <0x", std::hex, b, "> is missing");
  return m;
}

int SentencePieceBpe::piece_to_id(std::string_view piece) const {
  auto it = all_.find(std::string(piece));
  return it == all_.end() ? unk_id_ : it->second;
}

const std::string& SentencePieceBpe::id_to_piece(int id) const {
  if (id < 0 || id >= size()) fail(name_, ": piece id ", id, " is outside [0, ", size(), ")");
  return pieces_[static_cast<std::size_t>(id)];
}

// normalizer.cc with an empty charsmap: optional dummy prefix, ' ' -> U+2581, invalid UTF-8 -> U+FFFD.
std::string SentencePieceBpe::normalize(std::string_view text) const {
  std::string out;
  if (text.empty()) return out;
  out.reserve(text.size() * 3 / 2 + 4);
  auto put = [&](std::string_view s) {
    if (escape_whitespaces_ && s == " ") out.append(kSpaceSymbol);
    else out.append(s);
  };
  if (add_dummy_prefix_) put(" ");
  for (std::size_t i = 0; i < text.size();) {
    bool valid;
    const std::size_t n = utf8_len(text, i, &valid);
    put(valid ? text.substr(i, n) : kReplacementChar);
    i += n;
  }
  return out;
}

std::vector<std::string> SentencePieceBpe::encode_pieces(std::string_view text) const {
  const std::string normalized = normalize(text);
  struct Symbol {
    int prev, next;
    std::size_t begin, size;  // byte range in `normalized`; size 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  for (std::size_t i = 0; i < normalized.size();) {
    bool valid;
    const std::size_t n = utf8_len(normalized, i, &valid);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, i + n < normalized.size() ? index + 1 : -1, i, n});
    i += n;
  }
  struct Pair {
    int left, right;
    float score;
    std::size_t size;
  };
  // bpe_model.cc SymbolPairComparator: higher score first; on ties the leftmost pair.
  auto cmp = [](const Pair& a, const Pair& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
  std::priority_queue<Pair, std::vector<Pair>, decltype(cmp)> agenda(cmp);
  auto maybe_add = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    const auto& l = symbols[static_cast<std::size_t>(left)];
    const auto& r = symbols[static_cast<std::size_t>(right)];
    const std::size_t size = l.size + r.size;
    auto it = merges_.find(normalized.substr(l.begin, size));
    if (it == merges_.end()) return;
    agenda.push({left, right, scores_[static_cast<std::size_t>(it->second)], size});
  };
  for (std::size_t i = 1; i < symbols.size(); ++i) maybe_add(static_cast<int>(i - 1), static_cast<int>(i));
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    auto& l = symbols[static_cast<std::size_t>(top.left)];
    auto& r = symbols[static_cast<std::size_t>(top.right)];
    if (l.size == 0 || r.size == 0 || l.size + r.size != top.size) continue;  // stale
    l.size += r.size;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<std::size_t>(r.next)].prev = top.left;
    r.size = 0;
    maybe_add(l.prev, top.left);
    maybe_add(top.left, l.next);
  }
  std::vector<std::string> out;
  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[static_cast<std::size_t>(i)].next) {
    const auto& s = symbols[static_cast<std::size_t>(i)];
    std::string piece = normalized.substr(s.begin, s.size);
    const auto it = all_.find(piece);
    const bool known = it != all_.end() && it->second != unk_id_ &&
                       types_[static_cast<std::size_t>(it->second)] != PieceType::kControl &&
                       types_[static_cast<std::size_t>(it->second)] != PieceType::kByte;
    if (known || !byte_fallback_) {
      out.push_back(std::move(piece));
    } else {
      for (unsigned char b : piece) out.push_back(pieces_[static_cast<std::size_t>(byte_ids_[b])]);
    }
  }
  return out;
}

std::vector<int> SentencePieceBpe::encode_ids(std::string_view text) const {
  std::vector<int> ids;
  for (const auto& p : encode_pieces(text)) {
    // A single character equal to a control/byte piece string never occurs (they are multi-character), so
    // PieceToId is exact here; unknown characters without byte fallback map to unk.
    ids.push_back(piece_to_id(p));
  }
  return ids;
}

std::string SentencePieceBpe::decode_pieces(const std::vector<std::string>& pieces) const {
  std::string text;
  std::string bytes;  // pending run of byte pieces
  auto flush_bytes = [&] {
    for (std::size_t off = 0; off < bytes.size();) {
      bool valid;
      const std::size_t n = utf8_len(bytes, off, &valid);
      text.append(valid ? std::string_view(bytes).substr(off, n) : kReplacementChar);
      off += n;
    }
    bytes.clear();
  };
  // Whether a leading "▁" (the dummy prefix) is still to be consumed: only while no text was produced and
  // no "▁" was consumed yet (checked against python sentencepiece 0.1.97 on 30,000 random piece runs).
  bool is_bos_ws = true;
  for (const auto& piece : pieces) {
    const int id = piece_to_id(piece);
    const PieceType t = types_[static_cast<std::size_t>(id)];
    if (t == PieceType::kByte) {
      unsigned v = 0;
      std::sscanf(pieces_[static_cast<std::size_t>(id)].c_str() + 3, "%2X", &v);
      bytes.push_back(static_cast<char>(v));
      continue;
    }
    flush_bytes();
    if (!text.empty()) is_bos_ws = false;  // decoded bytes count as text before this piece
    if (t == PieceType::kControl) continue;  // <s>, </s>: invisible, consume nothing
    if (t == PieceType::kUnknown) {
      // "<unk>" itself shows as " ⁇ "; a piece string outside the vocabulary is kept verbatim.
      text.append(piece == pieces_[static_cast<std::size_t>(id)] ? " \xE2\x81\x87 " : piece);
      is_bos_ws = false;
      continue;
    }
    std::string_view p = piece;
    bool consumed = false;
    if (is_bos_ws && add_dummy_prefix_ && p.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      p.remove_prefix(kSpaceSymbol.size());
      consumed = true;
    }
    if (consumed || !p.empty()) is_bos_ws = false;
    std::size_t pos = 0;
    while (true) {
      const std::size_t hit = p.find(kSpaceSymbol, pos);
      text.append(p.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
      if (hit == std::string_view::npos) break;
      text.push_back(' ');
      pos = hit + kSpaceSymbol.size();
    }
  }
  flush_bytes();
  return text;
}

}  // namespace m2sa
