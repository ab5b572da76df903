// Single-token decoding replayed from captured CUDA graphs. A decoder step of a large model is a few hundred
// small kernels; launching them one by one from the host costs more than the GPU needs to run them, so each
// step's kernels are captured once per attention-length bucket and replayed with one launch.
#pragma once

#include <map>
#include <memory>

#include <torch/torch.h>

#include "coenc/decoder.h"
#include "coenc/kv_cache.h"
#include "coenc/types.h"

namespace coenc {

class GraphDecoder {
 public:
  // True when this build can capture CUDA graphs.
  static bool supported();

  // Binds to `model` and `cache` (which it grows to its full length once, so buffer addresses stay fixed).
  GraphDecoder(DecoderLm model, KvCache& cache);
  ~GraphDecoder();

  // Feeds `token` at position cache.length(), advances the cache and returns logits [vocab] float32 on CPU.
  torch::Tensor step(TokenId token);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coenc
