// UTF-8 helpers shared by the tokenizers: validation with the reference replacement rule, code point
// iteration and the completeness test streaming decode needs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace coenc::tok {

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there are not one.
// Overlong forms, surrogates and code points above U+10FFFF are invalid, as in Python and Rust.
int utf8_sequence_length(std::string_view s, size_t i);

// `s` with every maximal invalid subsequence replaced by U+FFFD (Python's `errors="replace"`, Rust's
// from_utf8_lossy). Returns `s` unchanged when it is valid.
std::string sanitize_utf8(std::string_view s);

// True if `s` is valid UTF-8.
bool is_valid_utf8(std::string_view s);

// Number of bytes at the end of `s` that are a proper prefix of a valid UTF-8 sequence (0..3): bytes that one
// more byte could complete into a character.
size_t incomplete_utf8_tail(std::string_view s);

// Decodes the code point of a valid sequence of `len` bytes at s[i].
uint32_t decode_code_point(std::string_view s, size_t i, int len);

// Appends the UTF-8 encoding of `cp` (a valid scalar value) to `out`.
void append_utf8(uint32_t cp, std::string& out);

}  // namespace coenc::tok
