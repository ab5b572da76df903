#include "coenc/model_config.h"

#include <limits>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "io/arch.h"

namespace coenc {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

int64_t get_int(const json& j, const char* key, const std::string& where, std::optional<int64_t> fallback = {}) {
  if (!j.contains(key) || j[key].is_null()) {
    COENC_CHECK_CODE(fallback.has_value(), NotFound, "{}: missing field \"{}\"", where, key);
    return *fallback;
  }
  const json& v = j[key];
  COENC_CHECK(v.is_number_integer(), "{}: field \"{}\" must be an integer, got {}", where, key, v.dump());
  return v.get<int64_t>();
}

int64_t get_positive(const json& j, const char* key, const std::string& where, std::optional<int64_t> fallback = {}) {
  int64_t v = get_int(j, key, where, fallback);
  COENC_CHECK(v > 0, "{}: field \"{}\" must be positive, got {}", where, key, v);
  return v;
}

double get_double(const json& j, const char* key, const std::string& where, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  COENC_CHECK(j[key].is_number(), "{}: field \"{}\" must be a number, got {}", where, key, j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& where, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  COENC_CHECK(j[key].is_boolean(), "{}: field \"{}\" must be true or false, got {}", where, key, j[key].dump());
  return j[key].get<bool>();
}

// Token ids may be an integer, a list of integers, or null.
std::vector<TokenId> get_token_ids(const json& j, const char* key, const std::string& where) {
  std::vector<TokenId> ids;
  if (!j.contains(key) || j[key].is_null()) return ids;
  const json& v = j[key];
  // Range-checked before narrowing to TokenId: 4294967297 must not become 1.
  auto id_of = [&](const json& x) {
    COENC_CHECK(x.is_number_integer(), "{}: field \"{}\" must hold integers, got {}", where, key, x.dump());
    COENC_CHECK(x.is_number_unsigned() || x.get<int64_t>() >= 0, "{}: field \"{}\" holds a negative token id {}",
                where, key, x.dump());
    COENC_CHECK(x.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<TokenId>::max()),
                "{}: field \"{}\": token id {} is out of range", where, key, x.dump());
    return static_cast<TokenId>(x.get<uint64_t>());
  };
  if (v.is_number()) {
    ids.push_back(id_of(v));
  } else {
    COENC_CHECK(v.is_array(), "{}: field \"{}\" must be an integer or a list of integers", where, key);
    for (const json& x : v) ids.push_back(id_of(x));
  }
  return ids;
}

RopeConfig parse_rope(const json& j, const std::string& where, double theta_default) {
  RopeConfig rope;
  rope.theta = get_double(j, "rope_theta", where, theta_default);
  // Two layouts: classic `rope_scaling` (null or an object) next to `rope_theta`, or `rope_parameters` holding
  // everything, including rope_theta (transformers >= 4.56 / 5).
  const json* params = nullptr;
  std::string field;
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    params = &j["rope_parameters"];
    field = "rope_parameters";
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    params = &j["rope_scaling"];
    field = "rope_scaling";
  }
  if (!params) return rope;
  const std::string at = where + ": " + field;
  COENC_CHECK(params->is_object(), "{} must be an object", at);
  if (params->contains("rope_theta")) rope.theta = get_double(*params, "rope_theta", at, rope.theta);
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (params->contains(key) && !(*params)[key].is_null()) {
      COENC_CHECK((*params)[key].is_string(), "{}: \"{}\" must be a string, got {}", at, key, (*params)[key].dump());
      type = (*params)[key].get<std::string>();
      break;
    }
  }
  rope.type = type;
  if (type == "default") return rope;
  if (type == "linear") {
    rope.factor = get_double(*params, "factor", at, 1.0);
    COENC_CHECK(rope.factor > 0, "{}: \"factor\" must be positive", at);
    return rope;
  }
  if (type == "llama3") {
    rope.factor = get_double(*params, "factor", at, 8.0);
    rope.low_freq_factor = get_double(*params, "low_freq_factor", at, 1.0);
    rope.high_freq_factor = get_double(*params, "high_freq_factor", at, 4.0);
    rope.original_max_position = get_positive(*params, "original_max_position_embeddings", at);
    COENC_CHECK(rope.high_freq_factor > rope.low_freq_factor,
                "{}: \"high_freq_factor\" must exceed \"low_freq_factor\"", at);
    return rope;
  }
  fail(ErrorCode::Unsupported, "{}: rope type \"{}\" is not supported (expected default, linear or llama3)", at, type);
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", where);
  ModelConfig c;
  std::string hf_class, model_type;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    hf_class = j["architectures"][0].get<std::string>();
  if (j.contains("model_type") && j["model_type"].is_string()) model_type = j["model_type"].get<std::string>();
  const ArchTraits* traits = find_arch(hf_class, model_type);
  if (!traits)
    fail(ErrorCode::Unsupported, "{}: architecture \"{}\" (model_type \"{}\") is not supported; expected one of {}",
         where, hf_class, model_type, supported_arch_list());
  c.arch = traits->arch;
  c.architecture = traits->hf_class;
  // Upper bounds keep every size product (parameter counts, allocations) far inside int64.
  auto bounded = [&](const char* key, int64_t v, int64_t max) {
    COENC_CHECK(v <= max, "{}: field \"{}\" is {}, more than any model this program can hold ({} at most)", where,
                key, v, max);
    return v;
  };
  c.vocab_size = bounded("vocab_size", get_positive(j, "vocab_size", where), std::numeric_limits<TokenId>::max());
  c.hidden_size = bounded("hidden_size", get_positive(j, "hidden_size", where), int64_t{1} << 20);
  c.intermediate_size = bounded("intermediate_size", get_positive(j, "intermediate_size", where), int64_t{1} << 22);
  c.n_layers = bounded("num_hidden_layers", get_positive(j, "num_hidden_layers", where), 4096);
  c.n_heads = bounded("num_attention_heads", get_positive(j, "num_attention_heads", where), 4096);
  c.n_kv_heads = bounded("num_key_value_heads", get_positive(j, "num_key_value_heads", where, c.n_heads), 4096);
  COENC_CHECK(c.n_heads % c.n_kv_heads == 0,
              "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", where, c.n_heads, c.n_kv_heads);
  if (!j.contains("head_dim") || j["head_dim"].is_null())
    COENC_CHECK(c.hidden_size % c.n_heads == 0,
                "{}: hidden_size ({}) must be a multiple of num_attention_heads ({}) when head_dim is absent", where,
                c.hidden_size, c.n_heads);
  c.head_dim = bounded("head_dim", get_positive(j, "head_dim", where, c.hidden_size / c.n_heads), 4096);
  c.max_position_embeddings =
      bounded("max_position_embeddings", get_positive(j, "max_position_embeddings", where, 2048), int64_t{1} << 24);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", where, traits->rms_norm_eps_default);
  COENC_CHECK(c.rms_norm_eps > 0, "{}: field \"rms_norm_eps\" must be positive", where);
  c.rope = parse_rope(j, where, traits->rope_theta_default);
  COENC_CHECK(c.rope.theta > 0, "{}: rope_theta must be positive", where);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, traits->tie_default);
  c.attention_bias = traits->qkv_bias || get_bool(j, "attention_bias", where, false);
  c.qk_norm = traits->qk_norm;
  if (traits->sliding_window && j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = get_positive(j, "sliding_window", where);
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key) && j[key].is_string()) c.torch_dtype = j[key].get<std::string>();
  auto bos = get_token_ids(j, "bos_token_id", where);
  if (!bos.empty()) c.bos_token_id = bos[0];
  for (const char* key : {"bos_token_id", "pad_token_id"})
    for (TokenId id : get_token_ids(j, key, where))
      COENC_CHECK(id < c.vocab_size, "{}: {} {} outside the vocabulary [0, {})", where, key, id, c.vocab_size);
  c.eos_token_ids = get_token_ids(j, "eos_token_id", where);
  for (TokenId id : c.eos_token_ids)
    COENC_CHECK(id >= 0 && id < c.vocab_size, "{}: eos_token_id {} outside the vocabulary [0, {})", where, id, c.vocab_size);
  return c;
}

