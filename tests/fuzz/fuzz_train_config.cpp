// libFuzzer target: a training config (coenc train --config) through TrainConfig::from_json, and the model
// configs it holds through the parsers the trainer hands them to.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/model_config.h"
#include "coenc/train.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return coenc::fuzz::run_one([&] {
    // coenc train turns malformed JSON into one error line before the config is looked at.
    const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return;
    const coenc::TrainConfig c = coenc::TrainConfig::from_json(j, "train.json");
    if (c.model_config.is_object()) coenc::ModelConfig::from_json(c.model_config, "train.json: model_config");
    if (c.co_encoder_config.is_object())
      coenc::CoEncoderConfig::from_json(c.co_encoder_config, "train.json: co_encoder_config",
                                        coenc::fuzz::target_dir("train_config"));
  });
}
