#include "engine/graph_decoder.h"

#include <algorithm>
#include <functional>

#include "coenc/error.h"
#include "core/cuda_graph.h"
#include "core/torch_compat.h"

namespace coenc {

#if defined(COENC_WITH_CUDA)

namespace {
// Attention length is rounded up to a multiple of this: one graph per bucket, and at most this many masked
// slots attended in vain per step.
constexpr int64_t kBucket = 256;

int64_t bucketed_length(int64_t positions, int64_t limit) {
  return std::min(limit, (positions + kBucket - 1) / kBucket * kBucket);
}

}  // namespace

struct GraphDecoder::Impl {
  DecoderLm model;
  KvCache& cache;
  torch::Tensor token, pos;  // static device buffers the graphs read
  // One graph per attention length, each with its own output buffer (a truncated cache replays a shorter one).
  std::map<int64_t, CapturedGraph> graphs;
  GraphPool pool;

  Impl(DecoderLm m, KvCache& c) : model(std::move(m)), cache(c) {
    auto dev = model->device_options().device;
    token = torch::zeros({1, 1}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
    pos = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
    cache.reserve_all();
  }

  torch::Tensor forward(int64_t len) {
    ForwardArgs args;
    args.cache = &cache;
    args.static_pos = pos;
    args.static_len = len;
    torch::Tensor h = model->forward_hidden(model->embed(token), args);
    return model->logits(h[0][0]);
  }

  CapturedGraph& graph_for(int64_t len) {
    auto it = graphs.find(len);
    if (it != graphs.end()) return it->second;
    return graphs.emplace(len, pool.capture([this, len] { return std::vector<torch::Tensor>{forward(len)}; }))
        .first->second;
  }
};

struct GraphRowDecoder::Impl {
  DecoderLm model;
  torch::Tensor ids, pos;  // static device buffers the graphs read, [max_rows, 1] and [max_rows]
  std::map<std::pair<int64_t, int64_t>, CapturedGraph> graphs;  // by (rows, attention length)
  GraphPool pool;
  const void* keys = nullptr;  // the cache buffer the graphs were captured with

  Impl(DecoderLm m, int64_t max_rows) : model(std::move(m)) {
    auto opts = torch::TensorOptions().dtype(torch::kInt64).device(model->device_options().device);
    ids = torch::zeros({max_rows, 1}, opts);
    pos = torch::zeros({max_rows}, opts);
  }

  torch::Tensor forward(KvCache& cache, int64_t rows, int64_t len) {
    ForwardArgs args;
    args.cache = &cache;
    args.row_positions = pos.narrow(0, 0, rows);
    args.row_len = len;
    torch::Tensor h = model->forward_hidden(model->embed(ids.narrow(0, 0, rows)), args);  // [rows, 1, d]
    return model->logits(h.squeeze(1));
  }
};

bool GraphDecoder::supported() { return true; }

GraphDecoder::GraphDecoder(DecoderLm model, KvCache& cache) : impl_(std::make_unique<Impl>(std::move(model), cache)) {}

GraphDecoder::~GraphDecoder() = default;

torch::Tensor GraphDecoder::step(TokenId token) {
  const int64_t p = impl_->cache.length();
  const int64_t len = bucketed_length(p + 1, impl_->cache.capacity());
  impl_->token.fill_(static_cast<int64_t>(token));
  impl_->pos.fill_(p);
  auto& captured = impl_->graph_for(len);
  captured.graph->replay();
  impl_->cache.advance(1);
  return captured.outputs[0].to(torch::kCPU);
}

GraphRowDecoder::GraphRowDecoder(DecoderLm model, int64_t max_rows)
    : impl_(std::make_unique<Impl>(std::move(model), max_rows)) {}

GraphRowDecoder::~GraphRowDecoder() = default;

torch::Tensor GraphRowDecoder::step(KvCache& cache, const std::vector<int64_t>& ids,
                                    const std::vector<int64_t>& positions) {
  Impl& m = *impl_;
  const auto rows = static_cast<int64_t>(ids.size());
  COENC_CHECK_CODE(rows > 0 && rows <= m.ids.size(0) && positions.size() == ids.size(), Internal,
                   "graph step: {} ids and {} positions for at most {} rows", ids.size(), positions.size(),
                   m.ids.size(0));
  const int64_t len = bucketed_length(*std::max_element(positions.begin(), positions.end()) + 1, cache.max_length());
  cache.reserve_rows(len);
  if (cache.keys(0).data_ptr() != m.keys) {  // grown: the graphs read and write the old buffers
    m.graphs.clear();
    m.pool = GraphPool{};
    m.keys = cache.keys(0).data_ptr();
  }
  m.ids.narrow(0, 0, rows).copy_(torch::tensor(ids, torch::kInt64).view({rows, 1}));
  m.pos.narrow(0, 0, rows).copy_(torch::tensor(positions, torch::kInt64));
  const auto key = std::make_pair(rows, len);
  auto it = m.graphs.find(key);
  if (it == m.graphs.end())
    it = m.graphs
             .emplace(key, m.pool.capture([&m, &cache, rows, len] {
               return std::vector<torch::Tensor>{m.forward(cache, rows, len)};
             }))
             .first;
  it->second.graph->replay();
  return it->second.outputs[0];
}

#else

struct GraphDecoder::Impl {};

bool GraphDecoder::supported() { return false; }

GraphDecoder::GraphDecoder(DecoderLm, KvCache&) {
  fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build of Co-Encoder");
}

GraphDecoder::~GraphDecoder() = default;

torch::Tensor GraphDecoder::step(TokenId) { fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build"); }

struct GraphRowDecoder::Impl {};

GraphRowDecoder::GraphRowDecoder(DecoderLm, int64_t) {
  fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build of Co-Encoder");
}

GraphRowDecoder::~GraphRowDecoder() = default;

torch::Tensor GraphRowDecoder::step(KvCache&, const std::vector<int64_t>&, const std::vector<int64_t>&) {
  fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build");
}

#endif

}  // namespace coenc
