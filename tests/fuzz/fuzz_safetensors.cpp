// libFuzzer target: a safetensors file (8-byte header size, JSON header, data buffer) through
// SafetensorsFile::open, then every tensor it lists.
#include <cstdint>

#include "coenc/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::filesystem::path path = coenc::fuzz::target_dir("safetensors") / "model.safetensors";
    coenc::fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});
    auto file = coenc::SafetensorsFile::open(path);
    uint64_t covered = 0;
    for (const coenc::SafetensorsEntry& e : file->entries()) {
      torch::Tensor t = file->tensor(e.name);
      // An accepted entry is exactly what its shape and dtype say, inside the file.
      COENC_FUZZ_EXPECT(t.sizes().vec() == e.shape);
      COENC_FUZZ_EXPECT(static_cast<uint64_t>(t.numel()) * t.element_size() == e.end - e.begin);
      COENC_FUZZ_EXPECT(e.end <= size);
      covered += e.end - e.begin;
      // Touch every byte: a view past the mapping faults here.
      const auto* p = static_cast<const volatile uint8_t*>(t.data_ptr());
      uint8_t x = 0;
      for (uint64_t i = 0, n = e.end - e.begin; i < n; ++i) x ^= p[i];
      (void)x;
    }
    COENC_FUZZ_EXPECT(covered <= size);
  });
}
