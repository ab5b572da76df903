#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

constexpr const char kReplacement[] = "\xEF\xBF\xBD";

// The allowed range of the second byte for each lead byte (Unicode Table 3-7); later bytes are 80..BF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

int expected_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// How many bytes starting at s[i] form a valid prefix of a sequence (the "maximal subpart" of the replacement
// rule); at least 1 for an invalid lead byte.
size_t valid_prefix(std::string_view s, size_t i) {
  auto lead = static_cast<unsigned char>(s[i]);
  int len = expected_length(lead);
  if (len <= 1) return 1;
  size_t k = 1;
  while (k < static_cast<size_t>(len) && i + k < s.size()) {
    auto b = static_cast<unsigned char>(s[i + k]);
    bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++k;
  }
  return k;
}

}  // namespace

int utf8_sequence_length(std::string_view s, size_t i) {
  auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return 1;
  int len = expected_length(lead);
  if (len == 0 || i + len > s.size()) return 0;
  return valid_prefix(s, i) == static_cast<size_t>(len) ? len : 0;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    int len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    int len = utf8_sequence_length(s, i);
    if (len > 0) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += kReplacement;
      i += valid_prefix(s, i);
    }
  }
  return out;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // A tail is incomplete when a lead byte in the last 3 bytes starts a valid prefix that runs to the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    size_t i = s.size() - back;
    auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: look further back for its lead
    int len = expected_length(b);
    if (len <= 1 || static_cast<size_t>(len) <= back) return 0;
    return valid_prefix(s, i) == back ? back : 0;
  }
  return 0;
}

uint32_t decode_code_point(std::string_view s, size_t i, int len) {
  auto b = [&](int k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace coenc::tok
