// What benchmarks need to time and size work on any device (`coenc bench`, the trainer's step benchmark):
// device synchronisation, peak memory, TF32, bf16 autocast, medians, random inputs. Thin wrappers of
// src/core/torch_compat.h, so that tools need no private header.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "coenc/types.h"

namespace coenc {

// Waits for all queued work on `device` (for timing; nothing to wait for on the CPU).
void synchronize_device(const torch::Device& device);
// Peak bytes allocated on `device` since the last reset (0 on the CPU, where it is not tracked).
int64_t peak_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);
// float32 matrix products through TF32 tensor cores (as training on CUDA runs them).
void allow_tf32(bool on);

// bf16 autocast on `device` for the lifetime of the object (off when `enabled` is false); the state before is
// restored after.
class Bf16Autocast {
 public:
  Bf16Autocast(const torch::Device& device, bool enabled);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The median of `values` (the upper one of the two middle values for an even count); `values` must not be empty.
double median(std::vector<double> values);
// `n` token ids drawn uniformly from [0, vocab) by a generator seeded with `seed` (the same ids every time).
TokenIds random_token_ids(int64_t n, int64_t vocab, uint64_t seed);

}  // namespace coenc
