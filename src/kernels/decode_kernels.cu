// CUDA kernels behind decode_kernels.h. Arithmetic is float32; values are rounded to the storage type exactly
// where Hugging Face's PyTorch code rounds them (after each element-wise op), so the fused path tracks it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

template <typename T>
__global__ void silu_mul_kernel(const T* gate_up, T* out, int64_t rows, int64_t inner) {
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
// full memory bandwidth, where a general matrix product is tuned for larger shapes.
template <typename T, int kWarps>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                           const T* __restrict__ bias, T* __restrict__ y, int64_t n,
                                                           int64_t k) {
  constexpr int kVec = 16 / sizeof(T);
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= n) return;
  const T* wr = w + row * k;
  float acc = 0.f;
  const int64_t n_vec = k / kVec;
  const uint4* w4 = reinterpret_cast<const uint4*>(wr);
  const uint4* x4 = reinterpret_cast<const uint4*>(x);
#pragma unroll 4
  for (int64_t j = lane; j < n_vec; j += 32) {
    const uint4 wv = __ldcs(w4 + j);  // weights are read once: stream them past the cache
    const uint4 xv = __ldg(x4 + j);
    const T* wp = reinterpret_cast<const T*>(&wv);
    const T* xp = reinterpret_cast<const T*>(&xv);
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc += to_f(wp[e]) * to_f(xp[e]);
  }
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

}  // namespace

void add_rms_norm(int dtype, const void* h, const void* delta, const void* weight, float eps, void* h_out,
                  void* norm_out, int64_t rows, int64_t d, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto* s = static_cast<cudaStream_t>(stream);
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
      if (per == 1) add_rms_norm_vec_kernel<T, 1><<<rows, threads, 0, s>>>(hp, dp, wp, eps, hop, np, d);
      else if (per == 2) add_rms_norm_vec_kernel<T, 2><<<rows, threads, 0, s>>>(hp, dp, wp, eps, hop, np, d);
      else add_rms_norm_vec_kernel<T, 4><<<rows, threads, 0, s>>>(hp, dp, wp, eps, hop, np, d);
    } else {
      add_rms_norm_kernel<T><<<rows, kThreads, 0, s>>>(hp, dp, wp, eps, hop, np, d);
    }
  });
  check("add_rms_norm");
}

void rope_to_cache(int dtype, const void* qkv, const void* cos, const void* sin, const int64_t* pos,
                   int64_t n_heads, int64_t n_kv, int64_t hd, int64_t capacity, void* q_out, void* k_cache,
                   void* v_cache, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int threads = hd < 1024 ? static_cast<int>(hd) : 1024;
    rope_to_cache_kernel<T><<<n_heads + 2 * n_kv, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(qkv), static_cast<const T*>(cos), static_cast<const T*>(sin), pos, n_heads, n_kv, hd,
        capacity, static_cast<T*>(q_out), static_cast<T*>(k_cache), static_cast<T*>(v_cache));
  });
  check("rope_to_cache");
}

void gemv(int dtype, const void* x, const void* w, const void* bias, void* y, int64_t n, int64_t k, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWarps = 8;
    const int64_t blocks = (n + kWarps - 1) / kWarps;
    gemv_kernel<T, kWarps><<<static_cast<unsigned>(blocks), kWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y), n, k);
  });
  check("gemv");
}

void silu_mul(int dtype, const void* gate_up, void* out, int64_t rows, int64_t inner, void* stream) {
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = rows * inner;
    const int blocks = static_cast<int>((n + kThreads - 1) / kThreads < 1024 ? (n + kThreads - 1) / kThreads : 1024);
    silu_mul_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const T*>(gate_up),
                                                                                   static_cast<T*>(out), rows, inner);
  });
  check("silu_mul");
}

}  // namespace coenc::kernels::launch
