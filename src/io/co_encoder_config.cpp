// config.json of a Co-Encoder checkpoint: the seed's CoEncoderConfig fields, ours, and the generic fields that
// transformers' PretrainedConfig writes into every config.
#include <set>

#include "coenc/atomic_file.h"
#include "coenc/co_encoder_config.h"
#include "coenc/error.h"
#include "io/arch.h"

namespace coenc {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Fields the seed's CoEncoderConfig and transformers' PretrainedConfig (4.x and 5.x) may write; accepted and,
// apart from the ones parsed below, ignored.
const std::set<std::string> kKnownFields = {
    // the seed's
    "model_type", "context_config", "text_config", "context_feature_layer", "connector_hidden_act",
    "projector_hidden_act", "begin_of_context_token_id", "end_of_context_token_id", "ignore_index",
    "context_feature_select_strategy", "tie_word_embeddings",
    // ours
    "pooling", "compression_ratio", "chunk_size", "min_output_size", "max_output_size", "tower_attention",
    "context_markers", "prompt_layout", "context_tower_path", "language_model_path",
    // transformers' generic configuration attributes
    "architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "name_or_path", "auto_map",
    "_commit_hash", "_attn_implementation_autoset", "return_dict", "output_hidden_states", "output_attentions",
    "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
    "is_decoder", "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder", "finetuning_task",
    "id2label", "label2id", "num_labels", "problem_type", "tokenizer_class", "prefix", "bos_token_id",
    "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "initializer_range", "use_cache",
    // generation parameters transformers 4 kept in config.json
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens"};

const std::set<std::string> kActivations = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu",
                                            "swish"};

// transformers' class defaults of the fields ModelConfig reads, for nested configs written as a diff against
// them (transformers 4's to_diff_dict). transformers fills missing fields the same way when reading.
json model_type_defaults(const std::string& model_type) {
  json base = {{"vocab_size", 32000},       {"hidden_size", 4096},      {"intermediate_size", 11008},
               {"num_hidden_layers", 32},   {"num_attention_heads", 32}, {"max_position_embeddings", 2048},
               {"rms_norm_eps", 1e-6},      {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  if (model_type == "mistral") {
    base.update({{"intermediate_size", 14336}, {"num_key_value_heads", 8}, {"max_position_embeddings", 131072},
                 {"sliding_window", 4096}});
  } else if (model_type == "qwen2" || model_type == "qwen3") {
    base.update({{"vocab_size", 151936}, {"intermediate_size", 22016}, {"max_position_embeddings", 32768}});
    if (model_type == "qwen3") base["head_dim"] = 128;
  }
  return base;
}

ModelConfig nested_config(const json& j, const char* key, const std::string& where) {
  COENC_CHECK_CODE(j.contains(key) && !j[key].is_null(), NotFound, "{}: missing field \"{}\"", where, key);
  const json& nested = j[key];
  const std::string at = where + ": " + key;
  COENC_CHECK(nested.is_object(), "{} must be an object", at);
  std::string model_type = nested.contains("model_type") && nested["model_type"].is_string()
                               ? nested["model_type"].get<std::string>()
                               : "";
  json full = model_type_defaults(model_type);
  full.update(nested);
  return ModelConfig::from_json(full, at);
}

int64_t int_field(const json& j, const char* key, const std::string& where, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  COENC_CHECK(j[key].is_number_integer(), "{}: field \"{}\" must be an integer, got {}", where, key, j[key].dump());
  return j[key].get<int64_t>();
}

std::string string_field(const json& j, const char* key, const std::string& where, const std::string& fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  COENC_CHECK(j[key].is_string(), "{}: field \"{}\" must be a string, got {}", where, key, j[key].dump());
  return j[key].get<std::string>();
}

TokenId token_field(const json& j, const char* key, const std::string& where, const ModelConfig& text) {
  COENC_CHECK_CODE(j.contains(key) && !j[key].is_null(), NotFound,
                   "{}: missing field \"{}\" (the decoder token that marks the compressed block)", where, key);
  const int64_t id = int_field(j, key, where, 0);
  COENC_CHECK(id >= 0 && id < text.vocab_size, "{}: field \"{}\" = {} is outside the decoder vocabulary [0, {})",
              where, key, id, text.vocab_size);
  return static_cast<TokenId>(id);
}

}  // namespace

const char* pooling_mode_name(PoolingMode mode) {
  switch (mode) {
    case PoolingMode::Dynamic: return "dynamic";
    case PoolingMode::Mean: return "mean";
    case PoolingMode::Attn: return "attn";
  }
  return "?";
}

int64_t CoEncoderConfig::feature_index() const {
  return context_feature_layer < 0 ? context.n_layers + 1 + context_feature_layer : context_feature_layer;
}

CoEncoderConfig CoEncoderConfig::from_json(const json& j, const std::string& where, const fs::path& dir) {
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", where);
  for (auto it = j.begin(); it != j.end(); ++it)
    COENC_CHECK(kKnownFields.count(it.key()), "{}: unknown field \"{}\"", where, it.key());
  const std::string model_type = string_field(j, "model_type", where, "");
  COENC_CHECK(model_type == "co_encoder", "{}: field \"model_type\" must be \"co_encoder\", got \"{}\"", where,
              model_type);
  const std::string strategy = string_field(j, "context_feature_select_strategy", where, "default");
  COENC_CHECK(strategy == "default", "{}: field \"context_feature_select_strategy\" must be \"default\", got \"{}\"",
              where, strategy);

  CoEncoderConfig c;
  c.context_tower_path = string_field(j, "context_tower_path", where, "");
  c.language_model_path = string_field(j, "language_model_path", where, "");
  // A tower or decoder kept in its own directory brings its own config.json; an embedded one is nested here.
  c.context = c.context_tower_path.empty() ? nested_config(j, "context_config", where)
                                           : ModelConfig::load(dir / c.context_tower_path);
  c.text = c.language_model_path.empty() ? nested_config(j, "text_config", where)
                                         : ModelConfig::load(dir / c.language_model_path);

  c.context_feature_layer = int_field(j, "context_feature_layer", where, -2);
  const int64_t n = c.context.n_layers;
  COENC_CHECK(c.context_feature_layer >= -(n + 1) && c.context_feature_layer <= n,
              "{}: field \"context_feature_layer\" = {} is outside [-{}, {}] for a tower of {} layers", where,
              c.context_feature_layer, n + 1, n, n);

  // The seed's modeling code reads projector_hidden_act, its configuration writes connector_hidden_act; its
  // checkpoints carry both. They must agree.
  const std::string projector = string_field(j, "projector_hidden_act", where, "");
  const std::string connector = string_field(j, "connector_hidden_act", where, "");
  COENC_CHECK(projector.empty() || connector.empty() || projector == connector,
              "{}: fields \"projector_hidden_act\" (\"{}\") and \"connector_hidden_act\" (\"{}\") disagree", where,
              projector, connector);
  c.hidden_act = !projector.empty() ? projector : !connector.empty() ? connector : "gelu";
  COENC_CHECK_CODE(kActivations.count(c.hidden_act), Unsupported,
                   "{}: projector activation \"{}\" is not supported (expected gelu, gelu_new, gelu_pytorch_tanh, "
                   "relu or silu)", where, c.hidden_act);

  c.begin_of_context_token_id = token_field(j, "begin_of_context_token_id", where, c.text);
  c.end_of_context_token_id = token_field(j, "end_of_context_token_id", where, c.text);

  const std::string pooling = string_field(j, "pooling", where, "dynamic");
  if (pooling == "dynamic") c.pooling = PoolingMode::Dynamic;
  else if (pooling == "mean") c.pooling = PoolingMode::Mean;
  else if (pooling == "attn") c.pooling = PoolingMode::Attn;
  else fail(ErrorCode::InvalidInput, "{}: field \"pooling\" must be \"dynamic\", \"mean\" or \"attn\", got \"{}\"",
            where, pooling);
  COENC_CHECK(c.pooling != PoolingMode::Attn || c.feature_index() >= 1,
              "{}: pooling \"attn\" pools inside a tower layer, so \"context_feature_layer\" cannot select the "
              "embeddings", where);

  c.ratio = int_field(j, "compression_ratio", where, 4);
  COENC_CHECK(c.ratio >= 1, "{}: field \"compression_ratio\" must be at least 1, got {}", where, c.ratio);
  // The seed has no chunking: a whole context is one tower pass, so by default a chunk is as long as the tower
  // allows, at most 512 tokens.
  c.chunk_size = int_field(j, "chunk_size", where, std::min<int64_t>(512, c.context.max_position_embeddings));
  COENC_CHECK(c.chunk_size >= 1 && c.chunk_size <= c.context.max_position_embeddings,
              "{}: field \"chunk_size\" = {} must be in [1, {}] (context_config.max_position_embeddings)", where,
              c.chunk_size, c.context.max_position_embeddings);
  c.min_output_size = int_field(j, "min_output_size", where, 32);
  c.max_output_size = int_field(j, "max_output_size", where, c.context.max_position_embeddings);
  COENC_CHECK(c.min_output_size >= 1 && c.max_output_size >= c.min_output_size,
              "{}: fields \"min_output_size\" ({}) and \"max_output_size\" ({}) must satisfy 1 <= min <= max", where,
              c.min_output_size, c.max_output_size);

  const std::string attention = string_field(j, "tower_attention", where, "causal");
  COENC_CHECK(attention == "causal" || attention == "bidirectional",
              "{}: field \"tower_attention\" must be \"causal\" or \"bidirectional\", got \"{}\"", where, attention);
  c.tower_attention = attention == "causal" ? TowerAttention::Causal : TowerAttention::Bidirectional;

  const std::string markers = string_field(j, "context_markers", where, "tokens");
  COENC_CHECK(markers == "tokens" || markers == "learned",
              "{}: field \"context_markers\" must be \"tokens\" or \"learned\", got \"{}\"", where, markers);
  c.context_markers = markers == "tokens" ? ContextMarkers::Tokens : ContextMarkers::Learned;
  c.prompt_layout = string_field(j, "prompt_layout", where, "");
  COENC_CHECK(c.prompt_layout.empty() || c.prompt_layout == "raw" || c.prompt_layout == "chat",
              "{}: field \"prompt_layout\" must be \"raw\" or \"chat\", got \"{}\"", where, c.prompt_layout);
  return c;
}

bool is_co_encoder_checkpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / "config.json", ec)) return false;
  try {
    const auto j = nlohmann::json::parse(read_file_bytes(dir / "config.json", "config.json"), nullptr, false);
    return j.is_object() && j.contains("model_type") && j["model_type"] == "co_encoder";
  } catch (const Error&) {
    return false;
  }
}

