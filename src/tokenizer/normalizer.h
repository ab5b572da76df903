// Normalizers of tokenizer.json: the ones the byte-level BPE families use (NFC, Sequence, none) and the
// Llama-2 style pair that turns spaces into SentencePiece's "▁" (Prepend, Replace with a String pattern).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/json_fields.h"

namespace coenc::tok {

class Normalizer {
 public:
  // The normalizer at `where` (null: none). Throws Unsupported naming any other type.
  static Normalizer from_json(const nlohmann::json& j, const JsonPath& where);

  bool is_identity() const { return steps_.empty(); }
  // Normalizes valid UTF-8 `text`, applying the steps in order.
  std::string apply(std::string_view text) const;

 private:
  enum class Kind { Nfc, Prepend, Replace };
  struct Step {
    Kind kind;
    std::string pattern, content;  // Prepend: content; Replace: pattern -> content
  };
  static void parse_into(const nlohmann::json& j, const JsonPath& where, Normalizer& out);
  std::vector<Step> steps_;
};

// Unicode NFC of valid UTF-8 `text` (utf8proc), with a fast path for text that NFC cannot change.
std::string nfc(std::string_view text);

}  // namespace coenc::tok
