// The GPT-2 byte-level alphabet: each of the 256 byte values is shown as one printable Unicode character, so
// that a byte-level BPE vocabulary is a set of ordinary strings ("Ġ" is the space byte 0x20, "Ċ" is 0x0A).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace coenc::tok {

// The code point that stands for byte `b` (the table of GPT-2's bytes_to_unicode()).
uint32_t byte_to_code_point(uint8_t b);

// The UTF-8 text of the character that stands for byte `b`.
const std::string& byte_to_unicode(uint8_t b);

// Maps raw bytes to their byte-level characters ("a b" -> "aĠb").
std::string bytes_to_byte_level(std::string_view bytes);

// Maps a byte-level string back to the bytes it stands for. Returns false, leaving `out` unspecified, if
// `text` holds a character outside the byte-level alphabet.
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace coenc::tok
