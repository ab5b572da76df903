// Normalizers of tokenizer.json: the ones the byte-level BPE families use (NFC, Sequence, none).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tokenizer/json_fields.h"

namespace coenc::tok {

class Normalizer {
 public:
  // The normalizer at `where` (null: none). Throws Unsupported naming any other type.
  static Normalizer from_json(const nlohmann::json& j, const JsonPath& where);

  bool is_identity() const { return !nfc_; }
  // Normalizes valid UTF-8 `text`.
  std::string apply(std::string_view text) const;

 private:
  static void parse_into(const nlohmann::json& j, const JsonPath& where, Normalizer& out);
  bool nfc_ = false;  // NFC is idempotent, so a Sequence of NFCs is one NFC
};

// Unicode NFC of valid UTF-8 `text` (utf8proc), with a fast path for text that NFC cannot change.
std::string nfc(std::string_view text);

}  // namespace coenc::tok
