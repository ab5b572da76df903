// CUDA kernels behind decode_kernels.h. Arithmetic is float32; values are rounded to the storage type exactly
// where Hugging Face's PyTorch code rounds them (after each element-wise op), so the fused path tracks it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/decode_kernels_launch.h"

namespace coenc::kernels::launch {

namespace {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
// Rounds a float to T and back: the value PyTorch would hold after an op in dtype T.
template <typename T> __device__ __forceinline__ float round_to(float x) { return to_f(from_f<T>(x)); }

// Programmatic dependent launch (Hopper and later; kernels launched by launch() below). A decode step is ~300
// kernels of 3-60 us in a row, and each would otherwise start only once the one before has finished and the
// launch has gone through: with it, the next kernel's blocks are scheduled while this one's last blocks run, and
// wait in wait_for_upstream() until it has finished and its writes are visible. Before that call a kernel may read
// only what nothing upstream writes (the weights) and may write nothing; after it, everything as usual.
__device__ __forceinline__ void wait_for_upstream() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Lets the next kernel's blocks be scheduled once every block of this one has called it (or exited).
__device__ __forceinline__ void let_downstream_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

constexpr int kThreads = 256;

// Sums `v` over the block; every thread gets the total. `partial` holds one float per warp (at most 32).
__device__ __forceinline__ float block_sum(float v, float* partial) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  return partial[0];
}

// LlamaRMSNorm of one value x with the row's 1/rms `inv`: (x * inv) rounded to the dtype, times the weight,
// rounded again.
template <typename T>
__device__ __forceinline__ T rms_scale(float x, float inv, T weight) {
  return from_f<T>(to_f(weight) * round_to<T>(x * inv));
}

// One block per row, for rows of at most kPer * 16 bytes a thread: each thread loads its kPer 16-byte vectors of
// h (and delta) into registers, all loads issued before any is used, so a row costs one memory round trip, not
// one per element (a token's row of 4,096 bf16 values, walked by 256 threads each load waiting on the one before,
// took 16 us on an H100).
template <typename T, int kPer>
__global__ void add_rms_norm_vec_kernel(const T* __restrict__ h, const T* __restrict__ delta,
                                        const T* __restrict__ weight, float eps, T* h_out, T* __restrict__ norm_out,
                                        int64_t d) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t row = blockIdx.x, n_vec = d / kVec;
  const uint4* h4 = reinterpret_cast<const uint4*>(h + row * d);
  const uint4* d4 = delta ? reinterpret_cast<const uint4*>(delta + row * d) : nullptr;
  wait_for_upstream();
  let_downstream_launch();
  uint4 hv[kPer], dv[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (v < n_vec) {
      hv[j] = h4[v];
      if (d4) dv[j] = d4[v];
    }
  }
  float x[kPer][kVec];
  float sum = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (v >= n_vec) continue;
    const T* hp = reinterpret_cast<const T*>(&hv[j]);
    const T* dp = reinterpret_cast<const T*>(&dv[j]);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      x[j][e] = d4 ? round_to<T>(to_f(hp[e]) + to_f(dp[e])) : to_f(hp[e]);
      sum += x[j][e] * x[j][e];
    }
    if (d4) {
      uint4 out;
      T* op = reinterpret_cast<T*>(&out);
#pragma unroll
      for (int e = 0; e < kVec; ++e) op[e] = from_f<T>(x[j][e]);
      reinterpret_cast<uint4*>(h_out + row * d)[v] = out;
    }
  }
  __shared__ float partial[32];
  const float inv = rsqrtf(block_sum(sum, partial) / static_cast<float>(d) + eps);
  const uint4* w4 = reinterpret_cast<const uint4*>(weight);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (v >= n_vec) continue;
    const uint4 wv = __ldg(w4 + v);
    const T* wp = reinterpret_cast<const T*>(&wv);
    uint4 out;
    T* op = reinterpret_cast<T*>(&out);
#pragma unroll
    for (int e = 0; e < kVec; ++e) op[e] = rms_scale<T>(x[j][e], inv, wp[e]);
    reinterpret_cast<uint4*>(norm_out + row * d)[v] = out;
  }
}

