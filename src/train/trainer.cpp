// The training loop: AdamW, linear warm-up then cosine decay, gradient accumulation and clipping, periodic
// held-out evaluation, metrics as JSON lines, and the model written as a Hugging Face directory at the end.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <set>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "coenc/train.h"
#include "core/progress.h"
#include "core/torch_compat.h"
#include "train/co_encoder_trainer.h"
#include "train/text_dataset.h"

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

}  // namespace

// Linear warm-up to the peak, then cosine decay to peak x min_ratio at the last step.
double learning_rate(const TrainConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double span = std::max<int64_t>(1, c.steps - c.warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
}

namespace {

torch::Tensor lm_loss(DecoderLm& lm, const torch::Tensor& x, const torch::Tensor& y) {
  torch::Tensor logits = lm->logits(lm->forward_hidden(lm->embed(x), ForwardArgs{}));  // [B, T, V] f32
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), y.view({-1}));
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", where);
  // The fields of the plain LM trainer, and those only a Co-Encoder run takes.
  static const std::set<std::string> lm_fields = {
      "objective", "objectives", "init_from", "model_config", "tokenizer", "train_files", "eval_fraction",
      "out", "seq_len", "batch_size", "grad_accum", "steps", "lr", "min_lr_ratio", "warmup_steps",
      "weight_decay", "beta1", "beta2", "grad_clip", "eval_every", "eval_batches", "seed", "device",
      "progress", "autocast", "time_budget_s", "max_shard_mb"};
  static const std::set<std::string> co_encoder_only = {
      "co_encoder", "co_encoder_config", "tower_from", "tower_layers", "decoder_from", "init_std",
      "context_tokenizer", "text_tokenizer", "qa_files", "train", "context_tokens", "min_context_tokens",
      "continuation_tokens", "max_context_tokens", "passkey_tokens",
      "lm_tokens", "compression_ratios", "size_loss_weight", "log_every",
      "save_every", "resume", "stop_after", "lora", "activation_checkpointing", "embed_tower",
      "embed_decoder", "save_dtype"};
  for (const auto& item : j.items())
    COENC_CHECK(lm_fields.count(item.key()) || co_encoder_only.count(item.key()), "{}: unknown field \"{}\"",
                where, item.key());
  TrainConfig c;
  c.source = j;
  COENC_CHECK(!(j.contains("objective") && j.contains("objectives")),
              "{}: give \"objectives\" (weights) or the older \"objective\", not both", where);
  if (j.contains("objective")) {
    std::string objective;
    read_field(j, "objective", objective, where);
    COENC_CHECK_CODE(objective == "lm", Unsupported,
                     "{}: objective \"{}\" is not supported (\"objective\" takes only \"lm\"; mix the Co-Encoder "
                     "objectives with \"objectives\": {{\"reconstruction\": w, ...}})",
                     where, objective);
  }
  if (j.contains("objectives")) {
    const json& o = j["objectives"];
    COENC_CHECK(o.is_object(), "{}: field \"objectives\" must be an object of weights, got {}", where, o.dump());
    c.objectives.clear();
    static const std::set<std::string> names = {"reconstruction", "continuation", "qa", "qa_text", "lm",
                                                "passkey"};
    double total = 0;
    for (const auto& item : o.items()) {
      COENC_CHECK(
          names.count(item.key()),
          "{}: unknown objective \"objectives.{}\" (expected reconstruction, continuation, qa, qa_text, lm, "
          "passkey)",
          where, item.key());
      COENC_CHECK(item.value().is_number() && item.value().get<double>() >= 0 &&
                      std::isfinite(item.value().get<double>()),
                  "{}: field \"objectives.{}\" must be a weight >= 0, got {}", where, item.key(), item.value().dump());
      if (item.value().get<double>() > 0) c.objectives[item.key()] = item.value().get<double>();
      total += item.value().get<double>();
    }
    COENC_CHECK(total > 0, "{}: field \"objectives\" gives no objective a positive weight", where);
  }
  read_field(j, "init_from", c.init_from, where);
  if (j.contains("model_config")) c.model_config = j["model_config"];
  read_field(j, "tokenizer", c.tokenizer, where);
  read_field(j, "train_files", c.train_files, where);
  read_field(j, "eval_fraction", c.eval_fraction, where);
  read_field(j, "out", c.out, where);
  read_field(j, "seq_len", c.seq_len, where);
  read_field(j, "batch_size", c.batch_size, where);
  read_field(j, "grad_accum", c.grad_accum, where);
  read_field(j, "steps", c.steps, where);
  read_field(j, "lr", c.lr, where);
  read_field(j, "min_lr_ratio", c.min_lr_ratio, where);
  read_field(j, "warmup_steps", c.warmup_steps, where);
  read_field(j, "weight_decay", c.weight_decay, where);
  read_field(j, "beta1", c.beta1, where);
  read_field(j, "beta2", c.beta2, where);
  read_field(j, "grad_clip", c.grad_clip, where);
  read_field(j, "eval_every", c.eval_every, where);
  read_field(j, "eval_batches", c.eval_batches, where);
  read_field(j, "seed", c.seed, where);
  read_field(j, "device", c.device, where);
  read_field(j, "progress", c.progress, where);
  read_field(j, "co_encoder", c.co_encoder, where);
  if (j.contains("co_encoder_config")) {
    c.co_encoder_config = j["co_encoder_config"];
    COENC_CHECK(c.co_encoder_config.is_object(), "{}: field \"co_encoder_config\" must be a config.json object",
                where);
  }
  read_field(j, "tower_from", c.tower_from, where);
  read_field(j, "decoder_from", c.decoder_from, where);
  read_field(j, "init_std", c.init_std, where);
  read_field(j, "context_tokenizer", c.context_tokenizer, where);
  read_field(j, "text_tokenizer", c.text_tokenizer, where);
  read_field(j, "qa_files", c.qa_files, where);
  read_field(j, "context_tokens", c.context_tokens, where);
  read_field(j, "min_context_tokens", c.min_context_tokens, where);
  read_field(j, "continuation_tokens", c.continuation_tokens, where);
  read_field(j, "max_context_tokens", c.max_context_tokens, where);
  read_field(j, "passkey_tokens", c.passkey_tokens, where);
  read_field(j, "lm_tokens", c.lm_tokens, where);
  read_field(j, "size_loss_weight", c.size_loss_weight, where);
  read_field(j, "log_every", c.log_every, where);
  read_field(j, "save_every", c.save_every, where);
  read_field(j, "resume", c.resume, where);
  read_field(j, "stop_after", c.stop_after, where);
  read_field(j, "time_budget_s", c.time_budget_s, where);
  COENC_CHECK(c.time_budget_s >= 0, "{}: time_budget_s must be >= 0 (0: no budget), got {}", where,
              c.time_budget_s);
  read_field(j, "tower_layers", c.tower_layers, where);
  read_field(j, "compression_ratios", c.compression_ratios, where);
  for (int64_t r : c.compression_ratios)
    COENC_CHECK(r >= 1, "{}: field \"compression_ratios\" holds {}; every ratio must be >= 1", where, r);
  COENC_CHECK(c.tower_layers >= 0, "{}: tower_layers must be >= 0 (0: all of the tower's layers), got {}",
              where, c.tower_layers);
  if (j.contains("train")) {
    const json& t = j["train"];
    COENC_CHECK(t.is_object(), "{}: field \"train\" must be an object such as {{\"tower\": \"frozen\"}}, got {}",
                where, t.dump());
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
  if (j.contains("lora")) {
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
  read_field(j, "autocast", c.autocast, where);
  COENC_CHECK(c.autocast == "none" || c.autocast == "bf16" || c.autocast == "f16",
              "{}: field \"autocast\" must be \"none\", \"bf16\" or \"f16\", got \"{}\"", where, c.autocast);
  read_field(j, "activation_checkpointing", c.activation_checkpointing, where);
  read_field(j, "embed_tower", c.embed_tower, where);
  read_field(j, "embed_decoder", c.embed_decoder, where);
  read_field(j, "save_dtype", c.save_dtype, where);
  read_field(j, "max_shard_mb", c.max_shard_mb, where);
  COENC_CHECK(c.max_shard_mb >= 0 && std::isfinite(c.max_shard_mb),
              "{}: field \"max_shard_mb\" must be >= 0 (0: one model.safetensors), got {}", where, c.max_shard_mb);
  COENC_CHECK(c.save_dtype == "f32" || c.save_dtype == "bf16",
              "{}: field \"save_dtype\" must be \"f32\" or \"bf16\", got \"{}\"", where, c.save_dtype);
  // Relative paths are relative to the config file's folder, so a config travels with its data.
  const fs::path base = fs::path(where).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && fs::path(p).is_relative() && !base.empty()) p = (base / p).string();
  };
  for (std::string* p : {&c.init_from, &c.tokenizer, &c.out, &c.co_encoder, &c.tower_from, &c.decoder_from,
                         &c.context_tokenizer, &c.text_tokenizer})
    resolve(*p);
  for (auto& f : c.train_files) resolve(f);
  for (auto& f : c.qa_files) resolve(f);

  COENC_CHECK(!c.out.empty(), "{}: missing field \"out\"", where);
  COENC_CHECK(c.steps > 0, "{}: steps must be positive, got {}", where, c.steps);
  COENC_CHECK(c.grad_accum > 0 && c.batch_size > 0 && c.batch_size % c.grad_accum == 0,
              "{}: batch_size ({}) must be a positive multiple of grad_accum ({})", where, c.batch_size, c.grad_accum);
  COENC_CHECK(c.lr > 0 && c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1, "{}: need lr > 0 and 0 <= min_lr_ratio <= 1",
              where);
  COENC_CHECK(c.warmup_steps >= 0 && c.eval_every > 0 && c.eval_batches > 0,
              "{}: warmup_steps must be >= 0, eval_every and eval_batches positive", where);

  if (!c.co_encoder_mode()) {
    for (const auto& key : co_encoder_only)
      COENC_CHECK_CODE(!j.contains(key), Unsupported,
                       "{}: field \"{}\" applies to the Co-Encoder objectives only (give \"co_encoder\" or "
                       "\"co_encoder_config\")",
                       where, key);
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
    return c;
  }

  // The Co-Encoder objectives.
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
                              c.objectives.count("lm") || c.objectives.count("passkey");
  COENC_CHECK(!text_objective || !c.train_files.empty(),
              "{}: objectives reconstruction / continuation / lm / passkey read \"train_files\" (plain text), none "
              "given",
              where);
  const bool qa_objective = c.objectives.count("qa") || c.objectives.count("qa_text");
  COENC_CHECK(!qa_objective || !c.qa_files.empty(),
              "{}: objectives qa / qa_text read \"qa_files\" (JSONL), none given", where);
  COENC_CHECK(c.train_files.empty() || text_objective,
              "{}: field \"train_files\" is given but no objective reads it (reconstruction, continuation, lm, "
              "passkey)",
              where);
  COENC_CHECK(c.qa_files.empty() || qa_objective,
              "{}: field \"qa_files\" is given but objectives qa / qa_text have no weight", where);
  COENC_CHECK(c.train_connector || c.train_tower != "frozen" || c.train_decoder != "frozen",
              "{}: field \"train\" leaves nothing to train", where);
  for (const char* o : {"lm", "qa_text"})
    COENC_CHECK(
        !c.objectives.count(o) || c.train_decoder != "frozen",
        "{}: objective \"{}\" trains the decoder alone: it needs \"train\": {{\"decoder\": \"full\"}} or "
        "\"lora\"",
        where, o);
  COENC_CHECK(c.tower_layers == 0 || !c.tower_from.empty(),
              "{}: field \"tower_layers\" keeps the first layers of \"tower_from\", which is not given",
              where);
  COENC_CHECK(!j.contains("lora") || c.train_tower == "lora" || c.train_decoder == "lora",
              "{}: field \"lora\" is given but neither train.tower nor train.decoder is \"lora\"", where);
  COENC_CHECK(c.context_tokens >= 0 && c.max_context_tokens >= 0 && c.passkey_tokens >= 0 &&
                  c.lm_tokens >= 0,
              "{}: context_tokens, max_context_tokens, passkey_tokens and lm_tokens must be >= 0 (0: the default)", where);
  COENC_CHECK(c.min_context_tokens >= 0 && (c.min_context_tokens == 0 || c.context_tokens == 0 ||
                                            c.min_context_tokens <= c.context_tokens),
              "{}: min_context_tokens ({}) must be >= 0 and at most context_tokens ({})", where,
              c.min_context_tokens, c.context_tokens);
  COENC_CHECK(c.continuation_tokens >= 1, "{}: continuation_tokens must be at least 1, got {}", where,
              c.continuation_tokens);
  COENC_CHECK(c.size_loss_weight >= 0, "{}: size_loss_weight must be >= 0, got {}", where, c.size_loss_weight);
  COENC_CHECK(c.log_every >= 0 && c.save_every >= 0 && c.stop_after >= 0,
              "{}: log_every, save_every and stop_after must be >= 0", where);
  COENC_CHECK(c.init_std > 0, "{}: init_std must be positive, got {}", where, c.init_std);
  if (c.log_every == 0) c.log_every = c.eval_every;
  return c;
}

