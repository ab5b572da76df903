// libFuzzer target: a model directory's config.json and, after a NUL byte, its generation_config.json,
// through ModelConfig::load; an accepted config must count its parameters and write itself back.
#include <cstdint>

#include "coenc/model_config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    const std::filesystem::path dir = coenc::fuzz::target_dir("model_config");
    const coenc::fuzz::TwoFiles in = coenc::fuzz::split_at_nul(data, size);
    coenc::fuzz::write_bytes(dir / "config.json", in.first);
    std::error_code ec;
    if (in.has_second)
      coenc::fuzz::write_bytes(dir / "generation_config.json", in.second);
    else
      std::filesystem::remove(dir / "generation_config.json", ec);
    const coenc::ModelConfig c = coenc::ModelConfig::load(dir);
    COENC_FUZZ_EXPECT(c.n_params() > 0);
    for (coenc::TokenId id : c.eos_token_ids) COENC_FUZZ_EXPECT(id >= 0 && id < c.vocab_size);
    // What we accept we can write and read back unchanged.
    const coenc::ModelConfig back = coenc::ModelConfig::from_json(c.to_json(), "config.json (written back)");
    COENC_FUZZ_EXPECT(back.n_params() == c.n_params());
  });
}
