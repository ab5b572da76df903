// The sampling chain: how the next token is picked from a position's logits.
#pragma once

#include <cstdint>
#include <random>

#include <torch/torch.h>

#include "coenc/types.h"

namespace coenc {

// Flat options with their defaults (llama.cpp's, which users know). Applied in this order: repetition penalty,
// top-k, top-p, min-p, temperature, then a draw. temperature <= 0 is greedy: the highest logit after penalties.
struct SamplingOptions {
  float temperature = 0.8f;
  int top_k = 40;               // keep the k most likely tokens; <= 0 keeps all
  float top_p = 0.95f;          // keep the smallest set whose probability reaches p; >= 1 keeps all
  float min_p = 0.05f;          // drop tokens less likely than min_p x the most likely; <= 0 keeps all
  float repetition_penalty = 1.0f;  // > 1 discourages tokens among the last `penalty_last_n`; 1 = off
  int penalty_last_n = 64;
  uint64_t seed = 0;            // the same seed, model and prompt give the same text
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  // Picks a token from `logits` ([vocab] float32, CPU); `history` is the sequence so far (for penalties).
  TokenId sample(const torch::Tensor& logits, const TokenIds& history);
  const SamplingOptions& options() const { return options_; }

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace coenc
