// The architecture table: every difference between the decoder families we run lives in one row here, not in
// `if` chains spread over the layers (as llama.cpp's llama-arch does).
#pragma once

#include <string>

#include "coenc/model_config.h"

namespace coenc {

struct ArchTraits {
  Arch arch;
  const char* hf_class;     // `architectures[0]` in config.json
  const char* model_type;   // `model_type` in config.json
  bool qkv_bias;            // q/k/v projections always carry a bias (else: config `attention_bias`, default false)
  bool qk_norm;             // per-head RMSNorm of q and k before RoPE
  bool tie_default;         // `tie_word_embeddings` when config.json does not say
  bool sliding_window;      // honours config `sliding_window`
  double rope_theta_default;
  double rms_norm_eps_default;
};

// The row for `arch`.
const ArchTraits& arch_traits(Arch arch);
// The row whose hf_class (or, failing that, model_type) matches; nullptr if none.
const ArchTraits* find_arch(const std::string& hf_class, const std::string& model_type);
// "LlamaForCausalLM, MistralForCausalLM, ..." for error messages.
std::string supported_arch_list();

}  // namespace coenc
