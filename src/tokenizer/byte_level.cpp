#include "tokenizer/byte_level.h"

#include <unordered_map>

#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

struct ByteTables {
  std::array<uint32_t, 256> code_point{};
  std::array<std::string, 256> text;
  std::unordered_map<uint32_t, uint8_t> byte_of;

  ByteTables() {
    // Printable Latin-1 bytes stand for themselves; the rest (controls, space, 0x7F-0xA0, 0xAD) are moved to
    // U+0100 upwards in byte order, so that no byte is shown as whitespace or a control character.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_point[b] = printable ? static_cast<uint32_t>(b) : next++;
      append_utf8(code_point[b], text[b]);
      byte_of[code_point[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTables& tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

uint32_t byte_to_code_point(uint8_t b) {
  return tables().code_point[b];
}

const std::string& byte_to_unicode(uint8_t b) {
  return tables().text[b];
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.text[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
  const auto& t = tables();
  out.clear();
  size_t i = 0;
  while (i < text.size()) {
    int len = utf8_sequence_length(text, i);
    if (len == 0) return false;
    auto it = t.byte_of.find(decode_code_point(text, i, len));
    if (it == t.byte_of.end()) return false;
    out += static_cast<char>(it->second);
    i += len;
  }
  return true;
}

}  // namespace coenc::tok
