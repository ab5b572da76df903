#include "engine/graph_decoder.h"

#include "coenc/error.h"
#include "core/torch_compat.h"

#if defined(COENC_WITH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace coenc {

#if defined(COENC_WITH_CUDA)

namespace {
// Attention length is rounded up to a multiple of this: one graph per bucket, and at most this many masked
// slots attended in vain per step.
constexpr int64_t kBucket = 256;
}  // namespace

struct GraphDecoder::Impl {
  DecoderLm model;
  KvCache& cache;
  torch::Tensor token, pos;  // static device buffers the graphs read
  // One graph per attention length, each with its own output buffer (a truncated cache replays a shorter one).
  struct Captured {
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    torch::Tensor logits;
  };
  std::map<int64_t, Captured> graphs;
  c10::cuda::MempoolId_t pool{0, 0};

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

  Captured& graph_for(int64_t len) {
    auto it = graphs.find(len);
    if (it != graphs.end()) return it->second;
    // Capture on a side stream after one eager warm-up pass (which creates cuBLAS handles and workspaces that
    // must not be allocated during capture). The warm-up writes the same cache slot the replay rewrites.
    // The side stream first waits for the current one: the warm-up reads `token` and `pos`, filled there just
    // before, and the cache that prefill wrote there. Without the wait a busy GPU ran the warm-up on stale buffers:
    // an uninitialised token id (a device-side assert in the embedding) or a stale position (a cache slot
    // overwritten).
    auto stream = c10::cuda::getStreamFromPool();
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream());
    ready.block(stream);
    Captured c{std::make_unique<at::cuda::CUDAGraph>(), torch::Tensor()};
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      forward(len);
      stream.synchronize();
      c.graph->capture_begin(pool);
      c.logits = forward(len);
      c.graph->capture_end();
    }
    if (pool.first == 0 && pool.second == 0) pool = c.graph->pool();
    return graphs.emplace(len, std::move(c)).first->second;
  }
};

bool GraphDecoder::supported() { return true; }

GraphDecoder::GraphDecoder(DecoderLm model, KvCache& cache) : impl_(std::make_unique<Impl>(std::move(model), cache)) {}

GraphDecoder::~GraphDecoder() = default;

torch::Tensor GraphDecoder::step(TokenId token) {
  const int64_t p = impl_->cache.length();
  const int64_t len = std::min(impl_->cache.capacity(), (p / kBucket + 1) * kBucket);
  impl_->token.fill_(static_cast<int64_t>(token));
  impl_->pos.fill_(p);
  auto& captured = impl_->graph_for(len);
  captured.graph->replay();
  impl_->cache.advance(1);
  return captured.logits.to(torch::kCPU);
}

#else

struct GraphDecoder::Impl {};

bool GraphDecoder::supported() { return false; }

GraphDecoder::GraphDecoder(DecoderLm, KvCache&) {
  fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build of Co-Encoder");
}

GraphDecoder::~GraphDecoder() = default;

torch::Tensor GraphDecoder::step(TokenId) { fail(ErrorCode::Unsupported, "CUDA graph decoding needs a CUDA build"); }

#endif

}  // namespace coenc
