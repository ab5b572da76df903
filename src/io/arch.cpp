#include "io/arch.h"

#include "coenc/error.h"

namespace coenc {

namespace {

// clang-format off
const ArchTraits kArchTable[] = {
  // arch           hf_class              model_type  qkv_bias qk_norm tie    sliding theta     eps
  {Arch::Llama,   "LlamaForCausalLM",   "llama",    false,   false,  false, false,  10000.0,  1e-6},
  {Arch::Mistral, "MistralForCausalLM", "mistral",  false,   false,  false, true,   10000.0,  1e-6},
  {Arch::Qwen2,   "Qwen2ForCausalLM",   "qwen2",    true,    false,  false, false,  10000.0,  1e-6},
  {Arch::Qwen3,   "Qwen3ForCausalLM",   "qwen3",    false,   true,   false, false,  10000.0,  1e-6},
};
// clang-format on

}  // namespace

const ArchTraits& arch_traits(Arch arch) {
  for (const auto& t : kArchTable)
    if (t.arch == arch) return t;
  fail(ErrorCode::Internal, "architecture {} missing from the architecture table", static_cast<int>(arch));
}

const ArchTraits* find_arch(const std::string& hf_class, const std::string& model_type) {
  for (const auto& t : kArchTable)
    if (hf_class == t.hf_class) return &t;
  if (hf_class.empty())
    for (const auto& t : kArchTable)
      if (model_type == t.model_type) return &t;
  return nullptr;
}

std::string supported_arch_list() {
  std::string s;
  for (const auto& t : kArchTable) s += (s.empty() ? "" : ", ") + std::string(t.hf_class);
  return s;
}

const char* arch_name(Arch arch) { return arch_traits(arch).hf_class; }

}  // namespace coenc