// Any row length and alignment: threads stride over the row (two passes over h).
template <typename T>
__global__ void add_rms_norm_kernel(const T* h, const T* delta, const T* weight, float eps, T* h_out, T* norm_out,
                                    int64_t d) {
  const int64_t row = blockIdx.x;
  h += row * d;
  norm_out += row * d;
  if (delta) {
    delta += row * d;
    h_out += row * d;
  }
  wait_for_upstream();
  let_downstream_launch();
  float sum = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float x = to_f(h[i]);
    if (delta) {
      x = round_to<T>(x + to_f(delta[i]));
      h_out[i] = from_f<T>(x);
    }
    sum += x * x;
  }
  __shared__ float partial[32];
  const float inv = rsqrtf(block_sum(sum, partial) / static_cast<float>(d) + eps);
  const T* src = delta ? h_out : h;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) norm_out[i] = rms_scale<T>(to_f(src[i]), inv, weight[i]);
}

// One block per head (q heads, then k heads, then v heads); threads over hd.
template <typename T>
__global__ void rope_to_cache_kernel(const T* qkv, const T* cos, const T* sin, const int64_t* pos, int64_t n_heads,
                                     int64_t n_kv, int64_t hd, int64_t capacity, T* q_out, T* k_cache,
                                     T* v_cache) {
  const int64_t head = blockIdx.x;
  const int64_t half = hd / 2;
  const T* x = qkv + head * hd;
  wait_for_upstream();
  let_downstream_launch();
  const int64_t p = *pos;
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
    if (head >= n_heads + n_kv) {  // v: copied into the cache as it is
      v_cache[((head - n_heads - n_kv) * capacity + p) * hd + i] = x[i];
      continue;
    }
    // x * cos + rotate_half(x) * sin, each product rounded as PyTorch rounds it.
    const float rot = i < half ? -to_f(x[i + half]) : to_f(x[i - half]);
    const float y = round_to<T>(round_to<T>(to_f(x[i]) * to_f(cos[i])) + round_to<T>(rot * to_f(sin[i])));
    if (head < n_heads) q_out[head * hd + i] = from_f<T>(y);
    else k_cache[((head - n_heads) * capacity + p) * hd + i] = from_f<T>(y);
  }
}

// RoPE on the q and k heads of a fused projection over many positions (prefill, the context tower): qkv [B, T,
// H + 2 Hkv, hd], cos / sin [Bc, T, hd] (Bc 1 or B) -> q [B, H, T, hd] and k [B, Hkv, T, hd], the layout attention
// reads. One block per token, threads over its q and k values; rounded as apply_rope (rope.h) rounds.
template <typename T>
__global__ void rope_qk_kernel(const T* __restrict__ qkv, const T* __restrict__ cos, const T* __restrict__ sin,
                               int64_t t_len, int64_t n_heads, int64_t n_kv, int64_t hd, int64_t cos_batch,
                               T* __restrict__ q_out, T* __restrict__ k_out) {
  const int64_t row = blockIdx.x, b = row / t_len, t = row % t_len;
  const T* x = qkv + row * (n_heads + 2 * n_kv) * hd;
  const int64_t table_row = ((cos_batch > 1 ? b : 0) * t_len + t) * hd;
  wait_for_upstream();
  let_downstream_launch();
  const int64_t half = hd / 2, n = (n_heads + n_kv) * hd;
  for (int64_t idx = threadIdx.x; idx < n; idx += blockDim.x) {
    const int64_t head = idx / hd, i = idx % hd;
    const T* xh = x + head * hd;
    const float rot = i < half ? -to_f(xh[i + half]) : to_f(xh[i - half]);
    // __fmul_rn: products never fused into the addition, so float32 matches PyTorch's separate ops too
    const float y = round_to<T>(round_to<T>(__fmul_rn(to_f(xh[i]), to_f(cos[table_row + i]))) +
                                round_to<T>(__fmul_rn(rot, to_f(sin[table_row + i]))));
    if (head < n_heads) q_out[((b * n_heads + head) * t_len + t) * hd + i] = from_f<T>(y);
    else k_out[((b * n_kv + head - n_heads) * t_len + t) * hd + i] = from_f<T>(y);
  }
}

