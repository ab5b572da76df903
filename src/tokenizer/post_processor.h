// Post-processors of tokenizer.json: what encode(add_special=true) wraps around the ids of one text.
// Supported: TemplateProcessing (its "single" template), ByteLevel (changes offsets only, so no ids),
// Sequence.
#pragma once

#include <functional>
#include <optional>

#include <nlohmann/json.hpp>

#include "coenc/types.h"
#include "tokenizer/json_fields.h"

namespace coenc::tok {

class PostProcessor {
 public:
  // `lookup` resolves a token string to its id (for special tokens a template names only by string); every id
  // the template adds must be below `vocab_size` (an error naming the field otherwise).
  static PostProcessor from_json(const nlohmann::json& j, const JsonPath& where,
                                 const std::function<std::optional<TokenId>(const std::string&)>& lookup,
                                 TokenId vocab_size);

  // Wraps `ids` (the encoded text) with the template's special tokens.
  void apply(TokenIds& ids) const;

 private:
  static void parse_into(const nlohmann::json& j, const JsonPath& where,
                         const std::function<std::optional<TokenId>(const std::string&)>& lookup,
                         TokenId vocab_size, PostProcessor& out);
  TokenIds prefix_, suffix_;
};

}  // namespace coenc::tok
