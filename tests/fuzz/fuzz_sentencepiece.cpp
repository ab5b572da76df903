// libFuzzer target: the bytes of a SentencePiece tokenizer.model through Tokenizer::load; a model that loads
// then encodes and decodes a short text. (libsentencepiece itself is not instrumented; our wrapper is.)
#include <cstdint>

#include "coenc/tokenizer.h"
#include "fuzz_tokenizer_use.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::filesystem::path path = coenc::fuzz::target_dir("sentencepiece") / "tokenizer.model";
    coenc::fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});
    coenc::fuzz::use_tokenizer(*coenc::Tokenizer::load(path.string()));
  });
}