template <typename T>
__global__ void silu_mul_kernel(const T* gate_up, T* out, int64_t rows, int64_t inner) {
  wait_for_upstream();
  let_downstream_launch();
  const int64_t n = rows * inner;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / inner, i = idx % inner;
    const float g = to_f(gate_up[r * 2 * inner + i]), u = to_f(gate_up[r * 2 * inner + inner + i]);
    const float s = round_to<T>(g / (1.f + expf(-g)));
    out[idx] = from_f<T>(s * u);
  }
}

// y[n] = sum_k w[n, k] x[k] (+ bias[n]): one warp per output row, 16-byte loads of the row, float accumulation.
// Decoding one token multiplies every weight matrix by a single vector; this reads each weight once at close to
// full memory bandwidth, where a general matrix product is tuned for larger shapes. The first kPrefetch vectors
// of a lane's part of the row (2 KB of a warp's row) are loaded before waiting for the kernel that writes x, so
// that weights stream while that kernel finishes; at most 48 registers a thread keep five blocks on a
// multiprocessor (more prefetched vectors spilled or halved that).
template <typename T, int kWarps>
__global__ void __launch_bounds__(kWarps * 32, 5) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                           const T* __restrict__ bias, T* __restrict__ y, int64_t n,
                                                           int64_t k) {
  constexpr int kVec = 16 / sizeof(T), kPrefetch = 4;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= n) return;
  const T* wr = w + row * k;
  const int64_t n_vec = k / kVec;
  const uint4* w4 = reinterpret_cast<const uint4*>(wr);
  const uint4* x4 = reinterpret_cast<const uint4*>(x);
  uint4 early[kPrefetch];
#pragma unroll
  for (int p = 0; p < kPrefetch; ++p) {
    const int64_t j = lane + 32 * p;
    if (j < n_vec) early[p] = __ldcs(w4 + j);  // weights are read once: stream them past the cache
  }
  wait_for_upstream();
  let_downstream_launch();
  float acc = 0.f;
  const auto dot = [&acc](const uint4& wv, const uint4& xv) {
    const T* wp = reinterpret_cast<const T*>(&wv);
    const T* xp = reinterpret_cast<const T*>(&xv);
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc += to_f(wp[e]) * to_f(xp[e]);
  };
#pragma unroll
  for (int p = 0; p < kPrefetch; ++p) {
    const int64_t j = lane + 32 * p;
    if (j < n_vec) dot(early[p], __ldg(x4 + j));
  }
#pragma unroll 4
  for (int64_t j = lane + 32 * kPrefetch; j < n_vec; j += 32) dot(__ldcs(w4 + j), __ldg(x4 + j));
  for (int64_t j = n_vec * kVec + lane; j < k; j += 32) acc += to_f(wr[j]) * to_f(x[j]);
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) y[row] = from_f<T>(bias ? acc + to_f(bias[row]) : acc);
}

void check(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename F>
void dispatch(int dtype, F&& f) {
  switch (dtype) {
    case 0: f(float{}); break;
    case 1: f(__half{}); break;
    case 2: f(__nv_bfloat16{}); break;
    default: throw std::runtime_error("decode kernels: unsupported dtype");
  }
}

__global__ void probe_kernel() {}

// Programmatic dependent launch needs a device of compute capability 9.0 or later and kernels compiled for one
// (so that wait_for_upstream() is in them); COENC_PDL=0 turns it off (to measure what it brings).
bool dependent_launch() {
  static const bool compiled = [] {
    const char* env = std::getenv("COENC_PDL");
    if (env != nullptr && std::string(env) == "0") return false;
    cudaFuncAttributes attributes = {};
    const bool ok = cudaFuncGetAttributes(&attributes, probe_kernel) == cudaSuccess;
    cudaGetLastError();  // a failed query leaves nothing behind for check()
    return ok && attributes.ptxVersion >= 90;
  }();
  if (!compiled) return false;
  // The device's compute capability, asked once per device (every decode kernel's launch comes here).
  constexpr int kDevices = 64;
  static std::atomic<int> major[kDevices] = {};  // 0: not asked yet; < 0: the query failed
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return false;
  int m = major[device].load(std::memory_order_relaxed);
  if (m == 0) {
    if (cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess || m <= 0) m = -1;
    major[device].store(m, std::memory_order_relaxed);
  }
  return m >= 9;
}

template <typename... Params, typename... Args>
void launch_kernel(const char* what, void (*kernel)(Params...), int64_t blocks, int threads, void* stream,
                   Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.stream = static_cast<cudaStream_t>(stream);
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  if (dependent_launch()) {
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, args...);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
  check(what);
}

}  // namespace

