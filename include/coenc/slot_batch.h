// Continuous batching: up to n sequences ("slots", as llama.cpp's server calls them) decode together, one
// forward pass per step over all of them. A sequence joins between steps after its own prefill, and leaves
// when its answer is done, freeing its slot for the next; the others never wait for it. The server's
// scheduler drives one SlotBatch (src/serve/server.cpp); each slot's answer is a Generation
// (coenc/generate.h).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "coenc/decoder.h"
#include "coenc/kv_cache.h"
#include "coenc/session.h"
#include "coenc/types.h"

namespace coenc {

class SlotBatch {
 public:
  // `n_slots` sequences of at most `n_ctx` positions each (0: the model's max_position_embeddings). The KV
  // cache of all slots, [n_slots, Hkv, positions, hd] per layer, grows on demand up to n_ctx positions.
  SlotBatch(DecoderLm model, int64_t n_slots, int64_t n_ctx = 0);

  int64_t n_slots() const { return static_cast<int64_t>(slots_.size()); }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_free() const;

  // Prefills `prompt` into the lowest free slot (a Session of its own, whose cache is then copied into the
  // slot's row) and returns the slot; `logits` gets the logits [vocab] of its last position (float32, CPU).
  // Throws Internal when no slot is free, and what Session::prefill throws for a bad or too long prompt (the
  // slot stays free then).
  int64_t join(const std::vector<Segment>& prompt, torch::Tensor* logits);
  // One decode step: appends tokens[i] to slot slots[i] (each slot at most once) and returns the logits
  // [slots.size(), vocab] (float32, CPU), in the order given. One forward pass over rows 0 .. max(slots).
  torch::Tensor step(const std::vector<int64_t>& slots, const TokenIds& tokens);
  // Frees `slot`.
  void leave(int64_t slot);

  bool busy(int64_t slot) const { return slots_.at(static_cast<size_t>(slot)).busy; }
  // Positions held by `slot`, and its token ids so far (for repetition penalties; embedding rows are not
  // tokens).
  int64_t n_past(int64_t slot) const { return slots_.at(static_cast<size_t>(slot)).length; }
  const TokenIds& history(int64_t slot) const { return slots_.at(static_cast<size_t>(slot)).history; }
  const KvCache& cache() const { return cache_; }

 private:
  struct Slot {
    bool busy = false;
    int64_t length = 0;
    TokenIds history;
  };
  DecoderLm model_;
  int64_t n_ctx_;
  KvCache cache_;
  std::vector<Slot> slots_;
};

}  // namespace coenc
