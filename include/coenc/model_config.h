// The hyper-parameters of a decoder-only transformer, read from a Hugging Face config.json.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/types.h"

namespace coenc {

// Architectures we run, one row each in the architecture table (src/io/arch.cpp).
enum class Arch { Llama, Mistral, Qwen2, Qwen3 };

// Rotary position embedding and its scaling. Hugging Face writes these either as top-level `rope_theta` +
// `rope_scaling` (published checkpoints) or as one `rope_parameters` object (recent transformers); both parse
// into this struct.
struct RopeConfig {
  std::string type = "default";  // "default", "linear" or "llama3"
  double theta = 10000.0;
  double factor = 1.0;                 // linear, llama3
  double low_freq_factor = 1.0;        // llama3
  double high_freq_factor = 4.0;       // llama3
  int64_t original_max_position = 0;   // llama3: original_max_position_embeddings
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string architecture;  // as written in config.json, e.g. "LlamaForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // d_model
  int64_t intermediate_size = 0;  // MLP inner size
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // grouped-query attention: n_heads is a multiple of n_kv_heads
  int64_t head_dim = 0;    // defaults to hidden_size / n_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // bias on q/k/v projections (Qwen2: always)
  bool qk_norm = false;         // RMSNorm on q and k per head (Qwen3)
  std::optional<int64_t> sliding_window;  // Mistral: attend to the last `sliding_window` positions only
  std::string torch_dtype;      // dtype the checkpoint was saved in, informational
  std::optional<TokenId> bos_token_id;
  std::vector<TokenId> eos_token_ids;  // generation stops at any of these

  // Parses a config.json object; `where` names the file for error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  // Reads `dir/config.json` (and `dir/generation_config.json` for eos/bos when present).
  static ModelConfig load(const std::filesystem::path& dir);
  // Serialises back to the classic Hugging Face layout.
  nlohmann::json to_json() const;

  // Parameters in the decoder (embedding and head counted once when tied).
  int64_t n_params() const;
};

const char* arch_name(Arch arch);

}  // namespace coenc
