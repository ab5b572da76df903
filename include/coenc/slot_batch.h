// Continuous batching: up to n sequences ("slots", as llama.cpp's server calls them) decode together, one
// forward pass per step over all of them. A sequence joins between steps after its own prefill, and leaves
// when its answer is done, freeing its slot for the next; the others never wait for it. The server's
// scheduler drives one SlotBatch (src/serve/server.cpp); each slot's answer is a Generation
// (coenc/generate.h).
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "coenc/decoder.h"
#include "coenc/kv_cache.h"
#include "coenc/session.h"
#include "coenc/types.h"

namespace coenc {

class GraphRowDecoder;

class SlotBatch {
 public:
  // `n_slots` sequences of at most `n_ctx` positions each (0: the model's max_position_embeddings). The KV
  // cache of all slots, [n_slots, Hkv, positions, hd] per layer, grows on demand up to n_ctx positions. On CUDA
  // the steps replay captured graphs (one per power-of-two row count and attention length bucket) unless
  // `cuda_graphs` is false.
  SlotBatch(DecoderLm model, int64_t n_slots, int64_t n_ctx = 0, bool cuda_graphs = true);
  ~SlotBatch();
  SlotBatch(const SlotBatch&) = delete;
  SlotBatch& operator=(const SlotBatch&) = delete;

  int64_t n_slots() const { return static_cast<int64_t>(slots_.size()); }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_free() const;

  // Prefills `prompt` into the lowest free slot (a Session of its own, whose cache is then copied into the
  // slot's row) and returns the slot; `logits` gets the logits [vocab] of its last position (float32, CPU).
  // Throws Internal when no slot is free, and what Session::prefill throws for a bad or too long prompt (the
  // slot stays free then). The same as reserve() then prefill() of the whole prompt.
  int64_t join(const std::vector<Segment>& prompt, torch::Tensor* logits);

  // Chunked prefill: reserve() takes the lowest free slot for `prompt` and returns it; prefill() then reads the
  // prompt a piece at a time, so that the answers in progress take their steps between the pieces instead of
  // waiting for a whole long prompt. A reserved slot is busy but is not stepped until its prompt is all in.
  // reserve throws Internal when no slot is free, InvalidInput for an empty prompt and ExceedsContext for one
  // longer than n_ctx (the slot stays free then).
  int64_t reserve(std::vector<Segment> prompt);
  // Reads up to `max_positions` more positions of reserved `slot`'s prompt (all that is left when
  // max_positions <= 0). True once the prompt is all in: its keys and values are then in the slot's row, the
  // slot decodes like a joined one, and `logits` gets the logits [vocab] of its last position (float32, CPU).
  // Throws what Session::prefill throws for bad ids or embedding rows (the slot stays reserved: leave() frees it).
  bool prefill(int64_t slot, int64_t max_positions, torch::Tensor* logits);
  // Positions of a reserved slot's prompt not read yet (0 for a free slot or one that decodes).
  int64_t pending(int64_t slot) const;
  // One decode step: appends tokens[i] to slot slots[i] (each slot at most once) and returns the logits
  // [slots.size(), vocab] (float32, CPU), in the order given. One forward pass over rows 0 .. max(slots) (with
  // CUDA graphs, up to the next power of two).
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
    // while reserved: the session its prompt is read into, and the part of the prompt not read yet
    std::unique_ptr<Session> prefilling;
    std::vector<Segment> rest;
    int64_t n_rest = 0;
  };
  DecoderLm model_;
  int64_t n_ctx_;
  KvCache cache_;
  std::vector<Slot> slots_;
  std::unique_ptr<GraphRowDecoder> graphs_;  // CUDA graphs of the step, or null
};

}  // namespace coenc
