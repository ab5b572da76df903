#include "coenc/slot_batch.h"

#include <algorithm>

#include "coenc/error.h"
#include "engine/graph_decoder.h"

namespace coenc {

namespace {

int64_t resolve_n_ctx(const DecoderLm& model, int64_t n_ctx) {
  COENC_CHECK(n_ctx >= 0, "context size must be positive, got {}", n_ctx);
  return n_ctx == 0 ? model->config().max_position_embeddings : n_ctx;
}

}  // namespace

SlotBatch::SlotBatch(DecoderLm model, int64_t n_slots, int64_t n_ctx, bool cuda_graphs)
    : model_(std::move(model)),
      n_ctx_(resolve_n_ctx(model_, n_ctx)),
      // one position more than n_ctx: where a full row that is not stepped takes its stand-in token
      cache_(model_->config(), std::max<int64_t>(n_slots, 1), std::min<int64_t>(n_ctx_, 256), n_ctx_ + 1,
             model_->device_options().device, model_->device_options().dtype),
      slots_(static_cast<size_t>(n_slots)) {
  COENC_CHECK(n_slots > 0, "a slot batch needs at least one slot, got {}", n_slots);
  if (cuda_graphs && model_->device_options().device.is_cuda() && GraphDecoder::supported())
    graphs_ = std::make_unique<GraphRowDecoder>(model_, n_slots);
}

SlotBatch::~SlotBatch() = default;

int64_t SlotBatch::n_free() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; });
}

int64_t SlotBatch::join(const std::vector<Segment>& prompt, torch::Tensor* logits) {
  const int64_t slot = reserve(prompt);
  try {
    prefill(slot, 0, logits);
  } catch (...) {
    leave(slot);
    throw;
  }
  return slot;
}

int64_t SlotBatch::reserve(std::vector<Segment> prompt) {
  auto it = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; });
  COENC_CHECK_CODE(it != slots_.end(), Internal, "no free slot among {}", slots_.size());
  int64_t total = 0;
  for (const Segment& s : prompt) total += s.length();
  COENC_CHECK(total > 0, "nothing to process: the input is empty");
  if (total > n_ctx_)
    fail(ErrorCode::ExceedsContext, "input of {} positions exceeds the context of {} positions", total, n_ctx_);
  // The prompt runs through a session of its own (every check a session makes), then its keys and values move
  // into the slot's row.
  SessionOptions so;
  so.n_ctx = n_ctx_;
  so.cuda_graphs = false;
  Slot slot;
  slot.busy = true;
  slot.prefilling = std::make_unique<Session>(model_, so);
  slot.rest = std::move(prompt);
  slot.n_rest = total;
  *it = std::move(slot);
  return it - slots_.begin();
}

namespace {

// The first `n` positions of `segments`, which keeps the rest.
std::vector<Segment> take_positions(std::vector<Segment>& segments, int64_t n) {
  std::vector<Segment> taken;
  size_t used = 0;
  for (; used < segments.size() && n > 0; ++used) {
    Segment& s = segments[used];
    if (s.length() > n) {  // split it: the head goes, the tail stays
      if (s.is_tokens()) {
        taken.push_back(Segment::tokens(TokenIds(s.ids.begin(), s.ids.begin() + n)));
        s.ids.erase(s.ids.begin(), s.ids.begin() + n);
      } else {
        taken.push_back(Segment::embeddings(s.rows.narrow(0, 0, n)));
        s.rows = s.rows.narrow(0, n, s.rows.size(0) - n);
      }
      break;
    }
    n -= s.length();
    taken.push_back(std::move(s));
  }
  segments.erase(segments.begin(), segments.begin() + static_cast<std::ptrdiff_t>(used));
  return taken;
}

}  // namespace

