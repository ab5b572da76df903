// What the tokenizer targets do with a tokenizer that loaded: the calls generation makes, on a short text
// with multi-byte characters, digits, spaces and special-token spellings.
#pragma once

#include <string>

#include "coenc/tokenizer.h"
#include "fuzz_util.h"

namespace coenc::fuzz {

inline void use_tokenizer(const Tokenizer& t) {
  static const std::string kText =
      "Hello  w\xC3\xB6rld 123\n\xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80<s></s><|im_end|>\xFF";
  COENC_FUZZ_EXPECT(t.vocab_size() >= 0);
  for (bool add_special : {false, true}) {
    for (bool parse_special : {false, true}) {
      EncodeOptions options;
      options.add_special = add_special;
      options.parse_special = parse_special;
      const TokenIds ids = t.encode(kText, options);
      for (TokenId id : ids) {
        COENC_FUZZ_EXPECT(id >= 0 && id < t.vocab_size());
        t.id_to_piece(id);
        t.is_special(id);
      }
      t.decode(ids, true);
      t.decode(ids, false);
      // Streaming runs too, but its output is not compared with decode(): the two differ for decoders no
      // published tokenizer has (a Strip of two leading spaces after Fuse; docs/reliability.md, "Findings").
      StreamDecoder stream(t, true);
      for (TokenId id : ids) stream.push(id);
      stream.finish();
    }
  }
  for (auto id : {t.bos_id(), t.eos_id(), t.pad_id()})
    if (id) COENC_FUZZ_EXPECT(*id >= 0 && *id < t.vocab_size());
}

}  // namespace coenc::fuzz
