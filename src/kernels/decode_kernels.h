// Fused CUDA kernels for single-token decoding. Decoding one token reads every weight once and is bound by
// memory bandwidth; what is left on top is the launch and ramp-up cost of many tiny element-wise kernels
// (RMSNorm alone is eight ATen kernels). These kernels do each step's element-wise work in one launch and keep
// Hugging Face's rounding points, so results stay within a bf16 ulp of the unfused path.
//
// Used only by the CUDA-graph decode path (DecoderLmImpl::forward_static); every tensor is on one CUDA device,
// contiguous, in one dtype (f32, f16 or bf16). Without CUDA, available() is false and the functions throw.
#pragma once

#include <torch/torch.h>

namespace coenc::kernels {

bool available();

// h_out = h + delta (rounded to the dtype, as Hugging Face's residual add), norm_out = weight * RMSNorm(h_out)
// with the float32 statistics of LlamaRMSNorm. h, delta, h_out, norm_out: [rows, d]; weight: [d].
// delta may be undefined: then h_out is not written and only the norm is computed.
void add_rms_norm(const torch::Tensor& h, const torch::Tensor& delta, const torch::Tensor& weight, double eps,
                  torch::Tensor& h_out, torch::Tensor& norm_out);

// One position: qkv [n_heads + 2 n_kv, hd] (the fused projection output). Applies RoPE (cos, sin [hd]) to the
// q and k heads, writes q to q_out [n_heads, hd], and k, v into slot `pos` ([1] int64 on the device) of
// k_cache / v_cache [n_kv, capacity, hd].
void rope_to_cache(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                   const torch::Tensor& pos, int64_t n_heads, int64_t n_kv, torch::Tensor& q_out,
                   torch::Tensor& k_cache, torch::Tensor& v_cache);

// RoPE over many positions (prefill, the context tower): qkv [B, T, H + 2 Hkv, hd] (the fused projection's
// output), cos / sin [B or 1, T, hd] -> {q [B, H, T, hd], k [B, Hkv, T, hd]}, contiguous, rounded as apply_rope
// rounds: one kernel where apply_rope over the transposed view is five.
std::pair<torch::Tensor, torch::Tensor> rope_qk(const torch::Tensor& qkv, const torch::Tensor& cos,
                                                const torch::Tensor& sin, int64_t n_heads, int64_t n_kv);
// True when rope_qk() takes these operands (CUDA, qkv contiguous, tables of qkv's dtype and shape, no autograd);
// COENC_ROPE_QK=0 makes it false.
bool rope_qk_applies(const torch::Tensor& qkv, const torch::Tensor& cos);

// One row times a weight matrix, as nn.functional.linear: x [..., k] with a single row, w [n, k] (rows
// contiguous), bias [n] or undefined -> [..., n]. x and w 16-byte aligned.
torch::Tensor gemv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias);
// True when gemv() takes these operands (CUDA, one row, same dtype, contiguous aligned rows).
bool gemv_applies(const torch::Tensor& x, const torch::Tensor& w);

// gate_up [rows, 2 I] -> silu(gate) * up, [rows, I].
torch::Tensor silu_mul(const torch::Tensor& gate_up);

}  // namespace coenc::kernels
