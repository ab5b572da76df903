// libFuzzer target: a .coctx file (a compressed document) through read_coctx.
#include <cstdint>

#include "coenc/coctx.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::filesystem::path path = coenc::fuzz::target_dir("coctx") / "doc.coctx";
    coenc::fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});
    const coenc::CompressedDocument doc = coenc::read_coctx(path);
    COENC_FUZZ_EXPECT(doc.chunks.size() == doc.chunk_tokens.size());
    COENC_FUZZ_EXPECT(doc.chunks.size() == doc.chunk_hashes.size());
    int64_t vectors = 0;
    for (const torch::Tensor& c : doc.chunks) {
      COENC_FUZZ_EXPECT(c.dim() == 2 && c.size(1) == doc.d_text);
      vectors += c.size(0);
    }
    COENC_FUZZ_EXPECT(vectors == doc.n_vectors());
  });
}
