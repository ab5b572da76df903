// The Co-Encoder training loop (docs/co_encoder.md, "Training"): the model built or loaded, the chosen parts made
// trainable, examples of each weighted objective in every micro-batch, AdamW with warm-up + cosine, accumulation
// and clipping, periodic evaluation (with the no-context baseline), metrics JSONL, checkpoints that resume
// exactly, SIGINT handling, and the trained checkpoint with its tokenizers and a loss-curve SVG at the end.
#include "train/co_encoder_trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/co_encoder.h"
#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "core/progress.h"
#include "core/torch_compat.h"
#include "train/co_encoder_data.h"
#include "train/co_encoder_objectives.h"
#include "train/data_parallel.h"
#include "train/loss_curve.h"
#include "train/run_checkpoint.h"

namespace coenc {

namespace fs = std::filesystem;
using data::Objective;
using nlohmann::json;

namespace {

// ---- SIGINT: finish the step, save, return ------------------------------------------------------------------------

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) { g_interrupted.store(true); }

// Installs the handler for the run's duration. SA_RESETHAND: a second Ctrl-C kills at once (the checkpoint being
// written is then simply not swapped in).
class SigintScope {
 public:
  SigintScope() {
    g_interrupted.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintScope() { sigaction(SIGINT, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

// ---- the model and its tokenizers ------------------------------------------------------------------------------

// The folder whose tokenizer files travel into the output (a file path's folder).
fs::path tokenizer_dir(const fs::path& p) { return fs::is_directory(p) ? p : p.parent_path(); }

struct Built {
  CoEncoder model{nullptr};
  std::unique_ptr<Tokenizer> context_tok, text_tok;
  fs::path context_tok_src, text_tok_src;
  bool same_tokenizer = false;
  fs::path ckpt_dir;  // where relative *_path fields of the config point
};

fs::path pick_tokenizer(const std::string& given, const std::vector<fs::path>& places, const char* field) {
  if (!given.empty()) return given;
  for (const auto& p : places)
    if (!p.empty() && Tokenizer::in_directory(p.string())) return p;
  std::string where;
  for (const auto& p : places)
    if (!p.empty()) where += (where.empty() ? "" : " or ") + p.string();
  fail(ErrorCode::NotFound, "missing field \"{}\": no tokenizer.json or tokenizer.model found{}{}", field,
       where.empty() ? "" : " in ", where);
}

Built build_model(const TrainConfig& c, const DeviceOptions& dev) {
  Built b;
  std::vector<fs::path> ctx_places, text_places;
  if (!c.co_encoder.empty()) {
    b.ckpt_dir = c.co_encoder;
    b.model = load_co_encoder(c.co_encoder, dev);
    const CoEncoderConfig& cfg = b.model->config();
    ctx_places = {b.ckpt_dir / "context_tokenizer",
                  cfg.context_tower_path.empty() ? fs::path() : b.ckpt_dir / cfg.context_tower_path};
    text_places = {b.ckpt_dir / "text_tokenizer",
                   cfg.language_model_path.empty() ? fs::path() : b.ckpt_dir / cfg.language_model_path};
  } else {
    json j = c.co_encoder_config;
    if (!c.tower_from.empty() && !j.contains("context_config") && !j.contains("context_tower_path"))
      j["context_config"] = read_json_file(fs::path(c.tower_from) / "config.json", "model config");
    if (c.tower_layers > 0) {
      const int64_t n = j["context_config"].value("num_hidden_layers", int64_t{0});
      COENC_CHECK(c.tower_layers <= n, "tower_layers {} exceeds the {} layers of {}", c.tower_layers, n,
                  c.tower_from);
      j["context_config"]["num_hidden_layers"] = c.tower_layers;
    }
    if (!c.decoder_from.empty() && !j.contains("text_config") && !j.contains("language_model_path"))
      j["text_config"] = read_json_file(fs::path(c.decoder_from) / "config.json", "model config");
    CoEncoderConfig cfg = CoEncoderConfig::from_json(j, "co_encoder_config", fs::current_path());
    COENC_CHECK(cfg.context_tower_path.empty() && cfg.language_model_path.empty(),
                "co_encoder_config: use \"tower_from\" / \"decoder_from\" instead of context_tower_path / "
                "language_model_path");
    DecoderLm tower = c.tower_from.empty() ? random_decoder(cfg.context, dev, c.seed, c.init_std)
                                           : load_decoder(c.tower_from, dev);
    if (c.tower_layers > 0) {
      // The first tower_layers layers (and the embeddings, final norm, head) of the loaded model.
      DecoderLm cut = random_decoder(cfg.context, dev, c.seed, c.init_std);
      torch::NoGradGuard no_grad;
      auto from = tower->named_parameters();
      for (auto& p : cut->named_parameters()) p.value().copy_(from[p.key()]);
      tower = cut;
    }
    DecoderLm decoder = c.decoder_from.empty() ? random_decoder(cfg.text, dev, c.seed + 1, c.init_std)
                                               : load_decoder(c.decoder_from, dev);
    COENC_CHECK(tower->config().hidden_size == cfg.context.hidden_size &&
                    decoder->config().hidden_size == cfg.text.hidden_size,
                "co_encoder_config: context_config / text_config disagree with tower_from / decoder_from");
    b.model = CoEncoder(cfg, tower, decoder, dev);
    b.model->init_connector(c.seed + 2, c.init_std, true);
    ctx_places = {c.tower_from.empty() ? fs::path() : fs::path(c.tower_from)};
    text_places = {c.decoder_from.empty() ? fs::path() : fs::path(c.decoder_from)};
  }
  b.context_tok_src = pick_tokenizer(c.context_tokenizer, ctx_places, "context_tokenizer");
  b.text_tok_src = pick_tokenizer(c.text_tokenizer, text_places, "text_tokenizer");
  b.context_tok = Tokenizer::load(b.context_tok_src.string());
  b.text_tok = Tokenizer::load(b.text_tok_src.string());
  const CoEncoderConfig& cfg = b.model->config();
  COENC_CHECK(b.context_tok->vocab_size() <= cfg.context.vocab_size,
              "context tokenizer {} has {} ids but context_config.vocab_size is {}", b.context_tok_src.string(),
              b.context_tok->vocab_size(), cfg.context.vocab_size);
  COENC_CHECK(b.text_tok->vocab_size() <= cfg.text.vocab_size,
              "text tokenizer {} has {} ids but text_config.vocab_size is {}", b.text_tok_src.string(),
              b.text_tok->vocab_size(), cfg.text.vocab_size);
  b.same_tokenizer = fs::weakly_canonical(b.context_tok_src) == fs::weakly_canonical(b.text_tok_src);
  return b;
}

// ---- metrics -----------------------------------------------------------------------------------------------------

// Running sums over the steps since the last metrics line; kept in checkpoints so a resumed run's lines are the
// uninterrupted run's.
struct Window {
  int64_t steps = 0;
  double loss = 0, size = 0, distill = 0;
  std::array<double, data::kNumObjectives> obj{};
  std::array<int64_t, data::kNumObjectives> obj_steps{};
  int64_t correct = 0, tokens = 0;  // reconstruction accuracy

  json to_json() const {
    return {{"steps", steps}, {"loss", loss},           {"size", size},       {"distill", distill},
            {"obj", obj},     {"obj_steps", obj_steps}, {"correct", correct}, {"tokens", tokens}};
  }
  static Window from_json(const json& j) {
    Window w;
    w.steps = j.at("steps");
    w.loss = j.at("loss");
    w.size = j.at("size");
    w.distill = j.value("distill", 0.0);  // checkpoints before distillation have none
    // checkpoints from before objectives lookup / lookup_text / cloze / cloze_text hold fewer entries
    const auto obj = j.at("obj").get<std::vector<double>>();
    const auto obj_steps = j.at("obj_steps").get<std::vector<int64_t>>();
    for (size_t o = 0; o < std::min<size_t>(obj.size(), data::kNumObjectives); ++o) w.obj[o] = obj[o];
    for (size_t o = 0; o < std::min<size_t>(obj_steps.size(), data::kNumObjectives); ++o) w.obj_steps[o] = obj_steps[o];
    w.correct = j.at("correct");
    w.tokens = j.at("tokens");
    return w;
  }
};

std::string rng_state(const std::mt19937_64& rng) {
  std::ostringstream s;
  s << rng;
  return s.str();
}

// The fields a resumed run may change without changing what it computes.
json comparable(json j) {
  for (const char* k : {"resume", "progress", "stop_after", "save_every"}) j.erase(k);
  return j;
}

// Keeps the metrics lines up to `step` (a killed run may have written lines after its last checkpoint).
void truncate_metrics(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::istringstream in(read_file_bytes(path, "metrics"));
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

void write_loss_curve(const fs::path& metrics, const fs::path& svg) {
  LossSeries train{"train", "#1f77b4", {}}, eval{"eval", "#d62728", {}}, none{"eval, no context", "#7f7f7f", {}};
  std::istringstream in(read_file_bytes(metrics, "metrics"));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step")) continue;
    const double step = j["step"].get<double>();
    if (j.contains("train_loss")) train.xy.emplace_back(step, j["train_loss"].get<double>());
    if (j.contains("eval_loss")) eval.xy.emplace_back(step, j["eval_loss"].get<double>());
    if (j.contains("eval_continuation_no_context_loss"))
      none.xy.emplace_back(step, j["eval_continuation_no_context_loss"].get<double>());
  }
  std::vector<LossSeries> series = {train, eval};
  if (!none.xy.empty()) series.push_back(none);
  write_file_atomic(svg, loss_curve_svg(series, "Co-Encoder training: " + metrics.parent_path().filename().string()));
}

// ---- the parts of a run ----------------------------------------------------------------------------------------

using ObjectiveWeights = std::array<double, data::kNumObjectives>;

// Each objective's weight, normalised to sum 1 (0 for those the config does not name).
ObjectiveWeights objective_weights(const TrainConfig& c) {
  ObjectiveWeights weight{};
  double total = 0;
  for (const auto& [name, w] : c.objectives) total += w;
  for (int o = 0; o < data::kNumObjectives; ++o) {
    auto it = c.objectives.find(data::objective_name(static_cast<Objective>(o)));
    if (it != c.objectives.end()) weight[o] = it->second / total;
  }
  return weight;
}

// What every part of a run shares: the model, the config, where and how it computes, and the processes.
struct Run {
  TrainConfig& c;
  CoEncoderImpl& model;
  DeviceOptions dev;
  compat::AutocastState autocast;
  DataParallel* dp;  // null: one process
  int rank = 0, world = 1;
  ObjectiveWeights weight{};
  bool dynamic = false;     // pooling "dynamic": its size loss joins the loss
  int64_t config_ratio = 0;  // the checkpoint's own ratio (compression_ratios change the model's at every step)
};

// The examples of every weighted objective: `micro` of each per micro-batch, drawn from the text and QA files.
class Examples {
 public:
  Examples(const Run& run, const Built& built, bool progress) : run_(run) {
    const TrainConfig& c = run.c;
    const CoEncoderConfig& cfg = run.model.config();
    auto active = [&](Objective o) { return run.weight[static_cast<int>(o)] > 0; };
    const int64_t context_tokens = c.context_tokens > 0 ? c.context_tokens : cfg.chunk_size;
    // lookup_text reads its window as text: it, the question (up to 12 quoted tokens and 8 of its own) and the
    // answer (up to 12 + EOS) must fit.
    COENC_CHECK(!active(Objective::LookupText) || context_tokens + 40 <= cfg.text.max_position_embeddings,
                "objective lookup_text reads a window of context_tokens = {} tokens as text: the decoder holds {} "
                "positions, and the question and answer need 40 more",
                context_tokens, cfg.text.max_position_embeddings);
    COENC_CHECK(!active(Objective::ClozeText) ||
                    context_tokens + data::kClozeExtraTokens <= cfg.text.max_position_embeddings,
                "objective cloze_text reads a window of context_tokens = {} tokens as text: the decoder holds {} "
                "positions, and the question and answer need {} more",
                context_tokens, cfg.text.max_position_embeddings, data::kClozeExtraTokens);
    if (active(Objective::Reconstruction) || active(Objective::Continuation) || active(Objective::Lm) ||
        active(Objective::Passkey) || active(Objective::Lookup) || active(Objective::LookupText) ||
        active(Objective::Cloze) || active(Objective::ClozeText))
      text_ = std::make_unique<data::TextExamples>(
          c.train_files, *built.context_tok, *built.text_tok, built.same_tokenizer, c.eval_fraction, context_tokens,
          c.continuation_tokens, active(Objective::Continuation) || active(Objective::Lm), progress,
          c.min_context_tokens, c.passkey_tokens, c.lm_tokens);
    if (active(Objective::Qa) || active(Objective::QaText))
      qa_ = std::make_unique<data::QaExamples>(c.qa_files, *built.context_tok, *built.text_tok, c.eval_fraction,
                                               c.max_context_tokens > 0 ? c.max_context_tokens : 4 * cfg.chunk_size,
                                               cfg.text.max_position_embeddings);
    micro_ = c.batch_size / c.grad_accum;
  }

  // One micro-batch (held-out examples with `eval`).
  std::vector<data::Example> batch(std::mt19937_64& rng, bool eval) const {
    std::vector<data::Example> ex;
    for (int o = 0; o < data::kNumObjectives; ++o)
      if (run_.weight[o] > 0)
        for (int64_t i = 0; i < micro_; ++i) ex.push_back(sample(static_cast<Objective>(o), rng, eval));
    return ex;
  }

 private:
  // Full readings (the teacher of distillation) where they are used: evaluation reports the distance to them,
  // training with "distill" learns from it.
  data::Example sample(Objective o, std::mt19937_64& rng, bool eval) const {
    const bool full = eval || run_.c.distill > 0;
    return o == Objective::Qa || o == Objective::QaText ? qa_->sample(o, rng, eval, full)
                                                        : text_->sample(o, rng, eval, passkey_cap(), full);
  }
  // Passkey haystacks are capped at what the decoder holds once compressed at the step's ratio (32 positions
  // left for the markers, question and answer), so one passkey_tokens serves every ratio of compression_ratios.
  int64_t passkey_cap() const {
    if (run_.dynamic) return 0;
    const CoEncoderConfig& cfg = run_.model.config();
    return std::max<int64_t>(64, (cfg.text.max_position_embeddings - 32) * cfg.ratio);
  }

  const Run& run_;
  std::unique_ptr<data::TextExamples> text_;
  std::unique_ptr<data::QaExamples> qa_;
  int64_t micro_ = 1;
};

// The parameters the config's "train" makes trainable (by name), and all of them in one list.
struct Trainable {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> all;
};

Trainable select_trainable(CoEncoderImpl& model, const TrainConfig& c) {
  Trainable t;
  for (auto& p : model.named_parameters()) {
    const std::string& name = p.key();
    const bool lora = name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
    auto part_on = [&](const std::string& mode) { return mode == "full" || (mode == "lora" && lora); };
    const bool on = (name.rfind("connector.", 0) == 0 && c.train_connector) ||
                    (name.rfind("context_tower.", 0) == 0 && part_on(c.train_tower)) ||
                    (name.rfind("language_model.", 0) == 0 && part_on(c.train_decoder));
    p.value().set_requires_grad(on);
    if (on) t.named.emplace_back(name, p.value()), t.all.push_back(p.value());
  }
  COENC_CHECK(!t.named.empty(), "train: nothing to train (the connector of pooling \"{}\" has no parameters?)",
              pooling_mode_name(model.config().pooling));
  return t;
}

// AdamW with weight decay on matrices only, not on norms or biases, and each group's multiple of the scheduled
// learning rate (the config's lr_scale of the part it trains).
struct Optimizer {
  std::unique_ptr<torch::optim::AdamW> adamw;
  std::vector<double> lr_scale;  // one per parameter group

  // The scheduled learning rate `lr`, times each group's scale.
  void set_lr(double lr) {
    auto& groups = adamw->param_groups();
    for (size_t i = 0; i < groups.size(); ++i)
      static_cast<torch::optim::AdamWOptions&>(groups[i].options()).lr(lr * lr_scale[i]);
  }
};

Optimizer make_optimizer(const Trainable& t, const TrainConfig& c) {
  // With every scale 1 the parts share two groups (decay, no decay), as checkpoints of earlier runs hold them;
  // otherwise two per part.
  const std::vector<std::pair<std::string, double>> parts =
      c.lr_scale.all_one() ? std::vector<std::pair<std::string, double>>{{"", 1.0}}
                           : std::vector<std::pair<std::string, double>>{{"connector.", c.lr_scale.connector},
                                                                          {"context_tower.", c.lr_scale.tower},
                                                                          {"language_model.", c.lr_scale.decoder}};
  using torch::optim::AdamWOptions;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  Optimizer opt;
  for (const auto& [prefix, scale] : parts) {
    std::vector<torch::Tensor> decay, no_decay;
    for (const auto& [name, p] : t.named)
      if (name.rfind(prefix, 0) == 0) (p.dim() >= 2 ? decay : no_decay).push_back(p);
    for (auto* list : {&decay, &no_decay}) {
      if (list->empty()) continue;
      const double wd = list == &decay ? c.weight_decay : 0.0;
      groups.emplace_back(*list, std::make_unique<AdamWOptions>(
                                     AdamWOptions(c.lr * scale).betas({c.beta1, c.beta2}).weight_decay(wd)));
      opt.lr_scale.push_back(scale);
    }
  }
  opt.adamw = std::make_unique<torch::optim::AdamW>(groups, AdamWOptions(c.lr));
  return opt;
}

// Held-out losses: the same examples every time (a fresh generator), plus continuation, QA, passkey, lookup and
// cloze again without their context, the baseline the compressed context must beat. One metrics object ("eval_*").
json evaluate(const Run& run, const Examples& examples) {
  const TrainConfig& c = run.c;
  CoEncoderImpl& model = run.model;
  torch::NoGradGuard no_grad;
  if (!c.compression_ratios.empty()) model.set_compression_ratio(run.config_ratio);
  std::mt19937_64 rng(c.seed ^ 0x5eedc0de5eedc0deULL);
  std::array<double, data::kNumObjectives> sum{}, none_sum{};
  std::array<int64_t, data::kNumObjectives> tokens{}, none_tokens{};
  int64_t correct = 0;
  double distill_sum = 0, distill_tokens = 0;
  for (int64_t i = 0; i < c.eval_batches; ++i) {
    std::vector<data::Example> ex = examples.batch(rng, true), bare;
    if (i % run.world != run.rank) continue;  // every process draws every batch (one generator), evaluates its share
    compat::AutocastScope mixed(run.dev.device.type(), run.autocast);
    data::BatchLoss bl = data::co_encoder_batch_loss(model, ex, true);  // the distance to the full reading, always
    if (bl.distill_tokens > 0)
      distill_sum += bl.distill_sum.item<double>(), distill_tokens += static_cast<double>(bl.distill_tokens);
    for (int o = 0; o < data::kNumObjectives; ++o)
      if (bl.tokens[o] > 0) sum[o] += bl.loss_sum[o].item<double>(), tokens[o] += bl.tokens[o];
    correct += bl.correct[static_cast<int>(Objective::Reconstruction)];
    for (auto e : ex)
      if (e.objective == Objective::Continuation || e.objective == Objective::Qa ||
          e.objective == Objective::Passkey || e.objective == Objective::Lookup || e.objective == Objective::Cloze) {
        e.context.clear();
        bare.push_back(std::move(e));
      }
    if (bare.empty()) continue;
    data::BatchLoss bn = data::co_encoder_batch_loss(model, bare);
    for (int o = 0; o < data::kNumObjectives; ++o)
      if (bn.tokens[o] > 0) none_sum[o] += bn.loss_sum[o].item<double>(), none_tokens[o] += bn.tokens[o];
  }
  if (run.dp) {
    std::vector<double> all;
    for (int o = 0; o < data::kNumObjectives; ++o)
      all.insert(all.end(), {sum[o], none_sum[o], static_cast<double>(tokens[o]), static_cast<double>(none_tokens[o])});
    all.insert(all.end(), {static_cast<double>(correct), distill_sum, distill_tokens});
    torch::Tensor t = torch::tensor(all, torch::kFloat64).to(run.dev.device);
    run.dp->all_reduce_sum({t});
    t = t.cpu();
    for (int o = 0; o < data::kNumObjectives; ++o) {
      sum[o] = t[4 * o].item<double>();
      none_sum[o] = t[4 * o + 1].item<double>();
      tokens[o] = t[4 * o + 2].item<int64_t>();
      none_tokens[o] = t[4 * o + 3].item<int64_t>();
    }
    correct = t[4 * data::kNumObjectives].item<int64_t>();
    distill_sum = t[4 * data::kNumObjectives + 1].item<double>();
    distill_tokens = t[4 * data::kNumObjectives + 2].item<double>();
  }
  json m;
  double total = 0;
  for (int o = 0; o < data::kNumObjectives; ++o) {
    if (run.weight[o] == 0 || tokens[o] == 0) continue;
    const std::string name = data::objective_name(static_cast<Objective>(o));
    const double loss = sum[o] / static_cast<double>(tokens[o]);
    m["eval_" + name + "_loss"] = loss;
    total += run.weight[o] * loss;
    if (none_tokens[o] > 0) m["eval_" + name + "_no_context_loss"] = none_sum[o] / static_cast<double>(none_tokens[o]);
  }
  const int r = static_cast<int>(Objective::Reconstruction);
  if (tokens[r] > 0) m["eval_reconstruction_accuracy"] = static_cast<double>(correct) / static_cast<double>(tokens[r]);
  if (distill_tokens > 0) {  // how far the compressed reading is from the full one (in the loss with "distill")
    m["eval_distill_loss"] = distill_sum / distill_tokens;
    total += c.distill * distill_sum / distill_tokens;
  }
  m["eval_loss"] = total;
  return m;
}

// What one optimizer step's micro-batches add up to (over every process).
struct StepStats {
  double loss = 0, size = 0, distill = 0;  // distill: the mean KL of the distilled tokens
  ObjectiveWeights obj{};  // each objective's mean loss
  int64_t correct = 0, recon_tokens = 0, tokens = 0;
  bool interrupted = false;
};

// The forward and backward passes of one optimizer step: grad_accum micro-batches (this process's share of
// them), gradients summed over the processes. The optimizer step itself is the caller's.
StepStats accumulate_step(const Run& run, const Examples& examples, const Trainable& trainable,
                          std::mt19937_64& rng) {
  const TrainConfig& c = run.c;
  StepStats s;
  for (int64_t a = 0; a < c.grad_accum; ++a) {
    if (!c.compression_ratios.empty()) {
      std::uniform_int_distribution<size_t> pick(0, c.compression_ratios.size() - 1);
      run.model.set_compression_ratio(c.compression_ratios[pick(rng)]);
    }
    std::vector<data::Example> batch = examples.batch(rng, false);
    if (a % run.world != run.rank) continue;  // another process's micro-batch
    std::optional<compat::AutocastScope> mixed;
    mixed.emplace(run.dev.device.type(), run.autocast);
    data::BatchLoss bl = data::co_encoder_batch_loss(run.model, batch, c.distill > 0);
    torch::Tensor loss;
    for (int o = 0; o < data::kNumObjectives; ++o) {
      if (run.weight[o] == 0 || bl.tokens[o] == 0) continue;
      torch::Tensor mean = bl.loss_sum[o] / static_cast<double>(bl.tokens[o]);
      s.obj[o] += mean.item<double>() / static_cast<double>(c.grad_accum);
      loss = loss.defined() ? loss + run.weight[o] * mean : run.weight[o] * mean;
    }
    if (run.dynamic && c.size_loss_weight > 0 && bl.size_loss.defined()) {
      s.size += bl.size_loss.item<double>() / static_cast<double>(c.grad_accum);
      loss = loss + c.size_loss_weight * bl.size_loss;
    }
    if (bl.distill_tokens > 0) {
      torch::Tensor kl = bl.distill_sum / static_cast<double>(bl.distill_tokens);
      s.distill += kl.item<double>() / static_cast<double>(c.grad_accum);
      loss = loss + c.distill * kl;
    }
    loss = loss / static_cast<double>(c.grad_accum);
    mixed.reset();  // backward outside autocast, as PyTorch recommends: each op's gradient in its forward dtype
    if (loss.requires_grad()) loss.backward();
    s.loss += loss.item<double>();
    s.correct += bl.correct[static_cast<int>(Objective::Reconstruction)];
    s.recon_tokens += bl.tokens[static_cast<int>(Objective::Reconstruction)];
    s.tokens += bl.context_tokens + bl.decoder_positions;
  }
  s.interrupted = g_interrupted.load();
  if (!run.dp) return s;
  // Gradients summed over the processes (each micro-batch loss is already divided by grad_accum), then the
  // step's statistics and whether any process was interrupted, so all take the same decisions.
  std::vector<torch::Tensor> grads;
  for (const auto& p : trainable.all) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.mutable_grad());
  }
  run.dp->all_reduce_sum(grads);
  std::vector<double> stats = {s.loss, s.size, static_cast<double>(s.correct), static_cast<double>(s.recon_tokens),
                               static_cast<double>(s.tokens), s.interrupted ? 1.0 : 0.0, s.distill};
  stats.insert(stats.end(), s.obj.begin(), s.obj.end());
  torch::Tensor t = torch::tensor(stats, torch::kFloat64).to(run.dev.device);
  run.dp->all_reduce_sum({t});
  t = t.cpu();
  s.loss = t[0].item<double>();
  s.size = t[1].item<double>();
  s.correct = t[2].item<int64_t>();
  s.recon_tokens = t[3].item<int64_t>();
  s.tokens = t[4].item<int64_t>();
  s.interrupted = t[5].item<double>() > 0;
  s.distill = t[6].item<double>();
  for (int o = 0; o < data::kNumObjectives; ++o) s.obj[o] = t[7 + o].item<double>();
  return s;
}

// Where an earlier part of the run stopped (all zero for a fresh run).
struct Resumed {
  int64_t step = 0;
  double train_seconds = 0;   // training-loop seconds of the earlier parts
  bool planned_fixed = false;  // c.steps was fitted to time_budget_s by an earlier part
};

// A fresh run (refused when out/checkpoint holds an earlier one), or the run resumed from its checkpoint: weights,
// optimizer state, generator, counters and the metrics window back as they were; the config must be the same.
Resumed start_or_resume(Run& run, const fs::path& ckpt, const fs::path& metrics_path, const Trainable& trainable,
                        torch::optim::AdamW& opt, std::mt19937_64& rng, TrainResult& result, Window& window) {
  TrainConfig& c = run.c;
  const bool lead = run.rank == 0;
  Resumed r;
  if (!c.resume) {
    COENC_CHECK(!find_run_checkpoint(ckpt), "{} holds a checkpoint of an earlier run: set \"resume\": true to "
                "continue it, or remove it", ckpt.string());
    if (lead) write_file_atomic(metrics_path, "");
    return r;
  }
  auto found = find_run_checkpoint(ckpt);
  COENC_CHECK_CODE(found, NotFound, "\"resume\": true but {} holds no checkpoint", ckpt.string());
  json state = load_run_checkpoint(*found, trainable.named, opt);
  const json before = comparable(state.at("config")), now = comparable(c.source);
  for (const auto& item : now.items())
    COENC_CHECK(before.contains(item.key()) && before[item.key()] == item.value(),
                "\"resume\": field \"{}\" differs from the checkpointed run's ({}); a resumed run must use the same "
                "config",
                item.key(), before.contains(item.key()) ? before[item.key()].dump() : "absent");
  for (const auto& item : before.items())
    COENC_CHECK(now.contains(item.key()), "\"resume\": field \"{}\" was set in the checkpointed run ({})", item.key(),
                item.value().dump());
  r.step = state.at("step");
  if (state.value("planned_steps_fixed", false)) {
    c.steps = state.at("planned_steps");
    r.planned_fixed = true;
  }
  r.train_seconds = state.value("train_seconds", 0.0);
  std::istringstream(state.at("rng").get<std::string>()) >> rng;
  result.tokens_seen = state.at("tokens");
  result.initial_eval_loss = state.at("initial_eval_loss");
  window = Window::from_json(state.at("window"));
  if (lead) truncate_metrics(metrics_path, r.step);
  return r;
}

// The trained checkpoint in `out` (lead process, finished run): LoRA merged, the config's own ratio, the raw
// prompt layout every objective trained with, frozen parts referenced or embedded, and both tokenizers.
void write_trained_model(const Run& run, const Built& built, const Trainable& trainable, const fs::path& out) {
  const TrainConfig& c = run.c;
  CoEncoderImpl& model = run.model;
  if (!c.compression_ratios.empty()) model.set_compression_ratio(run.config_ratio);  // the checkpoint's own ratio
  const CoEncoderConfig& cfg = model.config();
  for (const auto& p : trainable.all) p.set_requires_grad(false);
  model.context_tower->tower->merge_lora();
  model.language_model->merge_lora();
  // A frozen tower or decoder that came from a directory stays there: the checkpoint points at it by a path
  // relative to itself (so the pair can move together); a trained one is stored in the checkpoint.
  auto source_dir = [&](const std::string& ckpt_path, const std::string& from) -> fs::path {
    if (!ckpt_path.empty()) return built.ckpt_dir / ckpt_path;
    return from;
  };
  auto reference = [&](const fs::path& src, const std::string& mode, bool embed) -> std::string {
    if (src.empty() || mode != "frozen" || embed) return "";
    const fs::path target = fs::weakly_canonical(src), here = fs::weakly_canonical(out);
    const fs::path rel = target.lexically_relative(here);
    return rel.empty() ? target.string() : rel.string();
  };
  model.set_prompt_layout("raw");  // every objective lays out [BOC] v [EOC] prompt target (co_encoder_objectives)
  save_co_encoder(model, out, reference(source_dir(cfg.context_tower_path, c.tower_from), c.train_tower, c.embed_tower),
                  reference(source_dir(cfg.language_model_path, c.decoder_from), c.train_decoder, c.embed_decoder),
                  c.save_dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32, shard_limit_bytes(c.max_shard_mb));
  // The seed's layout: each tokenizer in its subfolder.
  for (auto [src, sub] :
       {std::pair{built.context_tok_src, "context_tokenizer"}, std::pair{built.text_tok_src, "text_tokenizer"}}) {
    const fs::path from = tokenizer_dir(src), to = out / sub;
    if (fs::exists(to) && fs::equivalent(from, to)) continue;
    fs::create_directories(to);
    for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"})
      if (fs::exists(from / f)) write_file_atomic(to / f, read_file_bytes(from / f, "tokenizer file"));
  }
}

}  // namespace

TrainResult train_co_encoder(const TrainConfig& config) {
  TrainConfig c = config;  // c.steps may shrink to fit time_budget_s
  const auto t0 = std::chrono::steady_clock::now();
  SigintScope sigint;
  DeviceOptions dev = parse_device_options(c.device, "f32");
  dev.device = data_parallel_device(dev.device);
  // Data parallel (src/train/data_parallel.h): each process takes grad_accum / world of every step's micro-batches.
  std::unique_ptr<DataParallel> dp = DataParallel::from_environment(dev.device);
  const int rank = dp ? dp->rank() : 0, world = dp ? dp->world_size() : 1;
  const bool lead = rank == 0;  // the process that writes metrics, checkpoints and the model
  COENC_CHECK(c.grad_accum % world == 0,
              "grad_accum ({}) must be a multiple of the number of processes ({}): each process takes grad_accum / "
              "{} of a step's micro-batches, so that the step is the one-process step of the same global batch",
              c.grad_accum, world, world);
  const bool progress = c.progress && lead;
  if (dev.device.is_cuda()) {
    compat::allow_tf32(true);
    compat::training_attention_kernels();
  }
  Built built = build_model(c, dev);
  CoEncoderImpl& model = *built.model;
  COENC_CHECK_CODE(c.autocast != "f16" || dev.device.is_cuda(), Unsupported,
                   "\"autocast\": \"f16\" runs on CUDA only (use \"bf16\" on the CPU)");
  Run run{c, model, dev, {c.autocast != "none", c.autocast == "f16" ? torch::kFloat16 : torch::kBFloat16},
          dp.get(), rank, world, objective_weights(c), model.config().pooling == PoolingMode::Dynamic,
          model.config().ratio};
  for (DecoderLmImpl* part : {model.context_tower->tower.get(), model.language_model.get()})
    part->set_activation_checkpointing(c.activation_checkpointing);
  if (c.train_tower == "lora") model.context_tower->tower->add_lora(c.lora, c.seed + 3);
  if (c.train_decoder == "lora") model.language_model->add_lora(c.lora, c.seed + 4);

  Examples examples(run, built, progress);
  const Trainable trainable = select_trainable(model, c);
  Optimizer opt = make_optimizer(trainable, c);
  // Every process starts from the first one's weights (they agree already when built from the same seed).
  if (dp) dp->broadcast_from_first(trainable.all);
  COENC_CHECK_CODE(c.compression_ratios.empty() || !run.dynamic, Unsupported,
                   "\"compression_ratios\" needs pooling \"mean\" or \"attn\" (dynamic pooling sizes itself)");

  // State: fresh, or resumed from the checkpoint.
  const fs::path out = c.out, ckpt = out / "checkpoint", metrics_path = out / "metrics.jsonl";
  fs::create_directories(out);
  std::mt19937_64 rng(c.seed);
  TrainResult result;
  Window window;
  const Resumed resumed = start_or_resume(run, ckpt, metrics_path, trainable, *opt.adamw, rng, result, window);
  const int64_t step0 = resumed.step;
  std::ofstream metrics;
  if (lead) metrics.open(metrics_path, std::ios::app);
  double eval_seconds = 0;
  if (step0 == 0) {
    const auto e0 = std::chrono::steady_clock::now();
    json m = evaluate(run, examples);
    eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    result.initial_eval_loss = m["eval_loss"];
    m["step"] = 0;
    metrics << m.dump() << "\n";
    metrics.flush();
  }

  // time_budget_s (StepBudget): the run's length is planned from this process's measured speed until a quarter of
  // it is done; a resumed run whose plan was fixed keeps it (state.json's planned_steps), one stopped before that
  // goes on planning with what is left of the budget.
  std::optional<std::chrono::steady_clock::time_point> loop_start;
  auto loop_seconds = [&] {
    return loop_start ? std::chrono::duration<double>(std::chrono::steady_clock::now() - *loop_start).count()
                      : 0.0;
  };
  StepBudget budget{c.time_budget_s > 0, c.time_budget_s - resumed.train_seconds};
  budget.fixed = resumed.planned_fixed;
  auto save = [&](int64_t steps_done, const std::string& rng_snapshot) {
    if (!lead) return;
    json state = {{"format", 1},
                  {"step", steps_done},
                  {"train_seconds", resumed.train_seconds + loop_seconds()},
                  {"planned_steps", c.steps},
                  {"planned_steps_fixed", budget.fixed},
                  {"rng", rng_snapshot},
                  {"tokens", result.tokens_seen},
                  {"initial_eval_loss", result.initial_eval_loss},
                  {"window", window.to_json()},
                  {"config", c.source}};
    save_run_checkpoint(ckpt, trainable.named, *opt.adamw, state);
  };

  ProgressBar bar("training", c.steps, "steps", progress);
  loop_start = std::chrono::steady_clock::now();
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_tokens = 0, step = step0;
  std::string rng_at_start;
  model.train();
  try {
    for (; step < c.steps; ++step) {
      rng_at_start = rng_state(rng);
      const double lr = learning_rate(c, step);
      opt.set_lr(lr);
      const StepStats s = accumulate_step(run, examples, trainable, rng);
      window_tokens += s.tokens;
      result.tokens_seen += s.tokens;
      COENC_CHECK_CODE(std::isfinite(s.loss), Internal, "training diverged at step {} (loss {}); lower lr", step,
                       s.loss);
      if (c.grad_clip > 0) torch::nn::utils::clip_grad_norm_(trainable.all, c.grad_clip);
      opt.adamw->step();
      opt.adamw->zero_grad();
      result.final_train_loss = s.loss;
      ++window.steps;
      window.loss += s.loss;
      window.size += s.size;
      window.distill += s.distill;
      for (int o = 0; o < data::kNumObjectives; ++o)
        if (run.weight[o] > 0) window.obj[o] += s.obj[o], ++window.obj_steps[o];
      window.correct += s.correct;
      window.tokens += s.recon_tokens;

      const int64_t done = step + 1;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double tok_s = static_cast<double>(window_tokens) / std::max(secs, 1e-9);
      bar.update(done, format("loss {} | {} tok/s", std::round(s.loss * 1000) / 1000, static_cast<int64_t>(tok_s)));
      if (auto planned = budget.observe(done - step0, loop_seconds(), eval_seconds, c.eval_every, done, c.steps)) {
        if (dp) {
          // Every process must stop at the same step: they agree on the mean of their plans (all decide
          // here).
          torch::Tensor t = torch::tensor({static_cast<double>(*planned)}, torch::kFloat64).to(dev.device);
          dp->all_reduce_sum({t});
          planned = std::max(done, static_cast<int64_t>(t.cpu().item<double>() / world));
          budget.fixed = done * 4 >= *planned;  // as every process decides it from the agreed plan
        }
        c.steps = *planned;
        bar.set_total(c.steps);
      }
      const bool log = done % c.log_every == 0 || done == c.steps, eval = done % c.eval_every == 0 || done == c.steps;
      if (log || eval) {
        json m = {{"step", done}, {"lr", lr}, {"tokens", result.tokens_seen}};
        if (log && window.steps > 0) {
          const double n = static_cast<double>(window.steps);
          m["train_loss"] = window.loss / n;
          for (int o = 0; o < data::kNumObjectives; ++o)
            if (window.obj_steps[o] > 0)
              m[std::string("train_") + data::objective_name(static_cast<Objective>(o)) + "_loss"] =
                  window.obj[o] / static_cast<double>(window.obj_steps[o]);
          if (run.dynamic && c.size_loss_weight > 0) m["train_size_loss"] = window.size / n;
          if (c.distill > 0) m["train_distill_loss"] = window.distill / n;
          if (window.tokens > 0)
            m["train_reconstruction_accuracy"] =
                static_cast<double>(window.correct) / static_cast<double>(window.tokens);
          m["tokens_per_s"] = tok_s;
          window = Window{};
          window_tokens = 0;
          window_start = std::chrono::steady_clock::now();
        }
        if (eval) {
          result.final_eval = evaluate(run, examples);
          result.final_eval_loss = result.final_eval["eval_loss"];
          m.update(result.final_eval);
        }
        metrics << m.dump() << "\n";
        metrics.flush();
      }
      const bool stop = s.interrupted || (c.stop_after > 0 && done - step0 >= c.stop_after);
      if (stop || (c.save_every > 0 && done % c.save_every == 0)) save(done, rng_state(rng));
      if (stop) {
        result.stopped = true;
        result.interrupted = s.interrupted;
        ++step;
        break;
      }
    }
  } catch (...) {
    // Keep what the finished steps learned (the failed step's partial gradients are not part of it).
    if (step > step0) {
      try {
        save(step, rng_at_start);
      } catch (...) {
      }
    }
    throw;
  }
  result.steps_done = step;
  bar.finish(result.stopped ? format("stopped at step {}; checkpoint in {}", step, ckpt.string())
                            : format("eval loss {} (from {})", result.final_eval_loss, result.initial_eval_loss));
  if (lead) metrics.close();
  if (!result.stopped && lead) write_trained_model(run, built, trainable, out);
  if (lead) write_loss_curve(metrics_path, out / "loss_curve.svg");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace coenc
