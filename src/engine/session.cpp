#include "coenc/session.h"

#include "coenc/error.h"
#include "core/torch_compat.h"
#include "engine/graph_decoder.h"

namespace coenc {

Segment Segment::tokens(TokenIds ids) {
  Segment s;
  s.ids = std::move(ids);
  return s;
}

Segment Segment::embeddings(torch::Tensor rows) {
  COENC_CHECK(rows.defined() && rows.dim() == 2, "embedding segment must be [n, d_model], got {}",
              rows.defined() ? rows.sizes() : c10::IntArrayRef{});
  Segment s;
  s.rows = std::move(rows);
  return s;
}

namespace {

int64_t resolve_n_ctx(const DecoderLm& model, const SessionOptions& o) {
  const int64_t max_pos = model->config().max_position_embeddings;
  COENC_CHECK(o.n_ctx >= 0, "context size must be positive, got {}", o.n_ctx);
  COENC_CHECK_CODE(o.n_ctx <= max_pos, ExceedsContext,
                   "a context of {} positions is more than the decoder's window of {} (max_position_embeddings)",
                   o.n_ctx, max_pos);
  return o.n_ctx == 0 ? max_pos : o.n_ctx;
}

}  // namespace

Session::Session(DecoderLm model, SessionOptions options)
    : model_(std::move(model)),
      options_(options),
      n_ctx_(resolve_n_ctx(model_, options)),
      cache_(model_->config(), 1, std::min<int64_t>(n_ctx_, 256), n_ctx_, model_->device_options().device,
             model_->device_options().dtype) {
  COENC_CHECK(options_.n_batch > 0, "batch size must be positive, got {}", options_.n_batch);
}

Session::~Session() = default;

torch::Tensor Session::embed_segments(const std::vector<Segment>& segments, int64_t begin, int64_t end) {
  const auto& dev = model_->device_options();
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (const Segment& s : segments) {
    const int64_t n = s.length();
    const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + n);
    if (lo < hi) {
      if (s.is_tokens()) {
        std::vector<int64_t> ids(s.ids.begin() + (lo - offset), s.ids.begin() + (hi - offset));
        auto t = torch::tensor(ids, torch::kInt64).to(dev.device).unsqueeze(0);
        parts.push_back(model_->embed(t));
      } else {
        parts.push_back(s.rows.narrow(0, lo - offset, hi - lo).to(dev.device, dev.dtype).unsqueeze(0));
      }
    }
    offset += n;
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 1);  // [1, T, d_model]
}

torch::Tensor Session::run(const std::vector<Segment>& segments, bool all_logits) {
  const auto& cfg = model_->config();
  int64_t total = 0;
  for (const Segment& s : segments) {
    if (s.is_tokens()) {
      for (TokenId id : s.ids)
        COENC_CHECK(id >= 0 && id < cfg.vocab_size, "token id {} outside the vocabulary [0, {})", id, cfg.vocab_size);
    } else {
      COENC_CHECK(s.rows.size(1) == cfg.hidden_size, "embedding segment has rows of width {}, the decoder expects {}",
                  s.rows.size(1), cfg.hidden_size);
      COENC_CHECK(torch::isfinite(s.rows).all().item<bool>(), "embedding segment holds NaN or infinite values");
    }
    total += s.length();
  }
  COENC_CHECK(total > 0, "nothing to process: the input is empty");
  if (n_past() + total > n_ctx_)
    fail(ErrorCode::ExceedsContext, "input of {} positions (after {} already in the session) exceeds the context of {} positions",
         total, n_past(), n_ctx_);

  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> logits;
  torch::Tensor last;
  for (int64_t begin = 0; begin < total; begin += options_.n_batch) {
    const int64_t end = std::min(total, begin + options_.n_batch);
    torch::Tensor x = embed_segments(segments, begin, end);
    ForwardArgs args;
    args.cache = &cache_;
    args.start_pos = cache_.length();
    torch::Tensor h = model_->forward_hidden(x, args);  // [1, T, d]
    if (all_logits) logits.push_back(model_->logits(h[0]).cpu());
    else if (end == total) last = model_->logits(h[0][-1]).cpu();
  }
  // Record token ids (for repetition penalties) with their positions.
  int64_t pos = n_past() - total;
  for (const Segment& s : segments) {
    if (s.is_tokens())
      for (size_t i = 0; i < s.ids.size(); ++i) {
        history_.push_back(s.ids[i]);
        history_positions_.push_back(pos + static_cast<int64_t>(i));
      }
    pos += s.length();
  }
  return all_logits ? torch::cat(logits, 0) : last;
}

torch::Tensor Session::prefill(const std::vector<Segment>& segments) { return run(segments, false); }

torch::Tensor Session::prefill_all_logits(const std::vector<Segment>& segments) { return run(segments, true); }

torch::Tensor Session::decode(TokenId token) {
  const auto& cfg = model_->config();
  COENC_CHECK(token >= 0 && token < cfg.vocab_size, "token id {} outside the vocabulary [0, {})", token, cfg.vocab_size);
  if (n_past() + 1 > n_ctx_)
    fail(ErrorCode::ExceedsContext, "decoding past the context of {} positions", n_ctx_);
  if (model_->device_options().device.is_cuda() && options_.cuda_graphs && GraphDecoder::supported()) {
    torch::NoGradGuard no_grad;
    if (!graph_) graph_ = std::make_unique<GraphDecoder>(model_, cache_);
    torch::Tensor logits = graph_->step(token);
    history_.push_back(token);
    history_positions_.push_back(n_past() - 1);
    return logits;
  }
  return run({Segment::tokens({token})}, false);
}

void Session::truncate(int64_t n) {
  cache_.truncate(n);
  while (!history_positions_.empty() && history_positions_.back() >= n) {
    history_positions_.pop_back();
    history_.pop_back();
  }
}

}  // namespace coenc
