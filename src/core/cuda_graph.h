// Capturing a piece of GPU work once as a CUDA graph and replaying it with one launch. A forward pass of a small or
// batched model is hundreds of short kernels; launching them one by one from the host can cost more than the GPU
// needs to run them. The decoder's steps (engine/graph_decoder.cpp) and the context tower's full batches
// (model/co_encoder.cpp) are replayed this way. CUDA builds only.
#pragma once

#if defined(COENC_WITH_CUDA)

#include <functional>
#include <memory>
#include <vector>

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

namespace coenc {

// A captured graph and the buffers its replays write the outputs into (rewritten by every replay: copy what must
// outlive the next one).
struct CapturedGraph {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  std::vector<torch::Tensor> outputs;
};

// Graphs that share a memory pool: they are replayed one after the other, never at once.
struct GraphPool {
  c10::cuda::MempoolId_t id{0, 0};

  // Captures `forward` on a side stream after one eager warm-up pass (which creates cuBLAS handles and workspaces
  // that must not be allocated during capture). The side stream first waits for the current one: the warm-up reads
  // the static inputs, filled there just before (and, for the decoder, the cache that prefill wrote there). Without
  // the wait a busy GPU ran the warm-up on stale buffers: an uninitialised token id (a device-side assert in the
  // embedding) or a stale position (a cache slot overwritten). The host waits for the warm-up before capturing, so
  // work queued after the capture sees what it wrote.
  CapturedGraph capture(const std::function<std::vector<torch::Tensor>()>& forward) {
    auto current = c10::cuda::getCurrentCUDAStream();
    auto stream = c10::cuda::getStreamFromPool();
    at::cuda::CUDAEvent ready;
    ready.record(current);
    ready.block(stream);
    CapturedGraph c{std::make_unique<at::cuda::CUDAGraph>(), {}};
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      forward();
      stream.synchronize();
      c.graph->capture_begin(id);
      c.outputs = forward();
      c.graph->capture_end();
    }
    if (id.first == 0 && id.second == 0) id = c.graph->pool();
    return c;
  }
};

}  // namespace coenc

#endif
