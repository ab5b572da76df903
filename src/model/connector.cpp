#include "model/connector.h"

#include <cmath>

#include "coenc/error.h"
#include "core/torch_compat.h"
#include "model/rope.h"

namespace coenc {

namespace {

// Width, in tokens, of the soft span edges that carry the size gradient (see connector.h).
constexpr double kEdgeTemperature = 0.5;

// Contiguous spans over the valid tokens of each row: token t of row b (its rank among the row's valid tokens)
// belongs to span j when lo[b, j] <= rank < hi[b, j] and j is live. rank/valid [B, T], lo/hi [B, K] int64,
// live [B, K] bool -> [B, K, T] bool.
torch::Tensor span_membership(const torch::Tensor& rank, const torch::Tensor& valid, const torch::Tensor& lo,
                              const torch::Tensor& hi, const torch::Tensor& live) {
  auto r = rank.unsqueeze(1);  // [B, 1, T]
  return (r >= lo.unsqueeze(2)) & (r < hi.unsqueeze(2)) & valid.unsqueeze(1) & live.unsqueeze(2);
}

// The seed's weighted span average: sum_t m[j, t] h[t] / (sum_t m[j, t] + 1e-8), and exactly zero for a span
// whose weights sum to zero (an empty span). m [B, K, T], h [B, T, d] -> [B, K, d].
torch::Tensor weighted_span_mean(const torch::Tensor& m, const torch::Tensor& h) {
  auto den = m.sum(-1, /*keepdim=*/true);  // [B, K, 1]
  auto num = torch::bmm(m, h);             // [B, K, d]
  return torch::where(den == 0, torch::zeros_like(num), num / (den + 1e-8));
}

torch::Tensor ranks(const torch::Tensor& mask) { return mask.to(torch::kInt64).cumsum(1) - 1; }  // [B, T]

// Spans of `ratio` tokens: the row-normalised membership [B, K, T] (each live row sums to 1), live [B, K], k [B].
// `max_length`: the longest row's valid tokens when the caller knows it on the host (-1: read from the mask, which
// waits for the device).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> mean_spans(const torch::Tensor& mask, int64_t ratio,
                                                                   torch::ScalarType dtype, int64_t max_length = -1) {
  auto n = mask.sum(1);                                           // [B] int64
  auto k = torch::div(n + (ratio - 1), ratio, "floor");           // [B] ceil(n / ratio)
  const int64_t kmax = max_length >= 0 ? (max_length + ratio - 1) / ratio : k.max().item<int64_t>();
  auto j = torch::arange(kmax, n.options()).unsqueeze(0);         // [1, K]
  auto live = j < k.unsqueeze(1);                                 // [B, K]
  auto lo = j * ratio, hi = torch::min((j + 1) * ratio, n.unsqueeze(1));
  auto member = span_membership(ranks(mask), mask, lo, hi, live).to(dtype);  // [B, K, T]
  return {member / member.sum(-1, true).clamp_min(1), live, k};
}

torch::Tensor activation(const std::string& act, const torch::Tensor& x) {
  if (act == "gelu") return torch::gelu(x);
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") return torch::gelu(x, "tanh");
  if (act == "relu") return torch::relu(x);
  if (act == "silu" || act == "swish") return torch::silu(x);
  fail(ErrorCode::Unsupported, "projector activation \"{}\" is not supported", act);
}

}  // namespace

DynamicAttentionImpl::DynamicAttentionImpl(const ModelConfig& c, const torch::TensorOptions& options)
    : n_heads(c.n_heads), n_kv_heads(c.n_kv_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, n_heads * head_dim, false, options));
  k_proj = register_module("k_proj", Linear(c.hidden_size, n_kv_heads * head_dim, false, options));
  v_proj = register_module("v_proj", Linear(c.hidden_size, n_kv_heads * head_dim, false, options));
  o_proj = register_module("o_proj", Linear(n_heads * head_dim, 1, false, options));
}

torch::Tensor DynamicAttentionImpl::forward(const torch::Tensor& h, const torch::Tensor& mask) {
  const int64_t b = h.size(0), t = h.size(1);
  auto q = q_proj(h).view({b, t, n_heads, head_dim}).transpose(1, 2);     // [B, H, T, hd]
  auto k = k_proj(h).view({b, t, n_kv_heads, head_dim}).transpose(1, 2);  // [B, Hkv, T, hd]
  auto v = v_proj(h).view({b, t, n_kv_heads, head_dim}).transpose(1, 2);
  std::optional<torch::Tensor> keys = mask.view({b, 1, 1, t});
  auto out = compat::attention(q, k, v, keys, false, 1.0 / std::sqrt(static_cast<double>(head_dim)));
  return o_proj(out.transpose(1, 2).reshape({b, t, n_heads * head_dim})).squeeze(-1);  // [B, T]
}

