// The Co-Encoder training run (TrainConfig::co_encoder_mode): reconstruction, continuation, QA and decoder-only LM
// objectives mixed by weight, checkpoints and exact resume. Called by coenc::train.
#pragma once

#include "coenc/train.h"

namespace coenc {

TrainResult train_co_encoder(const TrainConfig& config);

// The learning rate at optimizer step `step` (0-based): linear warm-up to config.lr over warmup_steps, then
// cosine decay to lr x min_lr_ratio at the last step. Shared by both training loops.
double learning_rate(const TrainConfig& config, int64_t step);

}  // namespace coenc
