// One forward pass of the Co-Encoder objectives over a batch of examples of any mix of objectives.
//
// Every example becomes one decoder row, right-padded: [BOC] v_1 .. v_k [EOC] prompt target (or prompt target
// alone for an example without context). All context chunks of the batch go through the tower and connector as
// one padded batch; the valid vectors are scattered into the rows and the sequence assembled with one gather, so
// gradients reach the connector (and the tower) through the decoder. Padding only follows real positions, so the
// decoder's plain causal mask keeps it out without a key mask; the loss is taken on target positions only (logits
// are computed for those rows alone).
#pragma once

#include <array>
#include <vector>

#include <torch/torch.h>

#include "coenc/co_encoder.h"
#include "train/co_encoder_data.h"

namespace coenc::data {

struct BatchLoss {
  // Per objective: the summed token cross-entropy (with gradient), the token count and the correct argmax count.
  std::array<torch::Tensor, kNumObjectives> loss_sum;
  std::array<int64_t, kNumObjectives> tokens{};
  std::array<int64_t, kNumObjectives> correct{};
  // Distillation (with `distill`): the summed KL(full reading || compressed reading) of the next-token
  // distributions on the target tokens of every example with a context and a teacher_prompt that fits the
  // decoder, and the number of those tokens. The full reading is the same decoder's, without gradient.
  torch::Tensor distill_sum;
  int64_t distill_tokens = 0;
  torch::Tensor size_loss;     // [] the connector's size loss over all chunks (undefined unless dynamic pooling)
  int64_t context_tokens = 0;  // tokens the tower read
  int64_t decoder_positions = 0;
  double mean_vectors_per_chunk = 0;
};

// Runs `examples` through `model` (with gradients when GradMode is on). Throws ExceedsContext when a row is longer
// than the decoder's max_position_embeddings. With `distill`, the full readings run too (one more decoder pass,
// no gradient) and fill distill_sum / distill_tokens.
BatchLoss co_encoder_batch_loss(CoEncoderImpl& model, const std::vector<Example>& examples, bool distill = false);

}  // namespace coenc::data
