// Per-session key/value cache: the attention keys and values of every position a session has seen, per layer.
// Part of the model layer, because its layout is the attention's (the forward pass writes and reads it); owned by
// the engine's Session and SlotBatch, never by the model, so one model serves many sessions at once.
#pragma once

#include <utility>
#include <vector>

#include <torch/torch.h>

#include "coenc/model_config.h"

namespace coenc {

class KvCache {
 public:
  // An empty cache for `batch` sequences of `config`'s shape, on `device` in `dtype`, with room for `capacity`
  // positions (it grows on demand up to `max_length`).
  KvCache(const ModelConfig& config, int64_t batch, int64_t capacity, int64_t max_length, torch::Device device,
          torch::ScalarType dtype);

  int64_t length() const { return length_; }      // positions stored
  int64_t capacity() const { return capacity_; }  // positions allocated
  int64_t max_length() const { return max_length_; }
  int64_t batch() const { return batch_; }

  // Ensures room for `n` more positions (reallocating and copying when needed). Throws ExceedsContext past
  // max_length().
  void reserve(int64_t n);

  // Writes k, v [B, Hkv, T, hd] of `layer` at positions [length, length + T) and returns views of all stored
  // positions, [B, Hkv, length + T, hd]. Call advance(T) once every layer has written.
  std::pair<torch::Tensor, torch::Tensor> write(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  void advance(int64_t n);
  // Static-shape variant for CUDA graphs: writes one position at the device-side index `pos` ([1] int64) and
  // returns views of the first `len` slots. The host-side length is not changed (call advance(1)).
  std::pair<torch::Tensor, torch::Tensor> write_at(int64_t layer, const torch::Tensor& k, const torch::Tensor& v,
                                                   const torch::Tensor& pos, int64_t len);
  // Allocates the full max_length() now, so that buffer addresses never change afterwards.
  void reserve_all();
  // Forgets positions from `n` on (rewind a conversation, or reuse a shared prefix).
  void truncate(int64_t n);

  // ---- one independent sequence per row (SlotBatch, continuous batching) ----
  // In this use each row has its own length, kept by the caller; length() is not used.
  // Ensures room for `positions` slots in every row (growing geometrically, keeping every row's contents).
  void reserve_rows(int64_t positions);
  // Copies the first `from.length()` positions of `from` (a one-sequence cache of the same shape) into `row`.
  void copy_row(int64_t row, const KvCache& from);
  // Writes k, v [B, Hkv, 1, hd] of `layer` into rows 0 .. B-1, each at its own position `pos` ([B] int64 on
  // the cache's device), and returns views of rows 0 .. B-1 over the first `len` positions, [B, Hkv, len,
  // hd].
  std::pair<torch::Tensor, torch::Tensor> write_rows(int64_t layer, const torch::Tensor& k,
                                                     const torch::Tensor& v, const torch::Tensor& pos,
                                                     int64_t len);

  // The whole buffers of `layer`, [B, Hkv, capacity, hd] (for static-shape decoding).
  const torch::Tensor& keys(int64_t layer) const { return k_[layer]; }
  const torch::Tensor& values(int64_t layer) const { return v_[layer]; }

  // Bytes held by the buffers.
  int64_t bytes() const;

 private:
  void allocate(int64_t capacity, int64_t keep);  // keeps the first `keep` positions of every row
  int64_t batch_, n_kv_heads_, head_dim_, n_layers_;
  int64_t length_ = 0, capacity_ = 0, max_length_;
  torch::Device device_;
  torch::ScalarType dtype_;
  std::vector<torch::Tensor> k_, v_;  // per layer [B, Hkv, capacity, hd]
};

}  // namespace coenc
