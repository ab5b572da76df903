// Named model shapes for benchmarks with random weights (no download needed): the published configurations
// of common checkpoints.
#pragma once

#include <string>

#include "coenc/model_config.h"

namespace coenc {

// "llama3-8b", "llama3.2-1b", "qwen2-0.5b", "qwen2.5-7b", "mistral-7b", "qwen3-0.6b", "tiny".
// Throws InvalidInput listing the known names.
ModelConfig named_shape(const std::string& name);
std::string named_shape_list();

// What one decoding step (one new token, batch 1) must read from memory, in bytes: every weight that takes
// part in the step (all layers, the final norm, the output head) but not the input embedding table, of which
// it reads one row; and the K and V of `context` cached positions. `element_bytes` is the size of a weight
// and of a cache element (2 for bf16). The memory-bandwidth bound of decoding is bandwidth / (weights + kv).
struct DecodeTraffic {
  double weight_bytes = 0;
  double kv_bytes = 0;
  double total() const { return weight_bytes + kv_bytes; }
};
DecodeTraffic decode_traffic(const ModelConfig& config, int64_t element_bytes, double context);

}  // namespace coenc