void add_rms_norm(int dtype, const void* h, const void* delta, const void* weight, float eps, void* h_out,
                  void* norm_out, int64_t rows, int64_t d, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T *hp = static_cast<const T*>(h), *dp = static_cast<const T*>(delta), *wp = static_cast<const T*>(weight);
    T *hop = static_cast<T*>(h_out), *np = static_cast<T*>(norm_out);
    constexpr int kVec = 16 / sizeof(T);
    const auto aligned = [](const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    const int64_t n_vec = d / kVec;
    if (d % kVec == 0 && aligned(h) && aligned(delta) && aligned(weight) && aligned(h_out) && aligned(norm_out) &&
        n_vec <= 4 * 1024) {
      // As many threads as 16-byte vectors (up to 1024), a warp at least; one to four vectors each.
      const int64_t per = (n_vec + 1023) / 1024;
      const int threads = static_cast<int>(((n_vec + per - 1) / per + 31) / 32 * 32);
      auto* kernel = per == 1 ? add_rms_norm_vec_kernel<T, 1>
                              : per == 2 ? add_rms_norm_vec_kernel<T, 2> : add_rms_norm_vec_kernel<T, 4>;
      launch_kernel("add_rms_norm", kernel, rows, threads, stream, hp, dp, wp, eps, hop, np, d);
    } else {
      launch_kernel("add_rms_norm", add_rms_norm_kernel<T>, rows, kThreads, stream, hp, dp, wp, eps, hop, np, d);
    }
  });
}

void rope_to_cache(int dtype, const void* qkv, const void* cos, const void* sin, const int64_t* pos,
                   int64_t n_heads, int64_t n_kv, int64_t hd, int64_t capacity, void* q_out, void* k_cache,
                   void* v_cache, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int threads = hd < 1024 ? static_cast<int>(hd) : 1024;
    launch_kernel("rope_to_cache", rope_to_cache_kernel<T>, n_heads + 2 * n_kv, threads, stream,
                  static_cast<const T*>(qkv), static_cast<const T*>(cos), static_cast<const T*>(sin), pos, n_heads,
                  n_kv, hd, capacity, static_cast<T*>(q_out), static_cast<T*>(k_cache), static_cast<T*>(v_cache));
  });
}

void rope_qk(int dtype, const void* qkv, const void* cos, const void* sin, int64_t batch, int64_t t_len,
             int64_t n_heads, int64_t n_kv, int64_t hd, int64_t cos_batch, void* q_out, void* k_out, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    launch_kernel("rope_qk", rope_qk_kernel<T>, batch * t_len, kThreads, stream, static_cast<const T*>(qkv),
                  static_cast<const T*>(cos), static_cast<const T*>(sin), t_len, n_heads, n_kv, hd, cos_batch,
                  static_cast<T*>(q_out), static_cast<T*>(k_out));
  });
}

void gemv(int dtype, const void* x, const void* w, const void* bias, void* y, int64_t n, int64_t k, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWarps = 8;
    launch_kernel("gemv", gemv_kernel<T, kWarps>, (n + kWarps - 1) / kWarps, kWarps * 32, stream,
                  static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y),
                  n, k);
  });
}

void silu_mul(int dtype, const void* gate_up, void* out, int64_t rows, int64_t inner, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = rows * inner;
    const int64_t blocks = (n + kThreads - 1) / kThreads < 1024 ? (n + kThreads - 1) / kThreads : 1024;
    launch_kernel("silu_mul", silu_mul_kernel<T>, blocks, kThreads, stream, static_cast<const T*>(gate_up),
                  static_cast<T*>(out), rows, inner);
  });
}

}  // namespace coenc::kernels::launch
