// Training: plain next-token language modelling of a decoder from scratch or from a checkpoint (how the embedded
// default model is made), and the Co-Encoder objectives (reconstruction, continuation, QA, mixed by weight) that
// train the connector (and optionally the tower and decoder) of a Co-Encoder. docs/co_encoder.md, "Training".
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/decoder.h"
#include "coenc/model_config.h"

namespace coenc {

// Everything a run needs; `coenc train --config FILE.json` fills it from a JSON object with the same field names.
struct TrainConfig {
  // "objectives": weight of each objective in the loss: "reconstruction", "continuation", "qa", "qa_text"
  // (the QA example with its context as plain text before the question: the full-context reading), "lm",
  // "passkey", "lookup", "lookup_text", "cloze", "cloze_text" (src/train/co_encoder_data.h says what each example
  // is). The older "objective": "lm" means {"lm": 1}. Without a Co-Encoder (co_encoder / co_encoder_config) only
  // "lm" is allowed.
  std::map<std::string, double> objectives = {{"lm", 1.0}};
  // The model: start from a Hugging Face directory (`init_from`), or from scratch with `model_config` (a
  // config.json object) and random weights.
  std::string init_from;
  nlohmann::json model_config;
  std::string tokenizer;                  // tokenizer.json / tokenizer.model / folder; copied into the output
  // plain UTF-8 text, or .xz of it; documents separated by "\n\n<|doc|>\n" (corpus format)
  std::vector<std::string> train_files;
  double eval_fraction = 0.01;            // the last fraction of the tokens is held out for evaluation
  std::string out;                        // output model directory (Hugging Face layout)
  int64_t seq_len = 256;                  // tokens per training sequence
  int64_t batch_size = 32;                // sequences per optimizer step (after accumulation)
  int64_t grad_accum = 1;                 // micro-batches per step; batch_size must be a multiple
  int64_t steps = 1000;
  double lr = 1e-3;                       // peak learning rate (AdamW)
  double min_lr_ratio = 0.1;              // cosine decays to lr x this
  int64_t warmup_steps = 100;             // linear warm-up
  double weight_decay = 0.1;              // on matrices only, not on norms or biases
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;                 // max global gradient norm; <= 0 disables
  int64_t eval_every = 200;               // steps between evaluations (and metrics lines)
  int64_t eval_batches = 8;
  uint64_t seed = 0;
  std::string device = "cpu";             // cpu, cuda, cuda:N
  bool progress = true;

