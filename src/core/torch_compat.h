// The one place where the two libtorch generations we build against differ:
//   - Debian 12's libtorch-dev 1.13 (CPU only, the CI and developer build);
//   - the libtorch bundled with PyTorch >= 2.x (CUDA, the GPU build).
// Everything else in Co-Encoder calls these wrappers instead of version-specific APIs.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#if defined(COENC_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#define COENC_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace coenc::compat {

// Scaled dot-product attention over q [B, H, Tq, hd], k/v [B, Hkv, Tk, hd] with H a multiple of Hkv (grouped
// query attention). `mask` (optional) is boolean [Tq, Tk], true where attention is allowed, or additive in q's
// dtype (0 allowed, -inf not: converted once and shared by every layer); `is_causal` asks
// for the usual lower-triangular mask instead (only valid when Tq == Tk and no mask is given).
// libtorch >= 2.0 dispatches to fused kernels (flash / memory-efficient / cuDNN); 1.13 computes it explicitly
// in the input dtype, with the softmax in float32 as Hugging Face's eager attention does.
inline torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const std::optional<torch::Tensor>& mask, bool is_causal, double scale) {
  const int64_t n_rep = q.size(1) / k.size(1);
#if COENC_TORCH_AT_LEAST(2, 5)
  // CPU: the fused CPU kernels accumulate in a different order than the eager reference; the math path is what
  // the golden tests compare against. CUDA: flash / efficient kernels, GQA handled natively.
  if (q.is_cuda()) {
    c10::optional<torch::Tensor> m;
    if (mask) m = *mask;
    return at::scaled_dot_product_attention(q, k, v, m, 0.0, is_causal && !mask, scale, /*enable_gqa=*/n_rep > 1);
  }
#endif
  torch::Tensor kk = k, vv = v;
  if (n_rep > 1) {
    auto s = k.sizes();
    kk = k.unsqueeze(2).expand({s[0], s[1], n_rep, s[2], s[3]}).reshape({s[0], s[1] * n_rep, s[2], s[3]});
    vv = v.unsqueeze(2).expand({s[0], s[1], n_rep, s[2], s[3]}).reshape({s[0], s[1] * n_rep, s[2], s[3]});
  }
  torch::Tensor scores = torch::matmul(q, kk.transpose(-2, -1)) * scale;  // [B, H, Tq, Tk]
  if (mask && mask->scalar_type() != torch::kBool) {
    scores = scores + *mask;  // an additive mask: 0 where allowed, -inf where not
  } else if (mask) {
    scores = scores.masked_fill(mask->logical_not(), -std::numeric_limits<float>::infinity());
  } else if (is_causal) {
    const int64_t tq = q.size(2), tk = k.size(2);
    auto causal = torch::ones({tq, tk}, torch::dtype(torch::kBool).device(q.device())).tril(tk - tq);
    scores = scores.masked_fill(causal.logical_not(), -std::numeric_limits<float>::infinity());
  }
  torch::Tensor probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::matmul(probs, vv);  // [B, H, Tq, hd]
}

inline bool cuda_available() { return torch::cuda::is_available(); }

// Autocast (mixed precision) on the CPU or CUDA: the ops autocast lists (matrix products, attention) run in
// `dtype` while the weights stay float32. Thread-local, as in PyTorch: a recomputation in the autograd engine's
// thread must set it again (see model/checkpointing.h).
struct AutocastState {
  bool enabled = false;
  torch::ScalarType dtype = torch::kBFloat16;
};

inline AutocastState autocast_state(torch::DeviceType device) {
#if COENC_TORCH_AT_LEAST(2, 4)
  return {at::autocast::is_autocast_enabled(device), at::autocast::get_autocast_dtype(device)};
#else
  if (device == torch::kCUDA) return {at::autocast::is_enabled(), at::autocast::get_autocast_gpu_dtype()};
  return {at::autocast::is_cpu_enabled(), at::autocast::get_autocast_cpu_dtype()};
#endif
}

