#include "train/co_encoder_objectives.h"

#include <algorithm>

#include "coenc/error.h"

namespace coenc::data {

namespace {

torch::Tensor i64(const std::vector<int64_t>& v, const torch::Device& dev) {
  return torch::tensor(v, torch::kInt64).to(dev);
}

}  // namespace

// The decoder's log-probabilities [M, V] (float32, no gradient) for the target tokens of examples `rows`, each read
// as teacher_prompt then target (right-padded, one pass), in row order and target order within a row.
torch::Tensor full_reading_log_probs(DecoderLm& lm, const std::vector<Example>& examples,
                                     const std::vector<int64_t>& rows, const torch::Device& dev) {
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(rows.size());
  int64_t width = 0;
  for (int64_t r : rows)
    width = std::max<int64_t>(width, examples[r].teacher_prompt.size() + examples[r].target.size());
  auto ids = torch::zeros({n, width}, torch::kInt64);
  auto on = torch::zeros({n, width}, torch::kBool);  // positions that predict a target token
  auto* ip = ids.data_ptr<int64_t>();
  auto* op = on.data_ptr<bool>();
  for (int64_t i = 0; i < n; ++i) {
    const Example& ex = examples[rows[i]];
    const int64_t p = static_cast<int64_t>(ex.teacher_prompt.size()), t = static_cast<int64_t>(ex.target.size());
    for (int64_t j = 0; j < p; ++j) ip[i * width + j] = ex.teacher_prompt[j];
    for (int64_t j = 0; j < t; ++j) ip[i * width + p + j] = ex.target[j];
    for (int64_t j = p - 1; j < p + t - 1; ++j) op[i * width + j] = true;  // position j predicts token j + 1
  }
  auto hidden = lm->forward_hidden(lm->embed(ids.to(dev)), ForwardArgs{});  // [n, width, d]
  return lm->logits(hidden.index({on.to(dev)})).to(torch::kFloat32).log_softmax(-1);
}

BatchLoss co_encoder_batch_loss(CoEncoderImpl& model, const std::vector<Example>& examples, bool distill) {
  COENC_CHECK_CODE(!examples.empty(), Internal, "empty training batch");
  const CoEncoderConfig& cfg = model.config();
  const auto dev = model.device_options().device;
  const int64_t b = static_cast<int64_t>(examples.size()), d = cfg.text.hidden_size, c = cfg.chunk_size;
  auto& lm = model.language_model;
  BatchLoss out;

  // --- the context chunks of every example, one padded tower batch ---
  std::vector<int64_t> chunk_owner, chunk_len;
  int64_t width = 0;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = static_cast<int64_t>(examples[i].context.size());
    for (int64_t s = 0; s < n; s += c) {
      chunk_owner.push_back(i);
      chunk_len.push_back(std::min(c, n - s));
      width = std::max(width, chunk_len.back());
    }
    out.context_tokens += n;
  }
  const int64_t n_chunks = static_cast<int64_t>(chunk_owner.size());
  std::vector<int64_t> k(b, 0);  // vectors per example
  torch::Tensor vectors;         // [B, Vmax, d]
  int64_t vmax = 0;
  if (n_chunks > 0) {
    auto ids = torch::zeros({n_chunks, width}, torch::kInt64);
    auto* p = ids.data_ptr<int64_t>();
    int64_t row = 0;
    for (int64_t i = 0; i < b; ++i) {
      const auto& ctx = examples[i].context;
      for (size_t s = 0; s < ctx.size(); s += c, ++row)
        for (int64_t t = 0; t < chunk_len[row]; ++t) p[row * width + t] = ctx[s + t];
    }
    ConnectorOutput co = model.forward_context(ids.to(dev), i64(chunk_len, torch::kCPU));
    out.size_loss = co.size_loss;
    // Valid vectors in (chunk, slot) order, which is example order: each one's rank within its example is its
    // index minus the number of vectors of earlier examples.
    auto valid = co.mask.reshape({-1});                                             // [Nc K]
    auto rows = co.vectors.reshape({-1, d}).index({valid});                         // [R, d]
    auto owner = i64(chunk_owner, dev).unsqueeze(1).expand({n_chunks, co.mask.size(1)}).reshape({-1}).index({valid});
    auto counts = torch::bincount(owner, {}, b);                                    // [B]
    auto first = counts.cumsum(0) - counts;
    auto rank = torch::arange(rows.size(0), owner.options()) - first.index({owner});
    auto counts_cpu = counts.cpu();
    for (int64_t i = 0; i < b; ++i) k[i] = counts_cpu[i].item<int64_t>();
    vmax = counts_cpu.max().item<int64_t>();
    vectors = torch::zeros({b, vmax, d}, rows.options()).index_put({owner, rank}, rows);
    out.mean_vectors_per_chunk = static_cast<double>(rows.size(0)) / static_cast<double>(n_chunks);
  } else {
    vectors = torch::zeros({b, 0, d}, torch::TensorOptions().dtype(model.device_options().dtype).device(dev));
  }

