// Reading and writing a decoder as a Hugging Face model directory (config.json + safetensors).
#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/safetensors.h"

namespace coenc {

DecoderLm load_decoder(const std::filesystem::path& dir, const DeviceOptions& options) {
  ModelConfig config = ModelConfig::load(dir);
  WeightSet weights = WeightSet::open(dir);
  DecoderLm lm(config, options);
  LoadRules rules;
  // Tied checkpoints sometimes still carry a copy of the embedding as lm_head.weight; transformers ignores it.
  if (config.tie_word_embeddings) rules.tolerated.insert("lm_head.weight");
  load_module_weights(*lm, weights, rules, dir.string());
  for (auto& p : lm->parameters()) p.set_requires_grad(false);
  lm->fuse_projections();
  return lm;
}

void save_decoder(const DecoderLm& lm, const std::filesystem::path& dir, torch::ScalarType storage,
                  int64_t max_shard_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  COENC_CHECK(!ec, "{}: cannot create the model directory: {}", dir.string(), ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : lm->named_parameters()) tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, storage));
  nlohmann::json config = lm->config().to_json();
  config["torch_dtype"] = storage == torch::kBFloat16 ? "bfloat16" : storage == torch::kFloat16 ? "float16" : "float32";
  write_model_weights(dir, tensors, max_shard_bytes);
  write_file_atomic(dir / "config.json", config.dump(2) + "\n");
}

}  // namespace coenc
