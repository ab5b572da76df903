// Decoding replayed from captured CUDA graphs. A decoder step of a large model is a few hundred small kernels;
// launching them one by one from the host costs more than the GPU needs to run them, so each step's kernels are
// captured once per attention-length bucket (and, batched, per row count) and replayed with one launch.
// GraphDecoder serves one Session; GraphRowDecoder the batched step of a SlotBatch.
#pragma once

#include <map>
#include <memory>
#include <vector>

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

// The batched step of continuous batching (SlotBatch::step) from CUDA graphs: one graph per (rows, attention
// length bucket). The cache is the caller's, [rows.., Hkv, positions, hd] per layer as KvCache::write_rows uses
// it; when it is reallocated (it grows on demand) every graph is dropped and captured again.
class GraphRowDecoder {
 public:
  // `max_rows`: the most rows a step may have (the slot batch's size).
  GraphRowDecoder(DecoderLm model, int64_t max_rows);
  ~GraphRowDecoder();

  // Feeds ids[r] to row r at position positions[r] for rows 0 .. ids.size() - 1, each attending over its own
  // positions 0 .. positions[r], and returns the logits [rows, vocab] on the device: the graph's output buffer,
  // valid until the next step. The cache's host-side lengths are the caller's to keep.
  torch::Tensor step(KvCache& cache, const std::vector<int64_t>& ids, const std::vector<int64_t>& positions);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coenc
