// Rotary position embedding as Hugging Face applies it (rotate_half layout), shared by the decoder layers and the
// connector's attention pooling.
#pragma once

#include <torch/torch.h>

namespace coenc {

// [x1, x2] -> [-x2, x1] over the last dimension.
inline torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [B, H, T, hd], cos/sin [1 or B, T, hd] -> x rotated, [B, H, T, hd].
inline torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  return x * c + rotate_half(x) * s;
}

}  // namespace coenc
