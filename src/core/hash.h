// A fast 128-bit content hash for fingerprints and checksums (.coctx). Not cryptographic: it tells a file
// made by another model, or one damaged by a disk, a copy or a hand edit, from a good one; it does not stop
// an adversary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace coenc {

class Hasher {
 public:
  // Adds `n` bytes. Hashing a stream in pieces gives the same result as hashing it whole.
  void update(const void* data, size_t n);
  // Adds a length-prefixed string, so that ("ab", "c") and ("a", "bc") hash differently.
  void update_string(std::string_view s);
  void update_u64(uint64_t v);
  // 32 lowercase hex digits of the hash of everything added so far (the hasher can keep going).
  std::string hex() const;

 private:
  void round(uint64_t word);
  uint64_t a_ = 0x243F6A8885A308D3ull, b_ = 0x13198A2E03707344ull;  // two independent lanes (digits of pi)
  uint64_t length_ = 0;
  unsigned char tail_[8] = {};
  size_t tail_len_ = 0;
};

}  // namespace coenc
