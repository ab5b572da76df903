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

std::optional<int64_t> StepBudget::observe(int64_t done_here, double seconds, double eval_seconds,
                                           int64_t eval_every, int64_t done_total, int64_t planned) {
  // Every kCheckSteps steps a plan comes back, whatever the clock says, so that the processes of a data-parallel
  // run all reach the point where they agree on it.
  if (!enabled || fixed || done_here % kCheckSteps != 0) return std::nullopt;
  if (seconds >= budget_s) {  // spent (a resumed run's earlier parts may have used it up; or slow warm-up steps)
    fixed = true;
    return std::min(planned, done_total);
  }
  if (done_here < kWarmSteps) return planned;  // warm-up steps are slow: not timed
  if (done_here == kWarmSteps) {
    mark_seconds = seconds;
    mark_step = done_here;
    return planned;
  }
  const double per_step = (seconds - mark_seconds) / static_cast<double>(done_here - mark_step) +
                          eval_seconds / static_cast<double>(std::max<int64_t>(1, eval_every));
  if (done_here - mark_step >= kWindowSteps) {  // the next plans time the steps from here on
    mark_seconds = seconds;
    mark_step = done_here;
  }
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
  if (dev.device.is_cuda()) {
    compat::allow_tf32(true);
    compat::training_attention_kernels();
  }
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
