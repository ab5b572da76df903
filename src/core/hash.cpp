#include "core/hash.h"

#include <algorithm>
#include <cstring>

namespace coenc {

namespace {

// xxHash64's primes and round function; the two lanes use them in different orders.
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull,
                   kP4 = 0x85EBCA77C2B2AE63ull;

uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

// splitmix64's finaliser: every input bit affects every output bit.
uint64_t avalanche(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

void Hasher::round(uint64_t w) {
  a_ = rotl(a_ + w * kP2, 31) * kP1;
  b_ = rotl(b_ ^ (w * kP3), 27) * kP4 + w;
}

void Hasher::update(const void* data, size_t n) {
  auto p = static_cast<const unsigned char*>(data);
  length_ += n;
  if (tail_len_ > 0) {
    const size_t take = std::min(n, 8 - tail_len_);
    std::memcpy(tail_ + tail_len_, p, take);
    tail_len_ += take;
    p += take;
    n -= take;
    if (tail_len_ < 8) return;
    uint64_t w;
    std::memcpy(&w, tail_, 8);
    round(w);
    tail_len_ = 0;
  }
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    round(w);
  }
  std::memcpy(tail_, p, n);
  tail_len_ = n;
}

void Hasher::update_u64(uint64_t v) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian everywhere
  update(bytes, 8);
}

void Hasher::update_string(std::string_view s) {
  update_u64(s.size());
  update(s.data(), s.size());
}

std::string Hasher::hex() const {
  Hasher h = *this;
  uint64_t last = 0;
  std::memcpy(&last, h.tail_, h.tail_len_);
  h.round(last ^ (static_cast<uint64_t>(h.tail_len_) << 56));
  h.round(h.length_);
  const uint64_t hi = avalanche(h.a_ ^ rotl(h.b_, 17)), lo = avalanche(h.b_ + h.a_ * kP1);
  static const char* digits = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[i] = digits[(hi >> (60 - 4 * i)) & 15];
    out[16 + i] = digits[(lo >> (60 - 4 * i)) & 15];
  }
  return out;
}

}  // namespace coenc
