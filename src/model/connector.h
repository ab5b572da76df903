// The connector between the context tower and the decoder: pooling (dynamic / mean / attn) and the projector.
//
// Module names follow the seed's CoEncoderContextLanguageConnector, so `connector.dynamic_pooling.
// size_estimation_attention.q_proj.weight`, `connector.dynamic_pooling.scale_param` and `connector.linear_1.weight`
// load by name.
//
// The dynamic size estimate and its gradient. The seed computes k = int(scale * mean_t sigmoid(s_t) * (max - min)
// + min): the integer cast cuts the gradient, so scale_param and the size-estimation head never learn. We keep
// the forward value exactly (k is still that integer) and give the size two gradient paths:
//  1. straight-through span boundaries: the forward pools over the integer boundaries floor(j T / k); the
//     backward differentiates a soft copy of the same pooling whose boundaries j T / size are continuous in the
//     untruncated size (memberships sigmoid((t + 1/2 - b_j) / tau) - sigmoid((t + 1/2 - b_{j+1}) / tau),
//     tau = 1/2 token). pooled = hard + (soft - soft.detach()): the value is the hard one, the task loss's
//     gradient reaches the size head through where the span edges would move.
//  2. an auxiliary budget loss, ConnectorOutput::size_loss = mean(((size - target) / target)^2) with target =
//     clamp(T / ratio, min, max): the task alone always prefers more vectors; this term holds the average rate
//     near the configured ratio. The trainer adds it with a weight.
// Both are vectorised over the batch: spans are a dense [B, K, T] membership matrix and pooling one bmm.
#pragma once

#include <torch/torch.h>

#include "coenc/co_encoder.h"
#include "coenc/decoder.h"

namespace coenc {

// The seed's CoEncoderDynamicAttention: one non-causal softmax attention over the tower states with no position
// encoding, projected to one score per token. Weights q/k/v_proj [H hd, d] / [Hkv hd, d] (no bias), o_proj
// [1, H hd]. Head counts and head_dim are the tower's.
class DynamicAttentionImpl : public torch::nn::Module {
 public:
  DynamicAttentionImpl(const ModelConfig& tower, const torch::TensorOptions& options);
  // h [B, T, d], mask [B, T] bool (keys at false are ignored) -> scores [B, T].
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& mask);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads, n_kv_heads, head_dim;
};
TORCH_MODULE(DynamicAttention);

// Output of a pooling step, before the projector.
struct Pooled {
  torch::Tensor states;         // [B, K, d_context]
  torch::Tensor mask;           // [B, K] bool
  torch::Tensor sizes;          // [B] int64
  torch::Tensor size_estimate;  // [B] (dynamic only)
  torch::Tensor size_loss;      // [] (dynamic only)
};

// The seed's CoEncoderDynamicWeightedAvgPool1d, vectorised over the batch and with a trainable size estimate.
class DynamicWeightedAvgPoolImpl : public torch::nn::Module {
 public:
  DynamicWeightedAvgPoolImpl(const CoEncoderConfig& c, const torch::TensorOptions& options);
  // h [B, T, d], mask [B, T] bool with every row holding at least one true.
  Pooled forward(const torch::Tensor& h, const torch::Tensor& mask);
  DynamicAttention size_estimation_attention{nullptr}, weighted_pooling_attention{nullptr};
  torch::Tensor scale_param;  // [] scalar, the seed initialises it to 0.01
  int64_t output_size_min, output_size_max, ratio;
};
TORCH_MODULE(DynamicWeightedAvgPool);

// For pooling "attn": the tower layer whose queries are pooled, and whether the tower's final norm follows it.
struct TowerLayerRef {
  DecoderLmImpl* tower = nullptr;
  int64_t layer = 0;
  bool final_norm = false;
  bool causal = true;  // the tower's attention; pooled queries see every valid key either way
};

class ConnectorImpl : public torch::nn::Module {
 public:
  ConnectorImpl(const CoEncoderConfig& c, const torch::TensorOptions& options);
  // features [B, T, d_context], mask [B, T] bool (a prefix of each row). For "dynamic" and "mean" the features
  // are the tower's output at context_feature_layer; for "attn" they are the input of `layer->layer`. `lengths`
  // (optional, int64 [B] on the host: each row's valid tokens, as in the mask) spares "mean" and "attn" a wait for
  // the device.
  ConnectorOutput forward(const torch::Tensor& features, const torch::Tensor& mask,
                          const TowerLayerRef* layer = nullptr, const torch::Tensor& lengths = {});
  // states [..., d_context] -> [..., d_text]: linear_2(act(linear_1(x))).
  torch::Tensor project(const torch::Tensor& states);

  DynamicWeightedAvgPool dynamic_pooling{nullptr};  // pooling "dynamic" only
  Linear linear_1{nullptr}, linear_2{nullptr};
  // context_markers "learned" only: the [BOC] / [EOC] rows [d_text] (CoEncoderImpl::context_marks). They live
  // here, not in the decoder, so that they train, save and load with the connector.
  torch::Tensor begin_of_context, end_of_context;
  PoolingMode mode;
  int64_t ratio;
  std::string act;
};

// Mean of contiguous spans of `ratio` valid tokens: h [B, T, d], mask [B, T] -> states [B, K, d], K = max_b
// ceil(T_b / ratio). Also the query pooling of "attn". `max_length`: max_b T_b when known on the host (-1: read
// from the mask). Exposed for tests.
Pooled mean_pool(const torch::Tensor& h, const torch::Tensor& mask, int64_t ratio, int64_t max_length = -1);

}  // namespace coenc
