// The raw launchers of decode_kernels.cu (compiled by nvcc without torch headers). dtype: 0 f32, 1 f16, 2 bf16.
#pragma once

#include <cstdint>

namespace coenc::kernels::launch {

void add_rms_norm(int dtype, const void* h, const void* delta, const void* weight, float eps, void* h_out,
                  void* norm_out, int64_t rows, int64_t d, void* stream);
void rope_to_cache(int dtype, const void* qkv, const void* cos, const void* sin, const int64_t* pos,
                   int64_t n_heads, int64_t n_kv, int64_t hd, int64_t capacity, void* q_out, void* k_cache,
                   void* v_cache, void* stream);
void rope_qk(int dtype, const void* qkv, const void* cos, const void* sin, int64_t batch, int64_t t_len,
             int64_t n_heads, int64_t n_kv, int64_t hd, int64_t cos_batch, void* q_out, void* k_out, void* stream);
void gemv(int dtype, const void* x, const void* w, const void* bias, void* y, int64_t n, int64_t k, void* stream);
void silu_mul(int dtype, const void* gate_up, void* out, int64_t rows, int64_t inner, void* stream);

}  // namespace coenc::kernels::launch