DynamicWeightedAvgPoolImpl::DynamicWeightedAvgPoolImpl(const CoEncoderConfig& c, const torch::TensorOptions& options)
    : output_size_min(c.min_output_size), output_size_max(c.max_output_size), ratio(c.ratio) {
  size_estimation_attention = register_module("size_estimation_attention", DynamicAttention(c.context, options));
  weighted_pooling_attention = register_module("weighted_pooling_attention", DynamicAttention(c.context, options));
  scale_param = register_parameter("scale_param", torch::full({}, 0.01, options));
}

Pooled DynamicWeightedAvgPoolImpl::forward(const torch::Tensor& h, const torch::Tensor& mask) {
  const auto dtype = h.scalar_type();
  auto maskf = mask.to(dtype);  // [B, T]
  auto n = mask.sum(1);         // [B] int64 valid tokens
  // Size: mean sigmoid score of the valid tokens, scaled into [min, max]. (The seed also averages sigmoid(0) =
  // 1/2 for every padding position, so its k depends on how much padding a batch had; without padding the two
  // agree exactly.)
  auto scores = size_estimation_attention(h, mask);                               // [B, T]
  auto mean = (torch::sigmoid(scores) * maskf).sum(1) / n.to(dtype);              // [B]
  auto size = mean * scale_param * static_cast<double>(output_size_max - output_size_min) +
              static_cast<double>(output_size_min);                               // [B], differentiable
  // The seed's `.int()` truncates; the clamp only matters once training moves scale_param out of [0, 1].
  auto k = size.detach().to(torch::kInt32).to(torch::kInt64).clamp(output_size_min, output_size_max);  // [B]
  const int64_t kmax = k.max().item<int64_t>();

  // Equal spans over the valid tokens: span j = [floor(j n / k), floor((j + 1) n / k)), empty when n < k. (The
  // seed takes torch.linspace(0, n, k + 1).long() in float32; equal except where float rounding lands a
  // boundary just below an integer.)
  auto j = torch::arange(kmax, n.options()).unsqueeze(0);  // [1, K]
  auto nk = n.unsqueeze(1), kk = k.unsqueeze(1);           // [B, 1]
  auto lo = torch::div(j * nk, kk, "floor"), hi = torch::div((j + 1) * nk, kk, "floor");  // [B, K]
  auto live = j < kk;                                                                    // [B, K]
  auto rank = ranks(mask);
  auto member = span_membership(rank, mask, lo, hi, live).to(dtype);  // [B, K, T]

  auto w = torch::sigmoid(weighted_pooling_attention(h, mask)) * maskf;  // [B, T] token weights
  torch::Tensor states = weighted_span_mean(member * w.unsqueeze(1), h);  // [B, K, d]

  if (size.requires_grad()) {
    // Straight-through: same value, gradient of soft span edges at j n / size (connector.h).
    auto sz = size.unsqueeze(1);                                           // [B, 1]
    auto jf = j.to(dtype);
    auto edge_lo = (jf * nk.to(dtype) / sz).unsqueeze(2);                  // [B, K, 1]
    auto edge_hi = ((jf + 1) * nk.to(dtype) / sz).unsqueeze(2);
    auto pos = rank.to(dtype).unsqueeze(1) + 0.5;                          // [B, 1, T]
    auto soft = torch::sigmoid((pos - edge_lo) / kEdgeTemperature) - torch::sigmoid((pos - edge_hi) / kEdgeTemperature);
    soft = soft * (mask.unsqueeze(1) & live.unsqueeze(2)).to(dtype);       // [B, K, T]
    auto soft_states = weighted_span_mean(soft * w.detach().unsqueeze(1), h.detach());
    states = states + (soft_states - soft_states.detach());
  }

  Pooled p;
  p.states = states;
  p.mask = live;
  p.sizes = k;
  p.size_estimate = size;
  auto target = (n.to(dtype) / static_cast<double>(ratio))
                    .clamp(static_cast<double>(output_size_min), static_cast<double>(output_size_max));
  p.size_loss = ((size - target) / target).pow(2).mean();
  return p;
}

Pooled mean_pool(const torch::Tensor& h, const torch::Tensor& mask, int64_t ratio, int64_t max_length) {
  auto [weights, live, k] = mean_spans(mask, ratio, h.scalar_type(), max_length);
  Pooled p;
  p.states = torch::bmm(weights, h);  // [B, K, d]
  p.mask = live;
  p.sizes = k;
  return p;
}