  // --- the Co-Encoder objectives (src/train/co_encoder_trainer.cpp) ---
  // The model: a checkpoint directory (`co_encoder`), or `co_encoder_config` (a Co-Encoder config.json object;
  // context_config / text_config may be left out when `tower_from` / `decoder_from` name Hugging Face model
  // directories to load them from) with random weights for whatever is not loaded (std `init_std`).
  std::string co_encoder;
  nlohmann::json co_encoder_config;
  std::string tower_from, decoder_from;
  double init_std = 0.02;
  // Tokenizers: `context_tokenizer` (the tower's) and `text_tokenizer` (the decoder's), or `tokenizer` for both;
  // by default those of the `co_encoder` checkpoint (context_tokenizer/, text_tokenizer/) or of tower_from /
  // decoder_from.
  std::string context_tokenizer, text_tokenizer;
  std::vector<std::string> qa_files;      // JSONL (or .xz of it): {"context", "question", "answers": [..] or "..."}
  // "train": which parts learn. The connector ("connector": true); "tower": "frozen" | "full" | "lora";
  // "decoder": "frozen" | "full" | "lora".
  bool train_connector = true;
  std::string train_tower = "frozen", train_decoder = "frozen";
  // "lr_scale": {"connector": x, "tower": y, "decoder": z}: each trained part's learning rate is lr x its scale
  // (default 1; 0 holds a part still while its gradients still flow): e.g. a decoder that must learn to read
  // vectors without forgetting text moves slower than a fresh connector.
  struct PartScales {
    double connector = 1, tower = 1, decoder = 1;
    bool all_one() const { return connector == 1 && tower == 1 && decoder == 1; }
  } lr_scale;
  // "lora": {"rank", "alpha", "targets"} for the parts trained with "lora". Adapters are merged into the weights
  // when the trained model is written, so the checkpoint stays in the seed's layout (the part is then embedded).
  LoraOptions lora;
  // "autocast": "none" | "bf16" | "f16": mixed precision (matrix products and attention in that dtype, weights,
  // optimizer state and losses in float32). bf16 on the CPU or CUDA, f16 on CUDA.
  std::string autocast = "none";
  // "activation_checkpointing": recompute each tower / decoder layer in the backward pass instead of keeping its
  // activations (big towers, long chunks).
  bool activation_checkpointing = false;
  // A frozen tower / decoder loaded from a directory (tower_from, decoder_from, or a checkpoint's
  // *_path) is referenced from the written checkpoint by a relative path; "embed_tower" / "embed_decoder" copy it
  // in instead. A trained part is always embedded.
  bool embed_tower = false, embed_decoder = false;
  // "save_dtype": "f32" | "bf16": the dtype of the tensors in the written checkpoint (run checkpoints stay f32).
  std::string save_dtype = "f32";
  // > 0: the written model's weights are shards of at most this many MB (10^6 bytes) with a
  // model.safetensors.index.json (Hugging Face's layout); 0: one model.safetensors.
  double max_shard_mb = 0;
  int64_t context_tokens = 0;             // tokens compressed per reconstruction / continuation example (0: chunk_size)
  // > 0: training examples draw their context length from [min_context_tokens, context_tokens] (evaluation
  // examples keep context_tokens).
  int64_t min_context_tokens = 0;
  int64_t continuation_tokens = 64;       // tokens of text after the compressed part (continuation, lm)
  int64_t max_context_tokens = 0;         // QA contexts are cut to this many tokens (0: 4 x chunk_size)
  int64_t passkey_tokens = 0;             // the longest passkey haystack (objective passkey; 0: context_tokens)
  int64_t lm_tokens = 0;                  // plain-text window of objective lm (0: continuation_tokens)
  double size_loss_weight = 0.1;          // weight of the connector's size_loss (dynamic pooling only)
  // > 0: distillation. The loss adds this weight times the mean KL divergence, per target token, of the
  // compressed reading's next-token distribution from the full reading's (the same decoder reading the context
  // as text, without gradient), on the continuation and QA examples whose full reading fits the decoder: the
  // compressed context is taught to say what the text says, not only the next token.
  double distill = 0;
  int64_t log_every = 0;                  // steps between metrics lines (0: eval_every)
  int64_t save_every = 0;                 // steps between checkpoints in out/checkpoint (0: only when stopping)
  bool resume = false;                    // continue from out/checkpoint exactly where it stopped
  int64_t stop_after = 0;                 // stop (saving a checkpoint) after this many steps of this run; 0: never
  // "time_budget_s": fit the run into this many seconds of training loop (0: no budget). `steps` becomes an
  // upper bound: the run's length is planned from the measured speed of its latest steps (with the first
  // evaluation's time spread over eval_every) every 5 steps until a quarter of it is done, then fixed
  // (StepBudget); the cosine schedule decays over the planned run. A resumed run keeps a fixed plan, or goes
  // on planning with what is left.
  double time_budget_s = 0;
  // "tower_layers": the tower keeps only the first N layers of `tower_from` (0: all); context_feature_layer
  // then counts in the shortened tower. A small tower cut from the decoder's own pretrained layers.
  int64_t tower_layers = 0;
  // "compression_ratios": train one connector at several ratios (pooling "mean" / "attn"): every micro-batch
  // draws its ratio uniformly from this list; evaluation and the written checkpoint use the config's ratio.
  std::vector<int64_t> compression_ratios;

  nlohmann::json source;                  // the JSON this was parsed from (a resumed run must match it)

  // True when the run trains a Co-Encoder (co_encoder or co_encoder_config given).
  bool co_encoder_mode() const { return !co_encoder.empty() || !co_encoder_config.is_null(); }