bool SlotBatch::prefill(int64_t slot, int64_t max_positions, torch::Tensor* logits) {
  COENC_CHECK_CODE(slot >= 0 && slot < n_slots() && slots_[slot].prefilling, Internal,
                   "prefill: slot {} is not reserved", slot);
  Slot& s = slots_[slot];
  const int64_t n = max_positions > 0 ? std::min(max_positions, s.n_rest) : s.n_rest;
  std::vector<Segment> piece = n == s.n_rest ? std::move(s.rest) : take_positions(s.rest, n);
  torch::Tensor last = s.prefilling->prefill(piece);
  s.n_rest -= n;
  if (s.n_rest > 0) return false;
  torch::NoGradGuard no_grad;
  cache_.copy_row(slot, s.prefilling->cache());
  s.length = s.prefilling->n_past();
  s.history = s.prefilling->history();
  s.prefilling.reset();
  s.rest.clear();
  if (logits) *logits = last;
  return true;
}

int64_t SlotBatch::pending(int64_t slot) const {
  COENC_CHECK_CODE(slot >= 0 && slot < n_slots(), Internal, "pending: no slot {}", slot);
  return slots_[static_cast<size_t>(slot)].n_rest;
}

torch::Tensor SlotBatch::step(const std::vector<int64_t>& slots, const TokenIds& tokens) {
  COENC_CHECK_CODE(slots.size() == tokens.size() && !slots.empty(), Internal, "step: {} slots and {} tokens",
                   slots.size(), tokens.size());
  const auto& cfg = model_->config();
  // Rows 0 .. max(slots) run (a graph runs a power of two of them); a row not stepped gets a stand-in token
  // written at its own next position, which its next real token overwrites (a free row's is never read).
  int64_t rows = *std::max_element(slots.begin(), slots.end()) + 1;
  if (graphs_) {
    int64_t pow2 = 1;
    while (pow2 < rows) pow2 *= 2;
    rows = std::min(pow2, n_slots());
  }
  std::vector<int64_t> ids(static_cast<size_t>(rows), 0), positions(static_cast<size_t>(rows), 0);
  std::vector<bool> stepped(static_cast<size_t>(rows), false);
  for (int64_t r = 0; r < rows; ++r) positions[r] = slots_[r].length;  // <= n_ctx: the cache holds n_ctx + 1
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t s = slots[i];
    COENC_CHECK_CODE(s >= 0 && s < n_slots() && slots_[s].busy && !slots_[s].prefilling && !stepped[s], Internal,
                     "step: slot {} is not a decoding slot, or is listed twice", s);
    COENC_CHECK(tokens[i] >= 0 && tokens[i] < cfg.vocab_size, "token id {} outside the vocabulary [0, {})",
                tokens[i], cfg.vocab_size);
    if (slots_[s].length + 1 > n_ctx_)
      fail(ErrorCode::ExceedsContext, "decoding past the context of {} positions", n_ctx_);
    stepped[s] = true;
    ids[s] = tokens[i];
  }
  torch::NoGradGuard no_grad;
  const auto dev = model_->device_options().device;
  auto index = torch::tensor(std::vector<int64_t>(slots.begin(), slots.end()), torch::kInt64).to(dev);
  torch::Tensor logits;
  if (graphs_) {
    logits = graphs_->step(cache_, ids, positions).index_select(0, index).cpu();  // [n, vocab]
  } else {
    ForwardArgs args;
    args.cache = &cache_;
    args.row_positions = torch::tensor(positions, torch::kInt64).to(dev);
    args.row_len = *std::max_element(positions.begin(), positions.end()) + 1;
    torch::Tensor x = model_->embed(torch::tensor(ids, torch::kInt64).to(dev).unsqueeze(1));  // [rows, 1, d]
    torch::Tensor h = model_->forward_hidden(x, args);                                        // [rows, 1, d]
    logits = model_->logits(h.index_select(0, index).squeeze(1)).cpu();                       // [n, vocab]
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slots_[slots[i]];
    ++s.length;
    s.history.push_back(tokens[i]);
  }
  return logits;
}

void SlotBatch::leave(int64_t slot) {
  COENC_CHECK_CODE(slot >= 0 && slot < n_slots(), Internal, "leave: no slot {}", slot);
  slots_[slot] = Slot{};
}

}  // namespace coenc
