// Training. For now: plain next-token language modelling of a decoder from scratch or from a checkpoint (how the
// embedded default model is made). The Co-Encoder objectives (reconstruction, continuation, QA) build on the same
// loop (issue 4).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/model_config.h"

namespace coenc {

// Everything a run needs; `coenc train --config FILE.json` fills it from a JSON object with the same field names.
struct TrainConfig {
  std::string objective = "lm";           // only "lm" so far
  // The model: start from a Hugging Face directory (`init_from`), or from scratch with `model_config` (a
  // config.json object) and random weights.
  std::string init_from;
  nlohmann::json model_config;
  std::string tokenizer;                  // tokenizer.json / tokenizer.model / folder; copied into the output
  std::vector<std::string> train_files;   // plain UTF-8 text; documents separated by "\n\n<|doc|>\n" (corpus format)
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

  // Parses a JSON object; unknown fields and wrong types are errors naming `where` and the field.
  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
};

struct TrainResult {
  double final_train_loss = 0, final_eval_loss = 0, initial_eval_loss = 0;
  int64_t tokens_seen = 0;
  double seconds = 0;
};

// Runs the training described by `config`, writes the model (weights, config.json, tokenizer files) to
// config.out atomically per file, and metrics lines to out/metrics.jsonl.
TrainResult train(const TrainConfig& config);

}  // namespace coenc