  // Parses a JSON object; unknown fields and wrong types are errors naming `where` and the field.
  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
};

// Fits a run into `budget_s` seconds (TrainConfig::time_budget_s). Every kCheckSteps steps it checks the clock
// (stopping at once where the budget is spent) and, after kWarmSteps slow warm-up steps, plans the run's length
// from the speed of the latest steps (a window of up to kWindowSteps: GPU steps speed up for a while as allocators
// and kernels warm up, so the first steps alone would plan too short a run), until a quarter of the planned run is
// done; then the length is fixed. A plan comes back at every check, at step counts only, so that the processes of
// a data-parallel run decide at the same steps (and agree on the plan). Checks every few steps keep runs of slow
// steps (seconds each) within their budget.
struct StepBudget {
  static constexpr int64_t kCheckSteps = 5, kWarmSteps = 10, kWindowSteps = 50;
  bool enabled = false;
  double budget_s = 0;  // seconds of training loop left for this process (<= 0: spent, stop at once)
  bool fixed = false;
  double mark_seconds = 0;  // where the timed window starts
  int64_t mark_step = 0;
  static_assert(kWarmSteps % kCheckSteps == 0, "the window starts at a check");
  // done_here: steps this process has finished; seconds: since its loop started; eval_seconds: one
  // evaluation's time; done_total, planned: steps done and planned in the whole run (a resumed one counts the
  // earlier parts). Returns the plan at a check (every kCheckSteps steps until it is fixed), nullopt otherwise.
  std::optional<int64_t> observe(int64_t done_here, double seconds, double eval_seconds, int64_t eval_every,
                                 int64_t done_total, int64_t planned);
};

struct TrainResult {
  double final_train_loss = 0, final_eval_loss = 0, initial_eval_loss = 0;
  int64_t tokens_seen = 0;
  double seconds = 0;
  int64_t steps_done = 0;                 // optimizer steps completed in total (resumed runs included)
  bool stopped = false;                   // stopped early (stop_after or Ctrl-C) with a checkpoint saved
  bool interrupted = false;               // ... because of SIGINT (Ctrl-C)
  nlohmann::json final_eval;              // Co-Encoder: the last evaluation's metrics (eval_* fields)
};

// Runs the training described by `config`, writes the model (weights, config.json, tokenizer files) to
// config.out atomically per file, and metrics lines to out/metrics.jsonl. Co-Encoder runs also write
// out/loss_curve.svg and checkpoints in out/checkpoint/; a SIGINT during such a run saves a checkpoint and returns
// with `stopped` set (the final model is then not written).
TrainResult train(const TrainConfig& config);

// The throughput of Co-Encoder training steps as `coenc train` runs them (`coenc bench --train-step`): tower and
// decoder of the given shapes with random float32 weights, bf16 autocast on CUDA, the decoder frozen, the
// connector (mean pooling at `ratio`) and the tower (`train_tower`) trained with AdamW. Each step is `examples`
// continuation examples: `chunk` tokens compressed, then `target` tokens the decoder predicts. Timed: forward,
// backward, optimizer step; one warm-up step, then the median of `reps`. Returns {"train_tower", "examples",
// "chunk", "target", "ratio", "activation_checkpointing", "autocast", "seconds_per_step", "context_tokens_per_s",
// "tokens_per_s", "decoder_positions", "peak_bytes"}.
struct TrainStepBenchmark {
  ModelConfig tower, decoder;
  int64_t ratio = 4;
  int64_t chunk = 512;
  int64_t target = 128;
  int64_t examples = 8;
  std::string train_tower = "full";  // full | lora | frozen
  bool activation_checkpointing = false;
  int reps = 3;
  torch::Device device = torch::kCPU;
};
nlohmann::json benchmark_train_steps(const TrainStepBenchmark& benchmark);

// `coenc train --nproc N`: runs `argv` (this program, without --nproc) N times with RANK / WORLD_SIZE /
// LOCAL_RANK / MASTER_ADDR / MASTER_PORT set (a free local port), waits for all, and stops the others when one
// fails. Returns the exit status to use: 0, or the first failure's.
int launch_data_parallel(int nproc, const std::vector<std::string>& argv);
// (The processes join through src/train/data_parallel.h: each reads RANK and WORLD_SIZE.)

}  // namespace coenc