CoEncoderConfig CoEncoderConfig::load(const fs::path& dir) {
  std::error_code ec;
  COENC_CHECK_CODE(fs::is_directory(dir, ec), NotFound, "{}: Co-Encoder directory not found", dir.string());
  const fs::path path = dir / "config.json";
  return from_json(read_json_file(path, "Co-Encoder config"), path.string(), dir);
}

json CoEncoderConfig::to_json() const {
  json j = {{"model_type", "co_encoder"},
            {"architectures", {"CoEncoderForConditionalGeneration"}},
            {"context_feature_layer", context_feature_layer},
            {"connector_hidden_act", hidden_act},
            {"projector_hidden_act", hidden_act},
            {"begin_of_context_token_id", begin_of_context_token_id},
            {"end_of_context_token_id", end_of_context_token_id},
            {"pooling", pooling_mode_name(pooling)},
            {"compression_ratio", ratio},
            {"chunk_size", chunk_size},
            {"min_output_size", min_output_size},
            {"max_output_size", max_output_size},
            {"tower_attention", tower_attention == TowerAttention::Causal ? "causal" : "bidirectional"},
            {"context_markers", context_markers == ContextMarkers::Tokens ? "tokens" : "learned"}};
  if (!prompt_layout.empty()) j["prompt_layout"] = prompt_layout;
  if (context_tower_path.empty()) j["context_config"] = context.to_json();
  else j["context_tower_path"] = context_tower_path;
  if (language_model_path.empty()) j["text_config"] = text.to_json();
  else j["language_model_path"] = language_model_path;
  return j;
}

}  // namespace coenc
