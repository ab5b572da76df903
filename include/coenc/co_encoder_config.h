// config.json of a Co-Encoder checkpoint (docs/co_encoder.md): the tower's and the decoder's ModelConfig, the
// connector's pooling and ratio, the prompt layout. Parsed and written by the io layer (src/io/co_encoder_config.cpp)
// so that reading a checkpoint's or a .coctx file's settings needs no model; the model is built from it
// (coenc/co_encoder.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "coenc/model_config.h"
#include "coenc/types.h"

namespace coenc {

// How the connector turns T tower states into k vectors.
enum class PoolingMode {
  Dynamic,  // the seed's: k estimated per input in [min_output_size, max_output_size], sigmoid-weighted span means
  Mean,     // k = ceil(T / ratio), plain mean of contiguous spans of `ratio` tokens
  Attn,     // mean-pooled spans as queries of the tower's last used layer, over all its keys/values (ARC-Encoder)
};

enum class TowerAttention { Causal, Bidirectional };

// Where the [BOC] / [EOC] rows around the compressed vectors come from.
enum class ContextMarkers {
  Tokens,   // the decoder's embeddings of begin/end_of_context_token_id (the seed's)
  Learned,  // two connector parameters, connector.begin_of_context / end_of_context [d_text], trained with it
};

const char* pooling_mode_name(PoolingMode mode);

// config.json of a Co-Encoder checkpoint: the seed's CoEncoderConfig fields plus ours. Every field is checked
// when parsed; unknown fields and inconsistent values are errors naming the field.
struct CoEncoderConfig {
  // --- the seed's fields ---
  ModelConfig context;                // "context_config": the tower (any supported decoder architecture)
  ModelConfig text;                   // "text_config": the decoder
  int64_t context_feature_layer = -2; // index into Hugging Face's hidden_states tuple (0: embeddings, -1: last+norm)
  std::string hidden_act = "gelu";    // projector activation ("projector_hidden_act" / "connector_hidden_act")
  TokenId begin_of_context_token_id = 0;  // decoder token whose embedding opens the compressed block
  TokenId end_of_context_token_id = 0;    // ... and closes it
  // --- ours ---
  PoolingMode pooling = PoolingMode::Dynamic;  // "pooling": "dynamic" | "mean" | "attn"
  int64_t ratio = 4;            // "compression_ratio": tokens per vector (mean, attn; the dynamic size target)
  int64_t chunk_size = 512;     // "chunk_size": tokens per independently compressed chunk (<= tower positions)
  int64_t min_output_size = 32; // "min_output_size": dynamic pooling's lower bound on k (the seed's 32)
  int64_t max_output_size = 0;  // "max_output_size": its upper bound (the seed: tower max_position_embeddings)
  TowerAttention tower_attention = TowerAttention::Causal;  // "tower_attention": "causal" | "bidirectional"
  ContextMarkers context_markers = ContextMarkers::Tokens;  // "context_markers": "tokens" | "learned"
  // "prompt_layout": the layout the connector was trained with and `ask` uses by default: "raw" ([BOC] v [EOC]
  // question, the trainer's) or "chat" (the decoder's chat template around it). Empty (absent, as in the seed's
  // checkpoints): chat when the text tokenizer has a template, raw otherwise.
  std::string prompt_layout;
  // Optional: the tower / decoder live in another Hugging Face directory (relative to the checkpoint) instead of
  // being stored under context_tower.tower.* / language_model.* ("context_tower_path", "language_model_path").
  std::string context_tower_path, language_model_path;

  // Parses a config.json object; `where` names the file in error messages. Nested configs may be partial (the
  // seed's transformers 4 wrote text_config as a diff against LlamaConfig()): missing fields take the defaults
  // of their model_type, as transformers does when it reads them back. `dir` resolves *_path fields.
  static CoEncoderConfig from_json(const nlohmann::json& j, const std::string& where,
                                   const std::filesystem::path& dir = {});
  // Reads `dir/config.json`.
  static CoEncoderConfig load(const std::filesystem::path& dir);
  nlohmann::json to_json() const;

  // Tower layers whose output is the feature (HF hidden_states[context_feature_layer]), in [0, n_layers].
  int64_t feature_index() const;
};

// Whether `dir` holds a Co-Encoder checkpoint (its config.json says "model_type": "co_encoder"), as opposed to a
// plain decoder or anything else. Never throws: a missing or unreadable config is "no".
bool is_co_encoder_checkpoint(const std::filesystem::path& dir);

}  // namespace coenc
