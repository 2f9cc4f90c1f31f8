// Fuzz target: a sentencepiece `tokenizer.model` (a serialized ModelProto) through SentencePieceBpe's protobuf
// reader, then a fixed text encoded (merges, byte fallback) and decoded with the model the bytes describe.
#include <string>

#include "fuzz_target.h"
#include "m2sa/text/sentencepiece_bpe.h"

M2SA_FUZZ_TARGET(tokenizer_model) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  return m2sa::fuzz::swallow_error([&] {
    const m2sa::SentencePieceBpe bpe = m2sa::SentencePieceBpe::from_serialized(bytes, "fuzz.model");
    const std::string text = "Hello  w\xc3\xb6rld, [SEG] \xf0\x9f\x98\x80 a\tb\n";
    const auto pieces = bpe.encode_pieces(text);
    (void)bpe.encode_ids(text);
    (void)bpe.decode_pieces(pieces);
    for (int id = 0; id < bpe.size() && id < 64; ++id) (void)bpe.id_to_piece(id);
    (void)bpe.bos_id();
    (void)bpe.eos_id();
  });
}
