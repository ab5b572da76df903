// A training config (coenc train CONFIG.json, docs/training.md) read into TrainConfig: every field once in one
// table (its name, whether only a Co-Encoder run takes it, and how it is read), then the checks every run needs,
// then those of a plain LM run or of a Co-Encoder run. Every error names the file and the field.
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "coenc/error.h"
#include "coenc/train.h"
#include "train/co_encoder_data.h"

namespace coenc {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

// What a field of type T takes, for the error line.
template <typename T>
std::string expected_kind() {
  if constexpr (std::is_same_v<T, bool>) {
    return "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    return format("an integer from {} to {}", std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  } else if constexpr (std::is_floating_point_v<T>) {
    return "a number";
  } else if constexpr (IsVector<T>::value) {
    return "an array, each item " + expected_kind<typename T::value_type>();
  } else {
    return "a string";
  }
}

// A JSON value as T, or false when its type or range does not fit T. Checked before converting: nlohmann turns a
// float into an integer field by a C++ cast, undefined behaviour out of range (docs/reliability.md, finding 4).
template <typename T>
bool convert(const json& v, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    out = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(u);
    } else if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if (i < 0 && (std::is_unsigned_v<T> || i < static_cast<int64_t>(std::numeric_limits<T>::min()))) return false;
      if (i >= 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(i);
    } else {
      return false;
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return false;
    const double d = v.get<double>();
    if (std::abs(d) > static_cast<double>(std::numeric_limits<T>::max())) return false;
    out = static_cast<T>(d);
  } else if constexpr (IsVector<T>::value) {
    if (!v.is_array()) return false;
    T items;
    for (const json& e : v) {
      typename T::value_type x;
      if (!convert(e, x)) return false;
      items.push_back(std::move(x));
    }
    out = std::move(items);
  } else {
    static_assert(std::is_same_v<T, std::string>, "read_field: add the conversion of this type");
    if (!v.is_string()) return false;
    out = v.get<std::string>();
  }
  return true;
}

template <typename T>
void read_field(const json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key)) return;
  COENC_CHECK(convert(j.at(key), out), "{}: field \"{}\" must be {}, got {}", where, key, expected_kind<T>(),
              j.at(key).dump());
}

// ---- the fields that are objects, each read by a function of its own ----

void read_objective(const json& j, TrainConfig&, const std::string& where) {  // the older "objective": "lm"
  std::string objective;
  read_field(j, "objective", objective, where);
  COENC_CHECK_CODE(objective == "lm", Unsupported,
                   "{}: objective \"{}\" is not supported (\"objective\" takes only \"lm\"; mix the Co-Encoder "
                   "objectives with \"objectives\": {{\"reconstruction\": w, ...}})",
                   where, objective);
}

void read_objectives(const json& j, TrainConfig& c, const std::string& where) {
  const json& o = j["objectives"];
  COENC_CHECK(o.is_object(), "{}: field \"objectives\" must be an object of weights, got {}", where, o.dump());
  c.objectives.clear();
  // The objectives' names, from their one list (src/train/co_encoder_data.h).
  static const std::pair<std::set<std::string>, std::string> known = [] {
    std::set<std::string> names;
    std::string list;
    for (int o = 0; o < data::kNumObjectives; ++o) {
      names.insert(data::objective_name(static_cast<data::Objective>(o)));
      list += (o ? ", " : "") + std::string(data::objective_name(static_cast<data::Objective>(o)));
    }
    return std::make_pair(names, list);
  }();
  double total = 0;
  for (const auto& item : o.items()) {
    COENC_CHECK(known.first.count(item.key()), "{}: unknown objective \"objectives.{}\" (expected {})", where,
                item.key(), known.second);
    COENC_CHECK(item.value().is_number() && item.value().get<double>() >= 0 &&
                    std::isfinite(item.value().get<double>()),
                "{}: field \"objectives.{}\" must be a weight >= 0, got {}", where, item.key(), item.value().dump());
    if (item.value().get<double>() > 0) c.objectives[item.key()] = item.value().get<double>();
    total += item.value().get<double>();
  }
  COENC_CHECK(total > 0, "{}: field \"objectives\" gives no objective a positive weight", where);
}

