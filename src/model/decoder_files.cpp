#include "coenc/checkpoint.h"
#include "coenc/decoder.h"
#include "coenc/error.h"

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
  return lm;
}

}  // namespace coenc