ModelConfig ModelConfig::load(const fs::path& dir) {
  const fs::path path = dir / "config.json";
  std::error_code ec;
  COENC_CHECK_CODE(fs::is_directory(dir, ec), NotFound, "{}: model directory not found", dir.string());
  const json j = read_json_file(path, "model config");
  ModelConfig c = from_json(j, path.string());
  // generation_config.json, when present, says which tokens end a turn (often more than config.json lists).
  const fs::path gen = dir / "generation_config.json";
  if (fs::exists(gen, ec)) {
    const json g = read_json_file(gen, "generation config");
    COENC_CHECK(g.is_object(), "{}: expected a JSON object", gen.string());
    auto eos = get_token_ids(g, "eos_token_id", gen.string());
    for (TokenId id : eos) {
      COENC_CHECK(id >= 0 && id < c.vocab_size, "{}: eos_token_id {} outside the vocabulary [0, {})", gen.string(), id, c.vocab_size);
      if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end())
        c.eos_token_ids.push_back(id);
    }
    auto bos = get_token_ids(g, "bos_token_id", gen.string());
    for (TokenId id : bos)
      COENC_CHECK(id < c.vocab_size, "{}: bos_token_id {} outside the vocabulary [0, {})", gen.string(), id,
                  c.vocab_size);
    if (!bos.empty() && !c.bos_token_id) c.bos_token_id = bos[0];
  }
  return c;
}

json ModelConfig::to_json() const {
  const ArchTraits& t = arch_traits(arch);
  json j = {{"architectures", {t.hf_class}},
            {"model_type", t.model_type},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", n_layers},
            {"num_attention_heads", n_heads},
            {"num_key_value_heads", n_kv_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position_embeddings},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope.theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"attention_bias", attention_bias},
            {"hidden_act", "silu"}};
  if (rope.type == "default") {
    j["rope_scaling"] = nullptr;
  } else if (rope.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope.factor}};
  } else {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope.factor},
                         {"low_freq_factor", rope.low_freq_factor},
                         {"high_freq_factor", rope.high_freq_factor},
                         {"original_max_position_embeddings", rope.original_max_position}};
  }
  if (sliding_window) j["sliding_window"] = *sliding_window;
  if (!torch_dtype.empty()) j["torch_dtype"] = torch_dtype;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j;
}

int64_t ModelConfig::n_params() const {
  const int64_t q = hidden_size * n_heads * head_dim, kv = 2 * hidden_size * n_kv_heads * head_dim;
  const int64_t o = n_heads * head_dim * hidden_size, mlp = 3 * hidden_size * intermediate_size;
  const int64_t bias = attention_bias ? (n_heads + 2 * n_kv_heads) * head_dim : 0;
  const int64_t norms = 2 * hidden_size + (qk_norm ? 2 * head_dim : 0);
  const int64_t per_layer = q + kv + o + mlp + bias + norms;
  const int64_t embed = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2);
  return n_layers * per_layer + embed + hidden_size;
}

}  // namespace coenc
