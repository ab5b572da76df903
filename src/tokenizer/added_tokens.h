// Added tokens (the "added_tokens" of tokenizer.json, SentencePiece control pieces): strings matched in the
// input before normalisation and pre-tokenisation, each of which becomes one id.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "coenc/types.h"

namespace coenc::tok {

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool special = false;      // skipped by decode(skip_special); not matched when parse_special is off
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in normalized text rather than in the raw input
};

// A part of the input: either an added token's id, or a range of text to encode normally.
struct AddedTokenSplit {
  TokenId id = -1;        // >= 0 for an added token
  std::string_view text;  // when id < 0
};

// Finds added tokens in text with Hugging Face's rules: leftmost-longest matches, scanning on after each
// match; a match rejected by single_word (or a special token when special tokens are not parsed) is passed
// over as ordinary text.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  bool empty() const { return tokens_.empty(); }
  // Splits `text` into segments, appended to `out`; empty text ranges are left out.
  void split(std::string_view text, bool parse_special, std::vector<AddedTokenSplit>& out) const;

 private:
  // Longest token that starts at text[i]: its index in tokens_, or -1.
  int longest_at(std::string_view text, size_t i) const;

  std::vector<AddedToken> tokens_;
  // Trie over token bytes: node -> (byte -> child); terminal_[node] = token index or -1.
  std::vector<std::unordered_map<unsigned char, int>> trie_;
  std::vector<int> terminal_;
  bool first_byte_[256] = {};
};

}  // namespace coenc::tok
