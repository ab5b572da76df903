// Pre-tokenizers: split normalized text into the pieces ("words") that BPE encodes one at a time.
//
// Hugging Face expresses the GPT-2, Llama-3 and Qwen2 splits as Oniguruma regexes with Unicode classes,
// case-insensitive groups and look-ahead, which std::regex cannot run. They are hand-written here as
// matchers that follow the regex engine's leftmost-first alternation and backtracking exactly, with Unicode
// categories from utf8proc.
#pragma once

#include <list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/bpe_trainer.h"
#include "tokenizer/json_fields.h"

namespace coenc::tok {

// SplitPattern (the GPT-2, Llama-3 and Qwen2 splits) is public: coenc/bpe_trainer.h.

// The known pattern whose regex source is `regex` (as written in tokenizer.json), if any.
bool find_split_pattern(const std::string& regex, SplitPattern& pattern);
// The regex source of `pattern`, as tokenizer.json spells it.
const char* split_pattern_regex(SplitPattern pattern);

// Splits valid UTF-8 `text` into consecutive pieces by `pattern` (every byte lands in exactly one piece);
// appends them to `out`.
void split_by_pattern(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out);

class PreTokenizer {
 public:
  // The pre_tokenizer of tokenizer.json at `where` (null: the whole text is one piece). Supported: ByteLevel
  // (add_prefix_space, use_regex), Split with one of the known regexes and behavior "Isolated", Sequence.
  // Throws Unsupported naming the type or pattern otherwise.
  static PreTokenizer from_json(const nlohmann::json& j, const JsonPath& where);

  // Splits `text` (valid UTF-8) into pieces, appended to `pieces`. A piece views `text`, or a string in
  // `storage` when ByteLevel's add_prefix_space had to prepend a space.
  void split(std::string_view text, std::vector<std::string_view>& pieces,
             std::list<std::string>& storage) const;

  // True if a ByteLevel step is present: the model then sees bytes mapped to the byte-level alphabet.
  bool byte_level() const { return byte_level_; }

 private:
  struct Step {
    bool is_split = true;   // a Split step (else ByteLevel)
    bool use_regex = true;  // Split always; ByteLevel when its own GPT-2 regex is on
    bool add_prefix_space = false;
    SplitPattern pattern = SplitPattern::Gpt2;
  };
  static void parse_into(const nlohmann::json& j, const JsonPath& where, PreTokenizer& out);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace coenc::tok
