// A Session is one conversation with a decoder: it owns the KV cache and everything else that changes per
// request, and shares the model's (immutable) weights with every other session of the same model.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "coenc/decoder.h"
#include "coenc/kv_cache.h"
#include "coenc/types.h"

namespace coenc {

class GraphDecoder;

// One piece of a decoder input: token ids, or embedding rows [n, d_model] that enter the decoder as they are
// (compressed context vectors, like llama.cpp's llama_batch `embd`).
struct Segment {
  TokenIds ids;
  torch::Tensor rows;

  static Segment tokens(TokenIds ids);
  static Segment embeddings(torch::Tensor rows);
  bool is_tokens() const { return !rows.defined(); }
  int64_t length() const { return is_tokens() ? static_cast<int64_t>(ids.size()) : rows.size(0); }
};

struct SessionOptions {
  int64_t n_ctx = 0;      // positions the session may hold; 0: the model's max_position_embeddings
  int64_t n_batch = 512;  // prefill processes at most this many positions per forward pass (bounds memory)
  bool cuda_graphs = true;  // on CUDA, replay captured graphs for single-token decoding
};

class Session {
 public:
  Session(DecoderLm model, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Appends `segments` to the sequence and returns the logits [vocab] (float32, CPU) of its last position.
  // Throws ExceedsContext when the sequence would outgrow n_ctx, InvalidInput for bad ids or embedding shapes.
  torch::Tensor prefill(const std::vector<Segment>& segments);
  // Appends `segments` and returns the logits of every new position, [T, vocab] float32 on CPU.
  torch::Tensor prefill_all_logits(const std::vector<Segment>& segments);
  // Appends one token and returns its logits [vocab] (float32, CPU).
  torch::Tensor decode(TokenId token);

  int64_t n_past() const { return cache_.length(); }
  int64_t n_ctx() const { return n_ctx_; }
  // Token ids fed so far (embedding rows are not tokens and are not listed); used by repetition penalties.
  const TokenIds& history() const { return history_; }
  // Forgets everything from position n on.
  void truncate(int64_t n);
  const KvCache& cache() const { return cache_; }
  const DecoderLm& model() const { return model_; }

 private:
  torch::Tensor embed_segments(const std::vector<Segment>& segments, int64_t begin, int64_t end);
  torch::Tensor run(const std::vector<Segment>& segments, bool all_logits);

  DecoderLm model_;
  SessionOptions options_;
  int64_t n_ctx_;
  KvCache cache_;
  TokenIds history_;
  std::vector<int64_t> history_positions_;  // the position of each history_ entry (for truncate)
  std::unique_ptr<GraphDecoder> graph_;  // CUDA only: captured single-token decode
};

}  // namespace coenc