void read_co_encoder_config(const json& j, TrainConfig& c, const std::string& where) {
  c.co_encoder_config = j["co_encoder_config"];
  COENC_CHECK(c.co_encoder_config.is_object(), "{}: field \"co_encoder_config\" must be a config.json object",
              where);
}

// "train": {"connector": bool, "tower": "frozen" | "full" | "lora", "decoder": ...}
void read_train_parts(const json& j, TrainConfig& c, const std::string& where) {
  const json& t = j["train"];
  COENC_CHECK(t.is_object(), "{}: field \"train\" must be an object such as {{\"tower\": \"frozen\"}}, got {}", where,
              t.dump());
  for (const auto& item : t.items()) {
    const std::string key = item.key();
    COENC_CHECK(key == "connector" || key == "tower" || key == "decoder",
                "{}: unknown field \"train.{}\" (expected connector, tower, decoder)", where, key);
    if (key == "connector") {
      COENC_CHECK(item.value().is_boolean(), "{}: field \"train.connector\" must be true or false", where);
      c.train_connector = item.value().get<bool>();
      continue;
    }
    COENC_CHECK(item.value().is_string(), "{}: field \"train.{}\" must be \"frozen\", \"full\" or \"lora\", got {}",
                where, key, item.value().dump());
    const std::string v = item.value().get<std::string>();
    COENC_CHECK(v == "frozen" || v == "full" || v == "lora",
                "{}: field \"train.{}\" must be \"frozen\", \"full\" or \"lora\", got \"{}\"", where, key, v);
    (key == "tower" ? c.train_tower : c.train_decoder) = v;
  }
}

// "lr_scale": {"connector": x, "tower": y, "decoder": z}, each a number >= 0
void read_lr_scale(const json& j, TrainConfig& c, const std::string& where) {
  const json& t = j["lr_scale"];
  COENC_CHECK(t.is_object(), "{}: field \"lr_scale\" must be an object such as {{\"decoder\": 0.3}}, got {}", where,
              t.dump());
  for (const auto& item : t.items()) {
    const std::string key = item.key();
    double* scale = key == "connector" ? &c.lr_scale.connector
                    : key == "tower"   ? &c.lr_scale.tower
                    : key == "decoder" ? &c.lr_scale.decoder
                                       : nullptr;
    COENC_CHECK(scale, "{}: unknown field \"lr_scale.{}\" (expected connector, tower, decoder)", where, key);
    COENC_CHECK(item.value().is_number() && std::isfinite(item.value().get<double>()) &&
                    item.value().get<double>() >= 0,
                "{}: field \"lr_scale.{}\" must be a number >= 0 (a multiple of lr), got {}", where, key,
                item.value().dump());
    *scale = item.value().get<double>();
  }
}

void read_lora(const json& j, TrainConfig& c, const std::string& where) {
  const json& l = j["lora"];
  COENC_CHECK(l.is_object(), "{}: field \"lora\" must be an object such as {{\"rank\": 8, \"alpha\": 16}}, got {}",
              where, l.dump());
  for (const auto& item : l.items())
    COENC_CHECK(item.key() == "rank" || item.key() == "alpha" || item.key() == "targets",
                "{}: unknown field \"lora.{}\" (expected rank, alpha, targets)", where, item.key());
  const std::string lw = where + ": field \"lora\"";
  read_field(l, "rank", c.lora.rank, lw);
  read_field(l, "alpha", c.lora.alpha, lw);
  read_field(l, "targets", c.lora.targets, lw);
  COENC_CHECK(c.lora.rank > 0 && c.lora.alpha > 0, "{}: lora.rank and lora.alpha must be positive", where);
  COENC_CHECK(!c.lora.targets.empty(), "{}: lora.targets is empty", where);
  for (const auto& t : c.lora.targets)
    COENC_CHECK(t == "q_proj" || t == "k_proj" || t == "v_proj" || t == "o_proj" || t == "gate_proj" ||
                    t == "up_proj" || t == "down_proj",
                "{}: unknown lora.targets entry \"{}\" (expected q_proj, k_proj, v_proj, o_proj, gate_proj, "
                "up_proj, down_proj)",
                where, t);
}

