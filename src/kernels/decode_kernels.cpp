#include "kernels/decode_kernels.h"

#include <cstdlib>
#include <string>

#include "coenc/error.h"

#if defined(COENC_WITH_CUDA_KERNELS)
#include <c10/cuda/CUDAStream.h>

#include "kernels/decode_kernels_launch.h"
#endif

namespace coenc::kernels {

#if defined(COENC_WITH_CUDA_KERNELS)

namespace {

int dtype_code(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return 0;
    case torch::kFloat16: return 1;
    case torch::kBFloat16: return 2;
    default: fail(ErrorCode::Unsupported, "decode kernels: dtype {} is not supported", t.scalar_type());
  }
}

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_tensor(const torch::Tensor& t, const torch::Tensor& like, const char* name) {
  COENC_CHECK_CODE(t.is_cuda() && t.is_contiguous() && t.scalar_type() == like.scalar_type(), Internal,
                   "decode kernels: {} must be a contiguous CUDA tensor of dtype {}", name, like.scalar_type());
}

}  // namespace

bool available() { return true; }

void add_rms_norm(const torch::Tensor& h, const torch::Tensor& delta, const torch::Tensor& weight, double eps,
                  torch::Tensor& h_out, torch::Tensor& norm_out) {
  const int64_t d = h.size(-1), rows = h.numel() / d;
  check_tensor(h, h, "h");
  check_tensor(weight, h, "weight");
  if (delta.defined()) {
    check_tensor(delta, h, "delta");
    if (!h_out.defined()) h_out = torch::empty_like(h);
  }
  if (!norm_out.defined()) norm_out = torch::empty_like(h);
  launch::add_rms_norm(dtype_code(h), h.data_ptr(), delta.defined() ? delta.data_ptr() : nullptr, weight.data_ptr(),
                       static_cast<float>(eps), delta.defined() ? h_out.data_ptr() : nullptr, norm_out.data_ptr(),
                       rows, d, stream());
}

void rope_to_cache(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                   const torch::Tensor& pos, int64_t n_heads, int64_t n_kv, torch::Tensor& q_out,
                   torch::Tensor& k_cache, torch::Tensor& v_cache) {
  const int64_t hd = qkv.size(-1);
  check_tensor(qkv, qkv, "qkv");
  check_tensor(cos, qkv, "cos");
  check_tensor(sin, qkv, "sin");
  check_tensor(k_cache, qkv, "k_cache");
  check_tensor(v_cache, qkv, "v_cache");
  COENC_CHECK_CODE(qkv.numel() == (n_heads + 2 * n_kv) * hd && cos.numel() == hd && pos.scalar_type() == torch::kInt64,
                   Internal, "rope_to_cache: unexpected shapes");
  if (!q_out.defined()) q_out = torch::empty({n_heads, hd}, qkv.options());
  launch::rope_to_cache(dtype_code(qkv), qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), pos.data_ptr<int64_t>(),
                        n_heads, n_kv, hd, k_cache.size(-2), q_out.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
                        stream());
}

bool rope_qk_applies(const torch::Tensor& qkv, const torch::Tensor& cos) {
  static const bool off = [] {  // COENC_ROPE_QK=0: apply_rope's ATen kernels (to measure what this one brings)
    const char* env = std::getenv("COENC_ROPE_QK");
    return env != nullptr && std::string(env) == "0";
  }();
  return !off && qkv.is_cuda() && qkv.dim() == 4 && qkv.is_contiguous() && qkv.size(3) % 2 == 0 && cos.dim() == 3 &&
         cos.scalar_type() == qkv.scalar_type() && (cos.size(0) == 1 || cos.size(0) == qkv.size(0)) &&
         cos.size(1) == qkv.size(1) && cos.size(2) == qkv.size(3) && !torch::GradMode::is_enabled();
}

std::pair<torch::Tensor, torch::Tensor> rope_qk(const torch::Tensor& qkv, const torch::Tensor& cos,
                                                const torch::Tensor& sin, int64_t n_heads, int64_t n_kv) {
  COENC_CHECK_CODE(rope_qk_applies(qkv, cos) && sin.sizes() == cos.sizes() && qkv.size(2) == n_heads + 2 * n_kv,
                   Internal, "rope_qk: operands do not fit the kernel");
  const int64_t b = qkv.size(0), t = qkv.size(1), hd = qkv.size(3);
  torch::Tensor c = cos.contiguous(), s = sin.contiguous();
  check_tensor(s, qkv, "sin");
  torch::Tensor q = torch::empty({b, n_heads, t, hd}, qkv.options()), k = torch::empty({b, n_kv, t, hd}, qkv.options());
  launch::rope_qk(dtype_code(qkv), qkv.data_ptr(), c.data_ptr(), s.data_ptr(), b, t, n_heads, n_kv, hd, c.size(0),
                  q.data_ptr(), k.data_ptr(), stream());
  return {q, k};
}

bool gemv_applies(const torch::Tensor& x, const torch::Tensor& w) {
  const int64_t k = x.size(-1);
  const auto align = [](const torch::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; };
  return x.is_cuda() && x.numel() == k && w.dim() == 2 && w.size(1) == k && w.is_contiguous() &&
         x.scalar_type() == w.scalar_type() && (k * w.element_size()) % 16 == 0 && align(w) &&
         !torch::GradMode::is_enabled();
}

torch::Tensor gemv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  torch::Tensor xc = x.contiguous();
  COENC_CHECK_CODE(gemv_applies(xc, w) && reinterpret_cast<uintptr_t>(xc.data_ptr()) % 16 == 0, Internal,
                   "gemv: operands do not fit the kernel");
  if (bias.defined()) check_tensor(bias, w, "bias");
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  torch::Tensor y = torch::empty(sizes, x.options());
  launch::gemv(dtype_code(w), xc.data_ptr(), w.data_ptr(), bias.defined() ? bias.data_ptr() : nullptr, y.data_ptr(),
               w.size(0), w.size(1), stream());
  return y;
}

torch::Tensor silu_mul(const torch::Tensor& gate_up) {
  check_tensor(gate_up, gate_up, "gate_up");
  const int64_t inner = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * inner);
  auto sizes = gate_up.sizes().vec();
  sizes.back() = inner;
  torch::Tensor out = torch::empty(sizes, gate_up.options());
  launch::silu_mul(dtype_code(gate_up), gate_up.data_ptr(), out.data_ptr(), rows, inner, stream());
  return out;
}

#else

bool available() { return false; }

void add_rms_norm(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, double, torch::Tensor&,
                  torch::Tensor&) {
  fail(ErrorCode::Unsupported, "fused decode kernels need a CUDA build");
}

void rope_to_cache(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, int64_t,
                   int64_t, torch::Tensor&, torch::Tensor&, torch::Tensor&) {
  fail(ErrorCode::Unsupported, "fused decode kernels need a CUDA build");
}

bool rope_qk_applies(const torch::Tensor&, const torch::Tensor&) { return false; }

std::pair<torch::Tensor, torch::Tensor> rope_qk(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                int64_t, int64_t) {
  fail(ErrorCode::Unsupported, "fused decode kernels need a CUDA build");
}

bool gemv_applies(const torch::Tensor&, const torch::Tensor&) { return false; }

torch::Tensor gemv(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  fail(ErrorCode::Unsupported, "fused decode kernels need a CUDA build");
}

torch::Tensor silu_mul(const torch::Tensor&) { fail(ErrorCode::Unsupported, "fused decode kernels need a CUDA build"); }

#endif

}  // namespace coenc::kernels
