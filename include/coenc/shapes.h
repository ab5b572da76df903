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

}  // namespace coenc
