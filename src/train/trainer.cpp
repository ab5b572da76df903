// The training loop: AdamW, linear warm-up then cosine decay, gradient accumulation and clipping, periodic
// held-out evaluation, metrics as JSON lines, and the model written as a Hugging Face directory at the end.
#include <chrono>
#include <cmath>
#include <fstream>

#include "coenc/atomic_file.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "coenc/train.h"
#include "core/progress.h"
#include "core/torch_compat.h"
#include "train/text_dataset.h"

namespace coenc {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <typename T>
void read_field(const json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception&) {
    fail(ErrorCode::InvalidInput, "{}: field \"{}\" has the wrong type: {}", where, key, j.at(key).dump());
  }
}

// Linear warm-up to the peak, then cosine decay to peak x min_ratio at the last step.
double learning_rate(const TrainConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double span = std::max<int64_t>(1, c.steps - c.warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup_steps) / span);
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
}

torch::Tensor lm_loss(DecoderLm& lm, const torch::Tensor& x, const torch::Tensor& y) {
  torch::Tensor logits = lm->logits(lm->forward_hidden(lm->embed(x), ForwardArgs{}));  // [B, T, V] f32
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), y.view({-1}));
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  COENC_CHECK(j.is_object(), "{}: expected a JSON object", where);
  static const std::set<std::string> known = {
      "objective", "init_from", "model_config", "tokenizer", "train_files", "eval_fraction", "out", "seq_len",
      "batch_size", "grad_accum", "steps", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "beta1", "beta2",
      "grad_clip", "eval_every", "eval_batches", "seed", "device", "progress"};
  for (const auto& item : j.items())
    COENC_CHECK(known.count(item.key()), "{}: unknown field \"{}\"", where, item.key());
  TrainConfig c;
  read_field(j, "objective", c.objective, where);
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
  // Relative paths are relative to the config file's folder, so a config travels with its data.
  const fs::path base = fs::path(where).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && fs::path(p).is_relative() && !base.empty()) p = (base / p).string();
  };
  resolve(c.init_from);
  resolve(c.tokenizer);
  resolve(c.out);
  for (auto& f : c.train_files) resolve(f);

  COENC_CHECK_CODE(c.objective == "lm", Unsupported, "{}: objective \"{}\" is not supported yet (expected \"lm\")",
                   where, c.objective);
  COENC_CHECK(c.init_from.empty() != c.model_config.is_null(),
              "{}: give exactly one of \"init_from\" (a model directory) and \"model_config\" (a config.json object)",
              where);
  COENC_CHECK(!c.tokenizer.empty(), "{}: missing field \"tokenizer\"", where);
  COENC_CHECK(!c.out.empty(), "{}: missing field \"out\"", where);
  COENC_CHECK(c.seq_len > 1, "{}: seq_len must be at least 2, got {}", where, c.seq_len);
  COENC_CHECK(c.steps > 0, "{}: steps must be positive, got {}", where, c.steps);
  COENC_CHECK(c.grad_accum > 0 && c.batch_size > 0 && c.batch_size % c.grad_accum == 0,
              "{}: batch_size ({}) must be a positive multiple of grad_accum ({})", where, c.batch_size, c.grad_accum);
  COENC_CHECK(c.lr > 0 && c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1, "{}: need lr > 0 and 0 <= min_lr_ratio <= 1",
              where);
  COENC_CHECK(c.warmup_steps >= 0 && c.eval_every > 0 && c.eval_batches > 0,
              "{}: warmup_steps must be >= 0, eval_every and eval_batches positive", where);
  return c;
}

TrainResult train(const TrainConfig& c) {
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
      sum += lm_loss(lm, x.to(dev.device), y.to(dev.device)).item<double>();
    }
    lm->train();
    return sum / static_cast<double>(c.eval_batches);
  };

  fs::create_directories(c.out);
  std::ofstream metrics(fs::path(c.out) / "metrics.jsonl", std::ios::app);
  TrainResult result;
  result.initial_eval_loss = evaluate();
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
      torch::Tensor loss = lm_loss(lm, x.to(dev.device), y.to(dev.device)) / static_cast<double>(c.grad_accum);
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
  save_decoder(lm, c.out, torch::kBFloat16);
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
