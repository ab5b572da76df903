// Decoders of tokenizer.json: turn the vocabulary entries of a list of ids back into bytes.
// Supported: ByteLevel; and the chain of character BPE models with byte fallback (Replace, ByteFallback,
// Fuse, Strip), each in a Sequence or alone; null (entries joined with spaces, as Hugging Face does).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/json_fields.h"

namespace coenc::tok {

class Decoder {
 public:
  static Decoder from_json(const nlohmann::json& j, const JsonPath& where);

  // True for the plain ByteLevel decoder, whose output is the concatenation of a fixed string per token.
  bool is_byte_level() const { return steps_.size() == 1 && steps_[0].kind == Kind::ByteLevel; }
  // The bytes `tokens` (vocabulary entries, in order) decode to; invalid UTF-8 is left for the caller.
  std::string decode(std::vector<std::string> tokens) const;

 private:
  enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip };
  struct Step {
    Kind kind;
    std::string pattern, content;  // Replace: pattern -> content; Strip: the character to strip
    int start = 0, stop = 0;       // Strip: how many to strip at each end
  };
  static void parse_into(const nlohmann::json& j, const JsonPath& where, Decoder& out);
  std::vector<Step> steps_;
};

// The bytes one byte-level token stands for: its characters mapped back through the byte-level alphabet, or
// the token's own UTF-8 when a character is outside it (Hugging Face's rule for added tokens such as "<s>").
std::string byte_level_token_bytes(const std::string& token);

}  // namespace coenc::tok