inline void set_autocast_state(torch::DeviceType device, const AutocastState& s) {
#if COENC_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, s.enabled);
  at::autocast::set_autocast_dtype(device, s.dtype);
#else
  if (device == torch::kCUDA) {
    at::autocast::set_enabled(s.enabled);
    at::autocast::set_autocast_gpu_dtype(s.dtype);
  } else {
    at::autocast::set_cpu_enabled(s.enabled);
    at::autocast::set_autocast_cpu_dtype(s.dtype);
  }
#endif
  if (!s.enabled) at::autocast::clear_cache();
}

// Sets autocast for a scope and restores what was there before.
class AutocastScope {
 public:
  AutocastScope(torch::DeviceType device, AutocastState s) : device_(device), before_(autocast_state(device)) {
    set_autocast_state(device_, s);
  }
  ~AutocastScope() { set_autocast_state(device_, before_); }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  torch::DeviceType device_;
  AutocastState before_;
};

// float32 matrix products through TF32 tensor cores (training on CUDA); "high" exists in 1.13 and 2.x.
inline void allow_tf32(bool on) { at::globalContext().setFloat32MatmulPrecision(on ? "high" : "highest"); }

// Training leaves cuDNN's fused attention out of scaled_dot_product_attention's choices (flash and memory-efficient
// remain): PyTorch 2.11's cuDNN graph failed mid-run on an H100 ("mha_graph.execute(...).is_good()", stage 18,
// step 67 of a Co-Encoder run) where the other kernels do not. A no-op before 2.5, which has no fused kernels here.
inline void training_attention_kernels() {
#if COENC_TORCH_AT_LEAST(2, 5)
  at::globalContext().setSDPUseCuDNN(false);
#endif
}

#if defined(COENC_WITH_CUDA)
// "cuda" without an index means the current device; the allocator's statistics need the number.
inline c10::DeviceIndex cuda_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
#endif

// The device's name as the driver reports it; "cpu" for the CPU.
inline std::string device_name(const torch::Device& device) {
#if defined(COENC_WITH_CUDA)
  if (device.is_cuda()) return at::cuda::getDeviceProperties(cuda_index(device))->name;
#endif
  return device.is_cpu() ? "cpu" : device.str();
}

// Waits for all queued work on the current device (for timing).
inline void synchronize(const torch::Device& device) {
#if defined(COENC_WITH_CUDA)
  if (device.is_cuda()) c10::cuda::getCurrentCUDAStream(cuda_index(device)).synchronize();
#endif
}

// A point in the work queued on `device` so far, for the host to wait for later (CUDA: an event recorded on the
// current stream; on the CPU the work is done by the time the mark is made).
class DeviceMark {
 public:
  explicit DeviceMark(const torch::Device& device) {
#if defined(COENC_WITH_CUDA)
    if (device.is_cuda()) {
      event_ = std::make_shared<at::cuda::CUDAEvent>();
      event_->record(c10::cuda::getCurrentCUDAStream(cuda_index(device)));
    }
#else
    (void)device;
#endif
  }
  // Returns when the device has done everything queued before the mark.
  void wait() const {
#if defined(COENC_WITH_CUDA)
    if (event_) event_->synchronize();
#endif
  }

 private:
#if defined(COENC_WITH_CUDA)
  std::shared_ptr<at::cuda::CUDAEvent> event_;
#endif
};

// Peak bytes allocated on `device` since the last reset (0 on CPU, where we do not track it).
inline int64_t peak_memory_bytes(const torch::Device& device) {
#if defined(COENC_WITH_CUDA)
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
    return stats.allocated_bytes[0].peak;  // aggregate over small and large pools
  }
#endif
  return 0;
}

inline void reset_peak_memory(const torch::Device& device) {
#if defined(COENC_WITH_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
#endif
}

}  // namespace coenc::compat