// ---- the table ----

using Reader = void (*)(const json&, TrainConfig&, const std::string&);
using Member = std::variant<std::string TrainConfig::*, int64_t TrainConfig::*, uint64_t TrainConfig::*,
                            double TrainConfig::*, bool TrainConfig::*, std::vector<std::string> TrainConfig::*,
                            std::vector<int64_t> TrainConfig::*, json TrainConfig::*, Reader>;
struct Field {
  const char* name;
  bool co_encoder_only;  // a plain LM run refuses it
  Member member;         // a plain member, read with read_field, or a reader of its own
};

constexpr bool kAny = false, kCoEncoder = true;
const std::vector<Field>& fields() {
  using C = TrainConfig;
  static const std::vector<Field> table = {
      // every run
      {"objective", kAny, Reader{read_objective}},
      {"objectives", kAny, Reader{read_objectives}},
      {"init_from", kAny, &C::init_from},
      {"model_config", kAny, &C::model_config},
      {"tokenizer", kAny, &C::tokenizer},
      {"train_files", kAny, &C::train_files},
      {"eval_fraction", kAny, &C::eval_fraction},
      {"out", kAny, &C::out},
      {"seq_len", kAny, &C::seq_len},
      {"batch_size", kAny, &C::batch_size},
      {"grad_accum", kAny, &C::grad_accum},
      {"steps", kAny, &C::steps},
      {"lr", kAny, &C::lr},
      {"min_lr_ratio", kAny, &C::min_lr_ratio},
      {"warmup_steps", kAny, &C::warmup_steps},
      {"weight_decay", kAny, &C::weight_decay},
      {"beta1", kAny, &C::beta1},
      {"beta2", kAny, &C::beta2},
      {"grad_clip", kAny, &C::grad_clip},
      {"eval_every", kAny, &C::eval_every},
      {"eval_batches", kAny, &C::eval_batches},
      {"seed", kAny, &C::seed},
      {"device", kAny, &C::device},
      {"progress", kAny, &C::progress},
      {"autocast", kAny, &C::autocast},
      {"time_budget_s", kAny, &C::time_budget_s},
      {"max_shard_mb", kAny, &C::max_shard_mb},
      // a Co-Encoder run only
      {"co_encoder", kCoEncoder, &C::co_encoder},
      {"co_encoder_config", kCoEncoder, Reader{read_co_encoder_config}},
      {"tower_from", kCoEncoder, &C::tower_from},
      {"tower_layers", kCoEncoder, &C::tower_layers},
      {"decoder_from", kCoEncoder, &C::decoder_from},
      {"init_std", kCoEncoder, &C::init_std},
      {"context_tokenizer", kCoEncoder, &C::context_tokenizer},
      {"text_tokenizer", kCoEncoder, &C::text_tokenizer},
      {"qa_files", kCoEncoder, &C::qa_files},
      {"train", kCoEncoder, Reader{read_train_parts}},
      {"lr_scale", kCoEncoder, Reader{read_lr_scale}},
      {"context_tokens", kCoEncoder, &C::context_tokens},
      {"min_context_tokens", kCoEncoder, &C::min_context_tokens},
      {"continuation_tokens", kCoEncoder, &C::continuation_tokens},
      {"max_context_tokens", kCoEncoder, &C::max_context_tokens},
      {"passkey_tokens", kCoEncoder, &C::passkey_tokens},
      {"lm_tokens", kCoEncoder, &C::lm_tokens},
      {"compression_ratios", kCoEncoder, &C::compression_ratios},
      {"size_loss_weight", kCoEncoder, &C::size_loss_weight},
      {"distill", kCoEncoder, &C::distill},
      {"log_every", kCoEncoder, &C::log_every},
      {"save_every", kCoEncoder, &C::save_every},
      {"resume", kCoEncoder, &C::resume},
      {"stop_after", kCoEncoder, &C::stop_after},
      {"lora", kCoEncoder, Reader{read_lora}},
      {"activation_checkpointing", kCoEncoder, &C::activation_checkpointing},
      {"embed_tower", kCoEncoder, &C::embed_tower},
      {"embed_decoder", kCoEncoder, &C::embed_decoder},
      {"save_dtype", kCoEncoder, &C::save_dtype},
  };
  return table;
}