std::optional<int64_t> StepBudget::observe(int64_t done_here, double seconds, double eval_seconds,
                                           int64_t eval_every, int64_t done_total, int64_t planned) {
  if (!enabled || fixed || done_here < kWarmSteps || (done_here - kWarmSteps) % kWindowSteps != 0)
    return std::nullopt;
  if (done_here == kWarmSteps) {
    mark_seconds = seconds;
    if (seconds < budget_s) return std::nullopt;
  }
  if (seconds >= budget_s) {  // spent (a resumed run's earlier parts may have used it up)
    fixed = true;
    return std::min(planned, done_total);
  }
  const double per_step = (seconds - mark_seconds) / kWindowSteps +
                          eval_seconds / static_cast<double>(std::max<int64_t>(1, eval_every));
  mark_seconds = seconds;
  const int64_t more = static_cast<int64_t>(std::floor((budget_s - seconds) / std::max(per_step, 1e-9)));
  const int64_t plan = std::max(done_total, std::min(planned, done_total + more));
  // Fixed once a quarter of the planned run is behind: later changes would bend the decaying schedule.
  fixed = done_total * 4 >= plan;
  return plan;
}

TrainResult train(const TrainConfig& config) {
  if (config.co_encoder_mode()) return train_co_encoder(config);
  TrainConfig c = config;  // c.steps may shrink to fit time_budget_s
  const char* world = std::getenv("WORLD_SIZE");
  COENC_CHECK_CODE(!world || std::string(world) == "1" || std::string(world).empty(), Unsupported,
                   "WORLD_SIZE={}: data parallel training is for Co-Encoder runs; the plain LM trainer runs in one "
                   "process",
                   world ? world : "");
  const auto t0 = std::chrono::steady_clock::now();
  DeviceOptions dev = parse_device_options(c.device, "f32");
  auto tokenizer = Tokenizer::load(c.tokenizer);

  DecoderLm lm{nullptr};
  if (!c.init_from.empty()) {
    lm = load_decoder(c.init_from, dev);
  } else {
    ModelConfig mc = ModelConfig::from_json(c.model_config, "model_config");
    lm = random_decoder(mc, dev, c.seed, 0.02);
  }
  const ModelConfig& mc = lm->config();
  COENC_CHECK(tokenizer->vocab_size() <= mc.vocab_size, "tokenizer {} has {} tokens but the model's vocab_size is {}",
              c.tokenizer, tokenizer->vocab_size(), mc.vocab_size);
  COENC_CHECK(c.seq_len <= mc.max_position_embeddings, "seq_len {} exceeds the model's max_position_embeddings {}",
              c.seq_len, mc.max_position_embeddings);
  if (dev.device.is_cuda()) compat::allow_tf32(true);
  COENC_CHECK_CODE(c.autocast != "f16" || dev.device.is_cuda(), Unsupported,
                   "\"autocast\": \"f16\" runs on CUDA only (use \"bf16\" on the CPU)");
  const compat::AutocastState autocast{c.autocast != "none",
                                       c.autocast == "f16" ? torch::kFloat16 : torch::kBFloat16};

  torch::manual_seed(c.seed);
  data::TextDataset dataset(c.train_files, *tokenizer, c.eval_fraction, c.seq_len, c.progress);

  // Weight decay on matrices only.
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : lm->parameters()) {
    p.set_requires_grad(true);
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  using torch::optim::AdamWOptions;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<AdamWOptions>(AdamWOptions(c.lr).betas({c.beta1, c.beta2}).weight_decay(c.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<AdamWOptions>(AdamWOptions(c.lr).betas({c.beta1, c.beta2}).weight_decay(0)));
  torch::optim::AdamW opt(groups, AdamWOptions(c.lr));

  auto evaluate = [&]() {
    torch::NoGradGuard no_grad;
    lm->eval();
    double sum = 0;
    const int64_t per_batch = std::max<int64_t>(1, c.batch_size / c.grad_accum);
    for (int64_t i = 0; i < c.eval_batches; ++i) {
      auto [x, y] = dataset.eval_window(i, per_batch);
      compat::AutocastScope mixed(dev.device.type(), autocast);
      sum += lm_loss(lm, x.to(dev.device), y.to(dev.device)).item<double>();
    }
    lm->train();
    return sum / static_cast<double>(c.eval_batches);
  };

  fs::create_directories(c.out);
  std::ofstream metrics(fs::path(c.out) / "metrics.jsonl", std::ios::app);
  TrainResult result;
  const auto e0 = std::chrono::steady_clock::now();
  result.initial_eval_loss = evaluate();
  const double eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
  StepBudget budget{c.time_budget_s > 0, c.time_budget_s};
  const auto loop_start = std::chrono::steady_clock::now();
  std::mt19937_64 rng(c.seed);
  const int64_t micro = c.batch_size / c.grad_accum;
  ProgressBar bar("training", c.steps, "steps", c.progress);
  double window_loss = 0;
  int64_t window_steps = 0;
  auto window_start = std::chrono::steady_clock::now();
  lm->train();
  for (int64_t step = 0; step < c.steps; ++step) {
    const double lr = learning_rate(c, step);
    for (auto& g : opt.param_groups()) static_cast<AdamWOptions&>(g.options()).lr(lr);
    double step_loss = 0;
    for (int64_t a = 0; a < c.grad_accum; ++a) {
      auto [x, y] = dataset.sample(micro, rng);
      std::optional<compat::AutocastScope> mixed;
      mixed.emplace(dev.device.type(), autocast);
      torch::Tensor loss = lm_loss(lm, x.to(dev.device), y.to(dev.device)) / static_cast<double>(c.grad_accum);
      mixed.reset();  // backward outside autocast
      loss.backward();
      step_loss += loss.item<double>();
    }
    COENC_CHECK_CODE(std::isfinite(step_loss), Internal, "training diverged at step {} (loss {}); lower lr", step,
                     step_loss);
    if (c.grad_clip > 0) torch::nn::utils::clip_grad_norm_(lm->parameters(), c.grad_clip);
    opt.step();
    opt.zero_grad();
    result.tokens_seen += c.batch_size * c.seq_len;
    result.final_train_loss = step_loss;
    window_loss += step_loss;
    ++window_steps;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
    const double tok_s = static_cast<double>(window_steps * c.batch_size * c.seq_len) / std::max(secs, 1e-9);
    bar.update(step + 1, format("loss {} | {} tok/s", std::round(step_loss * 1000) / 1000, static_cast<int64_t>(tok_s)));
    const auto planned = budget.observe(
        step + 1, std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count(),
        eval_seconds, c.eval_every, step + 1, c.steps);
    if (planned && *planned != c.steps) {
      c.steps = *planned;
      bar.set_total(c.steps);
    }
    if ((step + 1) % c.eval_every == 0 || step + 1 == c.steps) {
      result.final_eval_loss = evaluate();
      metrics << json{{"step", step + 1},
                      {"lr", lr},
                      {"train_loss", window_loss / static_cast<double>(window_steps)},
                      {"eval_loss", result.final_eval_loss},
                      {"tokens", result.tokens_seen},
                      {"tokens_per_s", tok_s}}
                     .dump()
              << "\n";
      metrics.flush();
      window_loss = 0;
      window_steps = 0;
      window_start = std::chrono::steady_clock::now();
    }
  }
  bar.finish(format("eval loss {} (from {})", result.final_eval_loss, result.initial_eval_loss));

  for (auto& p : lm->parameters()) p.set_requires_grad(false);
  save_decoder(lm, c.out, torch::kBFloat16, shard_limit_bytes(c.max_shard_mb));
  // The tokenizer travels with the model.
  const fs::path tok_src = c.tokenizer;
  const fs::path tok_dir = fs::is_directory(tok_src) ? tok_src : tok_src.parent_path();
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"})
    if (fs::exists(tok_dir / f) && fs::absolute(tok_dir) != fs::absolute(c.out))
      write_file_atomic(fs::path(c.out) / f, read_file_bytes(tok_dir / f, "tokenizer file"));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace coenc