  // --- the text: prompt then target, right-padded ---
  std::vector<int64_t> n_text(b), lo(b), start(b), len(b), has_ctx(b), obj(b);
  int64_t n_max = 1, l_max = 0;
  for (int64_t i = 0; i < b; ++i) {
    const auto& ex = examples[i];
    n_text[i] = static_cast<int64_t>(ex.prompt.size() + ex.target.size());
    has_ctx[i] = ex.context.empty() ? 0 : 1;
    start[i] = has_ctx[i] ? k[i] + 2 : 0;
    // The first target token needs a position before it: without a block or prompt there is none.
    lo[i] = std::max<int64_t>(static_cast<int64_t>(ex.prompt.size()), has_ctx[i] ? 0 : 1);
    len[i] = start[i] + n_text[i];
    obj[i] = static_cast<int64_t>(ex.objective);
    n_max = std::max(n_max, n_text[i]);
    l_max = std::max(l_max, len[i]);
  }
  COENC_CHECK_CODE(l_max <= cfg.text.max_position_embeddings, ExceedsContext,
                   "a training example needs {} decoder positions but the decoder holds {} "
                   "(lower context_tokens, continuation_tokens, max_context_tokens or passkey_tokens)",
                   l_max, cfg.text.max_position_embeddings);
  auto text = torch::zeros({b, n_max}, torch::kInt64);
  auto* tp = text.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    int64_t t = 0;
    for (auto id : examples[i].prompt) tp[i * n_max + t++] = id;
    for (auto id : examples[i].target) tp[i * n_max + t++] = id;
  }
  text = text.to(dev);
  out.decoder_positions = 0;
  for (auto l : len) out.decoder_positions += l;

  // --- one gather assembles [BOC] vectors [EOC] text, padding ---
  auto marks = model.context_marks();  // [2, d]: decoder embeddings or learned rows (context_markers)
  auto source = torch::cat({marks.narrow(0, 0, 1).unsqueeze(0).expand({b, 1, d}), vectors,
                            marks.narrow(0, 1, 1).unsqueeze(0).expand({b, 1, d}), lm->embed(text),
                            torch::zeros({b, 1, d}, vectors.options())},
                           1);  // [B, 1 + Vmax + 1 + N + 1, d]
  auto j = torch::arange(l_max, torch::TensorOptions().dtype(torch::kInt64).device(dev)).unsqueeze(0);  // [1, L]
  auto kk = i64(k, dev).unsqueeze(1), st = i64(start, dev).unsqueeze(1), ln = i64(len, dev).unsqueeze(1);
  auto ctx = i64(has_ctx, dev).unsqueeze(1).to(torch::kBool);
  const int64_t text_at = vmax + 2, pad_at = vmax + 2 + n_max;
  auto idx = torch::where(j < ln, text_at + (j - st), torch::full_like(j, pad_at));
  idx = torch::where(ctx & (j == kk + 1), torch::full_like(idx, vmax + 1), idx);
  idx = torch::where(ctx & (j >= 1) & (j <= kk), j, idx);
  idx = torch::where(ctx & (j == 0), torch::zeros_like(idx), idx);
  auto x = source.gather(1, idx.unsqueeze(-1).expand({b, l_max, d}));  // [B, L, d]

  // Position p predicts text token i = p + 1 - start (next-token), on target tokens only.
  auto i_next = j + 1 - st;                                                         // [B, L]
  auto on = (i_next >= i64(lo, dev).unsqueeze(1)) & (i_next < i64(n_text, dev).unsqueeze(1));
  auto labels = text.gather(1, i_next.clamp(0, n_max - 1)).index({on});             // [M]
  auto item = torch::arange(b, j.options()).unsqueeze(1).expand({b, l_max}).index({on});
  auto hidden = lm->forward_hidden(x, ForwardArgs{});                               // [B, L, d]
  auto logits = lm->logits(hidden.index({on}));                                     // [M, V] f32
  auto ce = torch::nn::functional::cross_entropy(
      logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [M]
  auto hit = (logits.argmax(-1) == labels);
  auto tok_obj = i64(obj, dev).index({item});
  for (int o = 0; o < kNumObjectives; ++o) {
    auto sel = tok_obj == o;
    const int64_t n = sel.sum().item<int64_t>();
    if (n == 0) continue;
    out.loss_sum[o] = ce.index({sel}).sum();
    out.tokens[o] = n;
    out.correct[o] = hit.index({sel}).sum().item<int64_t>();
  }
  if (!distill) return out;
  // Distillation: the compressed reading's next-token distributions pulled towards the full reading's, on the
  // target tokens of the examples that have both (the student's target tokens are `on`, row by row, in order).
  std::vector<int64_t> rows;
  std::vector<int64_t> taught(b, 0);
  for (int64_t i = 0; i < b; ++i) {
    const Example& ex = examples[i];
    if (has_ctx[i] && !ex.teacher_prompt.empty() && !ex.target.empty() &&
        static_cast<int64_t>(ex.teacher_prompt.size() + ex.target.size()) <= cfg.text.max_position_embeddings)
      rows.push_back(i), taught[i] = 1;
  }
  if (rows.empty()) return out;
  auto teacher = full_reading_log_probs(lm, examples, rows, dev);             // [Md, V]
  auto student = logits.index({i64(taught, dev).index({item}).to(torch::kBool)}).to(torch::kFloat32).log_softmax(-1);
  COENC_CHECK_CODE(student.size(0) == teacher.size(0), Internal,
                   "distillation: {} target tokens read compressed but {} in full", student.size(0), teacher.size(0));
  out.distill_sum = (teacher.exp() * (teacher - student)).sum();
  out.distill_tokens = teacher.size(0);
  return out;
}

}  // namespace coenc::data