const Field* find_field(const std::string& name) {
  for (const Field& f : fields())
    if (name == f.name) return &f;
  return nullptr;
}

// Relative paths are relative to the config file's folder, so a config travels with its data.
void resolve_paths(TrainConfig& c, const std::string& where) {
  const fs::path base = fs::path(where).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && fs::path(p).is_relative() && !base.empty()) p = (base / p).string();
  };
  for (std::string* p : {&c.init_from, &c.tokenizer, &c.out, &c.co_encoder, &c.tower_from, &c.decoder_from,
                         &c.context_tokenizer, &c.text_tokenizer})
    resolve(*p);
  for (auto& f : c.train_files) resolve(f);
  for (auto& f : c.qa_files) resolve(f);
}

// Values every run checks.
void check_any_run(const TrainConfig& c, const std::string& where) {
  COENC_CHECK(c.time_budget_s >= 0, "{}: time_budget_s must be >= 0 (0: no budget), got {}", where, c.time_budget_s);
  for (int64_t r : c.compression_ratios)
    COENC_CHECK(r >= 1, "{}: field \"compression_ratios\" holds {}; every ratio must be >= 1", where, r);
  COENC_CHECK(c.tower_layers >= 0, "{}: tower_layers must be >= 0 (0: all of the tower's layers), got {}", where,
              c.tower_layers);
  COENC_CHECK(c.autocast == "none" || c.autocast == "bf16" || c.autocast == "f16",
              "{}: field \"autocast\" must be \"none\", \"bf16\" or \"f16\", got \"{}\"", where, c.autocast);
  COENC_CHECK(c.max_shard_mb >= 0 && std::isfinite(c.max_shard_mb),
              "{}: field \"max_shard_mb\" must be >= 0 (0: one model.safetensors), got {}", where, c.max_shard_mb);
  COENC_CHECK(c.save_dtype == "f32" || c.save_dtype == "bf16",
              "{}: field \"save_dtype\" must be \"f32\" or \"bf16\", got \"{}\"", where, c.save_dtype);
  COENC_CHECK(!c.out.empty(), "{}: missing field \"out\"", where);
  COENC_CHECK(c.steps > 0, "{}: steps must be positive, got {}", where, c.steps);
  COENC_CHECK(c.grad_accum > 0 && c.batch_size > 0 && c.batch_size % c.grad_accum == 0,
              "{}: batch_size ({}) must be a positive multiple of grad_accum ({})", where, c.batch_size, c.grad_accum);
  COENC_CHECK(c.lr > 0 && c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1, "{}: need lr > 0 and 0 <= min_lr_ratio <= 1",
              where);
  COENC_CHECK(c.warmup_steps >= 0 && c.eval_every > 0 && c.eval_batches > 0,
              "{}: warmup_steps must be >= 0, eval_every and eval_batches positive", where);
}

