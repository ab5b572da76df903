// libFuzzer target: a tokenizer.json and, after a NUL byte, its tokenizer_config.json, through
// Tokenizer::load; a tokenizer that loads then encodes and decodes a short text.
#include <cstdint>

#include "coenc/tokenizer.h"
#include "fuzz_tokenizer_use.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::filesystem::path dir = coenc::fuzz::target_dir("tokenizer");
    const coenc::fuzz::TwoFiles in = coenc::fuzz::split_at_nul(data, size);
    coenc::fuzz::write_bytes(dir / "tokenizer.json", in.first);
    std::error_code ec;
    if (in.has_second)
      coenc::fuzz::write_bytes(dir / "tokenizer_config.json", in.second);
    else
      std::filesystem::remove(dir / "tokenizer_config.json", ec);
    coenc::fuzz::use_tokenizer(*coenc::Tokenizer::load(dir.string()));
  });
}