namespace {

// ARC-Encoder's pooled attention, in the tower's own layer `ref.layer`: queries of each span's tokens are averaged
// (after RoPE), keys and values stay per token; the residual stream is pooled the same way, then the layer's MLP.
// x [B, T, d] (the layer's input), mask [B, T] -> [B, K, d].
Pooled attn_pool(const torch::Tensor& x, const torch::Tensor& mask, int64_t ratio, const TowerLayerRef& ref,
                 int64_t max_length) {
  auto& layer = *ref.tower->model->layers[ref.layer]->as<DecoderLayerImpl>();
  auto& att = *layer.self_attn;
  const int64_t b = x.size(0), t = x.size(1), h = att.n_heads, hkv = att.n_kv_heads, hd = att.head_dim;
  auto [weights, live, k] = mean_spans(mask, ratio, x.scalar_type(), max_length);  // weights [B, K, T]
  const int64_t kmax = weights.size(1);

  auto normed = layer.input_layernorm(x);
  auto q = att.q_proj(normed).view({b, t, h, hd});
  auto kk = att.k_proj(normed).view({b, t, hkv, hd});
  auto v = att.v_proj(normed).view({b, t, hkv, hd}).transpose(1, 2);  // [B, Hkv, T, hd]
  if (att.q_norm) {
    q = att.q_norm(q);
    kk = att.k_norm(kk);
  }
  auto positions = torch::arange(t, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
  auto [cos, sin] = ref.tower->rope_tables(positions);
  q = apply_rope(q.transpose(1, 2), cos, sin);    // [B, H, T, hd]
  kk = apply_rope(kk.transpose(1, 2), cos, sin);  // [B, Hkv, T, hd]
  auto pooled_q = torch::matmul(weights.unsqueeze(1), q);  // [B, H, K, hd]
  std::optional<torch::Tensor> keys = mask.view({b, 1, 1, t});
  auto out = compat::attention(pooled_q, kk, v, keys, false, 1.0 / std::sqrt(static_cast<double>(hd)));
  auto hs = torch::bmm(weights, x) + att.o_proj(out.transpose(1, 2).reshape({b, kmax, h * hd}));  // [B, K, d]
  hs = hs + layer.mlp(layer.post_attention_layernorm(hs));
  if (ref.final_norm) hs = ref.tower->model->norm(hs);
  Pooled p;
  p.states = hs;
  p.mask = live;
  p.sizes = k;
  return p;
}

}  // namespace

ConnectorImpl::ConnectorImpl(const CoEncoderConfig& c, const torch::TensorOptions& options)
    : mode(c.pooling), ratio(c.ratio), act(c.hidden_act) {
  if (mode == PoolingMode::Dynamic) dynamic_pooling = register_module("dynamic_pooling", DynamicWeightedAvgPool(c, options));
  linear_1 = register_module("linear_1", Linear(c.context.hidden_size, c.text.hidden_size, true, options));
  linear_2 = register_module("linear_2", Linear(c.text.hidden_size, c.text.hidden_size, true, options));
  // Registered last: named_parameters() keeps the seed's order for everything before them.
  if (c.context_markers == ContextMarkers::Learned) {
    begin_of_context = register_parameter("begin_of_context", torch::zeros({c.text.hidden_size}, options));
    end_of_context = register_parameter("end_of_context", torch::zeros({c.text.hidden_size}, options));
  }
}

torch::Tensor ConnectorImpl::project(const torch::Tensor& states) {
  return linear_2(activation(act, linear_1(states)));
}

ConnectorOutput ConnectorImpl::forward(const torch::Tensor& features, const torch::Tensor& mask,
                                       const TowerLayerRef* layer, const torch::Tensor& lengths) {
  COENC_CHECK(features.dim() == 3 && features.size(2) == linear_1->weight.size(1),
              "connector input must be [B, T, {}], got {}", linear_1->weight.size(1), features.sizes());
  COENC_CHECK(mask.dim() == 2 && mask.size(0) == features.size(0) && mask.size(1) == features.size(1) &&
                  mask.scalar_type() == torch::kBool,
              "connector mask must be bool [{}, {}], got {}", features.size(0), features.size(1), mask.sizes());
  // Lengths known on the host answer without waiting for the device (the tower's work still queued there).
  const bool host_lengths = lengths.defined() && lengths.device().is_cpu();
  if (host_lengths) {
    COENC_CHECK(lengths.dim() == 1 && lengths.size(0) == mask.size(0), "connector lengths must be [{}], got {}",
                mask.size(0), lengths.sizes());
    COENC_CHECK(lengths.min().item<int64_t>() >= 1, "every connector input needs at least one token");
  } else {
    COENC_CHECK(mask.any(1).all().item<bool>(), "every connector input needs at least one token");
  }
  const int64_t max_length = host_lengths ? lengths.max().item<int64_t>() : -1;
  // Zero the padding so that nothing there (not even a NaN) can reach a span through a zero weight.
  auto h = features.masked_fill(mask.logical_not().unsqueeze(-1), 0.0);
  Pooled p;
  switch (mode) {
    case PoolingMode::Dynamic:
      p = dynamic_pooling->forward(h, mask);
      break;
    case PoolingMode::Mean:
      p = mean_pool(h, mask, ratio, max_length);
      break;
    case PoolingMode::Attn:
      COENC_CHECK_CODE(layer && layer->tower, Internal, "pooling \"attn\" needs the tower layer");
      p = attn_pool(h, mask, ratio, *layer, max_length);
      break;
  }
  ConnectorOutput o;
  o.vectors = project(p.states);  // [B, K, d_text]
  o.mask = p.mask;
  o.sizes = p.sizes;
  o.size_estimate = p.size_estimate;
  o.size_loss = p.size_loss;
  return o;
}

}  // namespace coenc