// A plain decoder LM run: objective lm, a decoder from init_from or model_config, one tokenizer.
void check_lm_run(const TrainConfig& c, const json& j, const std::string& where) {
  for (const Field& f : fields())
    COENC_CHECK_CODE(!f.co_encoder_only || !j.contains(f.name), Unsupported,
                     "{}: field \"{}\" applies to the Co-Encoder objectives only (give \"co_encoder\" or "
                     "\"co_encoder_config\")",
                     where, f.name);
  for (const auto& [name, w] : c.objectives)
    COENC_CHECK_CODE(name == "lm", Unsupported,
                     "{}: objective \"{}\" needs a Co-Encoder: give \"co_encoder\" (a checkpoint directory) or "
                     "\"co_encoder_config\"",
                     where, name);
  COENC_CHECK(c.init_from.empty() != c.model_config.is_null(),
              "{}: give exactly one of \"init_from\" (a model directory) and \"model_config\" (a config.json "
              "object)",
              where);
  COENC_CHECK(!c.tokenizer.empty(), "{}: missing field \"tokenizer\"", where);
  COENC_CHECK(c.seq_len > 1, "{}: seq_len must be at least 2, got {}", where, c.seq_len);
}

// A Co-Encoder run: where its model and tokenizers come from, what its objectives read, what trains.
void check_co_encoder_run(TrainConfig& c, const json& j, const std::string& where) {
  COENC_CHECK(c.co_encoder.empty() || c.co_encoder_config.is_null(),
              "{}: give one of \"co_encoder\" (a checkpoint directory) and \"co_encoder_config\", not both", where);
  COENC_CHECK(c.init_from.empty() && c.model_config.is_null(),
              "{}: fields \"init_from\" / \"model_config\" describe a plain decoder; a Co-Encoder run takes "
              "\"co_encoder\" or \"co_encoder_config\" (with \"tower_from\" / \"decoder_from\")",
              where);
  COENC_CHECK(c.co_encoder.empty() || (c.tower_from.empty() && c.decoder_from.empty()),
              "{}: fields \"tower_from\" / \"decoder_from\" go with \"co_encoder_config\"; the \"co_encoder\" "
              "checkpoint already holds its tower and decoder",
              where);
  COENC_CHECK(c.tokenizer.empty() || (c.context_tokenizer.empty() && c.text_tokenizer.empty()),
              "{}: give \"tokenizer\" (both sides) or \"context_tokenizer\" / \"text_tokenizer\", not both", where);
  if (!c.tokenizer.empty()) c.context_tokenizer = c.text_tokenizer = c.tokenizer;
  const bool text_objective = c.objectives.count("reconstruction") || c.objectives.count("continuation") ||
                              c.objectives.count("lm") || c.objectives.count("passkey") ||
                              c.objectives.count("lookup") || c.objectives.count("lookup_text") ||
                              c.objectives.count("cloze") || c.objectives.count("cloze_text");
  COENC_CHECK(!text_objective || !c.train_files.empty(),
              "{}: objectives reconstruction / continuation / lm / passkey / lookup / lookup_text / cloze / "
              "cloze_text read "
              "\"train_files\" (plain text), none given",
              where);
  const bool qa_objective = c.objectives.count("qa") || c.objectives.count("qa_text");
  COENC_CHECK(!qa_objective || !c.qa_files.empty(), "{}: objectives qa / qa_text read \"qa_files\" (JSONL), none given",
              where);
  COENC_CHECK(c.train_files.empty() || text_objective,
              "{}: field \"train_files\" is given but no objective reads it (reconstruction, continuation, lm, "
              "passkey, lookup, lookup_text, cloze, cloze_text)",
              where);
  COENC_CHECK(c.qa_files.empty() || qa_objective,
              "{}: field \"qa_files\" is given but objectives qa / qa_text have no weight", where);
  COENC_CHECK(c.train_connector || c.train_tower != "frozen" || c.train_decoder != "frozen",
              "{}: field \"train\" leaves nothing to train", where);
  for (const auto& [part, scale, trains] :
       {std::tuple<const char*, double, bool>{"connector", c.lr_scale.connector, c.train_connector},
        {"tower", c.lr_scale.tower, c.train_tower != "frozen"},
        {"decoder", c.lr_scale.decoder, c.train_decoder != "frozen"}})
    COENC_CHECK(scale == 1 || trains, "{}: field \"lr_scale.{}\" is given but \"train\" leaves the {} frozen", where,
                part, part);
  for (const char* o : {"lm", "qa_text", "lookup_text", "cloze_text"})
    COENC_CHECK(!c.objectives.count(o) || c.train_decoder != "frozen",
                "{}: objective \"{}\" trains the decoder alone: it needs \"train\": {{\"decoder\": \"full\"}} or "
                "\"lora\"",
                where, o);
  COENC_CHECK(c.tower_layers == 0 || !c.tower_from.empty(),
              "{}: field \"tower_layers\" keeps the first layers of \"tower_from\", which is not given", where);
  COENC_CHECK(!j.contains("lora") || c.train_tower == "lora" || c.train_decoder == "lora",
              "{}: field \"lora\" is given but neither train.tower nor train.decoder is \"lora\"", where);
  COENC_CHECK(c.context_tokens >= 0 && c.max_context_tokens >= 0 && c.passkey_tokens >= 0 && c.lm_tokens >= 0,
              "{}: context_tokens, max_context_tokens, passkey_tokens and lm_tokens must be >= 0 (0: the default)",
              where);
  COENC_CHECK(c.min_context_tokens >= 0 &&
                  (c.min_context_tokens == 0 || c.context_tokens == 0 || c.min_context_tokens <= c.context_tokens),
              "{}: min_context_tokens ({}) must be >= 0 and at most context_tokens ({})", where, c.min_context_tokens,
              c.context_tokens);
  COENC_CHECK(c.continuation_tokens >= 1, "{}: continuation_tokens must be at least 1, got {}", where,
              c.continuation_tokens);
  COENC_CHECK(c.size_loss_weight >= 0, "{}: size_loss_weight must be >= 0, got {}", where, c.size_loss_weight);
  COENC_CHECK(c.distill >= 0 && std::isfinite(c.distill), "{}: distill must be a weight >= 0, got {}", where,
              c.distill);
  COENC_CHECK(c.distill == 0 || c.objectives.count("continuation") || c.objectives.count("qa"),
              "{}: field \"distill\" teaches the continuation and qa examples, but neither objective has a weight",
              where);
  COENC_CHECK(c.log_every >= 0 && c.save_every >= 0 && c.stop_after >= 0,
              "{}: log_every, save_every and stop_after must be >= 0", where);
  COENC_CHECK(c.init_std > 0, "{}: init_std must be positive, got {}", where, c.init_std);
  if (c.log_every == 0) c.log_every = c.eval_every;
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", where);
  for (const auto& item : j.items())
    COENC_CHECK(find_field(item.key()), "{}: unknown field \"{}\"", where, item.key());
  COENC_CHECK(!(j.contains("objective") && j.contains("objectives")),
              "{}: give \"objectives\" (weights) or the older \"objective\", not both", where);
  TrainConfig c;
  c.source = j;
  for (const Field& f : fields()) {
    if (!j.contains(f.name)) continue;
    std::visit(
        [&](auto member) {
          using M = decltype(member);
          if constexpr (std::is_same_v<M, Reader>) member(j, c, where);
          else if constexpr (std::is_same_v<M, json TrainConfig::*>) c.*member = j[f.name];  // any JSON, checked later
          else read_field(j, f.name, c.*member, where);
        },
        f.member);
  }
  resolve_paths(c, where);
  check_any_run(c, where);
  if (c.co_encoder_mode()) check_co_encoder_run(c, j, where);
  else check_lm_run(c, j, where);
  return c;
}

}  // namespace coenc
