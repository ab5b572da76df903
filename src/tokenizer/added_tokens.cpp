#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

// Rust's char::is_whitespace (Unicode White_Space), which Hugging Face uses for lstrip/rstrip.
bool is_white_space(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return true;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

// Rust's char::is_alphanumeric, approximated by the letter and number categories; single_word uses it.
bool is_word_char(uint32_t cp) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

// The code point that ends at byte `end` (exclusive) of valid UTF-8 text, and its start.
uint32_t code_point_before(std::string_view text, size_t end, size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  int len = utf8_sequence_length(text, start);
  return len > 0 ? decode_code_point(text, start, len) : 0xFFFD;
}

uint32_t code_point_at(std::string_view text, size_t i, size_t& next) {
  int len = utf8_sequence_length(text, i);
  next = i + (len > 0 ? len : 1);
  return len > 0 ? decode_code_point(text, i, len) : 0xFFFD;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  terminal_.push_back(-1);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    int node = 0;
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      auto it = trie_[node].find(c);
      if (it == trie_[node].end()) {
        trie_.emplace_back();
        terminal_.push_back(-1);
        int child = static_cast<int>(trie_.size()) - 1;
        trie_[node][c] = child;
        node = child;
      } else {
        node = it->second;
      }
    }
    // A later duplicate of the same content replaces the earlier one, as in Hugging Face's map.
    terminal_[node] = static_cast<int>(t);
  }
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t i) const {
  int node = 0, best = -1;
  for (size_t k = i; k < text.size(); ++k) {
    auto it = trie_[node].find(static_cast<unsigned char>(text[k]));
    if (it == trie_[node].end()) break;
    node = it->second;
    if (terminal_[node] >= 0) best = terminal_[node];
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, bool parse_special, std::vector<AddedTokenSplit>& out) const {
  auto emit_text = [&](size_t begin, size_t end) {
    if (end > begin) out.push_back({-1, text.substr(begin, end - begin)});
  };
  size_t done = 0;  // text before this offset has been emitted
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    int t = longest_at(text, i);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[t];
    size_t start = i, stop = i + tok.content.size();
    i = stop;  // the scan resumes after this match whether or not it is used
    if (tok.special && !parse_special) continue;
    if (tok.single_word) {
      size_t unused;
      bool word_before = start > 0 && is_word_char(code_point_before(text, start, unused));
      bool word_after = stop < text.size() && is_word_char(code_point_at(text, stop, unused));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      while (start > done) {
        size_t prev;
        if (!is_white_space(code_point_before(text, start, prev))) break;
        start = prev;
      }
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t next;
        if (!is_white_space(code_point_at(text, stop, next))) break;
        stop = next;
      }
      i = stop;
    }
    emit_text(done, start);
    out.push_back({tok.id, {}});
    done = stop;
  }
  emit_text(done, text.size());
}

}  // namespace coenc::tok
