#include "coenc/decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "coenc/error.h"
#include "core/torch_compat.h"
#include "kernels/decode_kernels.h"
#include "model/checkpointing.h"
#include "model/rope.h"

namespace coenc {

namespace {

// nn.functional.linear, through the single-row kernel when decoding one token on CUDA.
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  if (kernels::gemv_applies(x, w)) return kernels::gemv(x, w, b);
  return torch::nn::functional::linear(x, w, b);
}

// RoPE inverse frequencies, following transformers' rope initialisation functions for each type.
torch::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.head_dim;
  auto exponents = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  torch::Tensor inv_freq = 1.0 / torch::pow(torch::tensor(c.rope.theta, torch::kFloat32), exponents);
  if (c.rope.type == "linear") return inv_freq / c.rope.factor;
  if (c.rope.type == "llama3") {
    const double factor = c.rope.factor, low = c.rope.low_freq_factor, high = c.rope.high_freq_factor;
    const double old_len = static_cast<double>(c.rope.original_max_position);
    const double low_freq_wavelen = old_len / low, high_freq_wavelen = old_len / high;
    auto wavelen = 2 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
    auto smooth = (old_len / wavelen - low) / (high - low);
    auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    auto is_medium = (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
    return torch::where(is_medium, smoothed, scaled);
  }
  return inv_freq;
}

}  // namespace

RmsNormImpl::RmsNormImpl(int64_t dim, double eps_, const torch::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // In float32, then back to the input dtype before the weight, exactly as Hugging Face's LlamaRMSNorm.
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, options));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = project(x, weight, bias);
  if (!lora_A) return y;
  // The adapter computes in float32 (or autocast's dtype); its contribution joins in the output's dtype.
  torch::Tensor delta = lora_B->forward(lora_A->forward(x.to(lora_A->weight.scalar_type()))) * lora_scale;
  return y + delta.to(y.scalar_type());
}

void LinearImpl::add_lora(int64_t rank, double alpha, uint64_t seed) {
  COENC_CHECK(rank > 0 && alpha > 0, "LoRA rank and alpha must be positive, got {} and {}", rank, alpha);
  COENC_CHECK_CODE(!lora_A, Internal, "a LoRA adapter is already attached");
  const int64_t out = weight.size(0), in = weight.size(1);
  auto f32 = torch::TensorOptions().device(weight.device()).dtype(torch::kFloat32);
  lora_A = register_module("lora_A", Linear(in, rank, false, f32));
  lora_B = register_module("lora_B", Linear(rank, out, false, f32));
  torch::NoGradGuard no_grad;
  // PEFT's default: A ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
  auto gen = at::detail::createCPUGenerator(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  lora_A->weight.copy_(torch::rand({rank, in}, gen, torch::kFloat32) * (2 * bound) - bound);
  lora_B->weight.zero_();
  lora_scale = alpha / static_cast<double>(rank);
  lora_A->weight.set_requires_grad(true);
  lora_B->weight.set_requires_grad(true);
}

void LinearImpl::merge_lora() {
  if (!lora_A) return;
  {
    torch::NoGradGuard no_grad;
    auto delta = torch::matmul(lora_B->weight, lora_A->weight) * lora_scale;  // [out, in] float32
    weight.add_(delta.to(weight.scalar_type()));  // in place: a fused matrix viewing W sees it too
  }
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A.reset();
  lora_B.reset();
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

AttentionImpl::AttentionImpl(const ModelConfig& c, const torch::TensorOptions& options)
    : n_heads(c.n_heads), n_kv_heads(c.n_kv_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, c.n_heads * c.head_dim, c.attention_bias, options));
  k_proj = register_module("k_proj", Linear(c.hidden_size, c.n_kv_heads * c.head_dim, c.attention_bias, options));
  v_proj = register_module("v_proj", Linear(c.hidden_size, c.n_kv_heads * c.head_dim, c.attention_bias, options));
  o_proj = register_module("o_proj", Linear(c.n_heads * c.head_dim, c.hidden_size, false, options));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RmsNorm(c.head_dim, c.rms_norm_eps, options));
    k_norm = register_module("k_norm", RmsNorm(c.head_dim, c.rms_norm_eps, options));
  }
}

void AttentionImpl::fuse_projections() {
  torch::NoGradGuard no_grad;
  const int64_t nq = q_proj->weight.size(0), nk = k_proj->weight.size(0), nv = v_proj->weight.size(0);
  qkv_weight = torch::cat({q_proj->weight, k_proj->weight, v_proj->weight}, 0);
  q_proj->weight.set_data(qkv_weight.narrow(0, 0, nq));
  k_proj->weight.set_data(qkv_weight.narrow(0, nq, nk));
  v_proj->weight.set_data(qkv_weight.narrow(0, nq + nk, nv));
  if (q_proj->bias.defined()) {
    qkv_bias = torch::cat({q_proj->bias, k_proj->bias, v_proj->bias}, 0);
    q_proj->bias.set_data(qkv_bias.narrow(0, 0, nq));
    k_proj->bias.set_data(qkv_bias.narrow(0, nq, nk));
    v_proj->bias.set_data(qkv_bias.narrow(0, nq + nk, nv));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const std::optional<torch::Tensor>& mask, bool is_causal,
                                     const ForwardArgs& args, int64_t layer) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor q, k, v;
  // Inference uses the fused projection (one matrix product, and RoPE applied to q and k in one pass); training
  // goes through the separate weights so that gradients reach them.
  // An adapted projection (LoRA) goes through its own Linear.
  const bool fused = qkv_weight.defined() && !torch::GradMode::is_enabled() && !q_proj->has_lora() &&
                     !k_proj->has_lora() && !v_proj->has_lora();
  if (fused && args.static_pos.defined() && !q_norm && b == 1 &&
      t == 1 && x.is_cuda() && kernels::available()) {
    // One token (CUDA graph decoding): RoPE on q and k and the cache writes are one kernel.
    auto qkv = project(x, qkv_weight, qkv_bias).view({n_heads + 2 * n_kv_heads, head_dim});
    torch::Tensor kc = args.cache->keys(layer), vc = args.cache->values(layer);
    kernels::rope_to_cache(qkv, cos, sin, args.static_pos, n_heads, n_kv_heads, q, kc, vc);
    q = q.view({1, n_heads, 1, head_dim});
    k = kc.narrow(2, 0, args.static_len);
    v = vc.narrow(2, 0, args.static_len);
    auto out = compat::attention(q, k, v, mask, is_causal, 1.0 / std::sqrt(static_cast<double>(head_dim)));
    return o_proj(out.reshape({b, t, n_heads * head_dim}));
  }
  if (fused) {
    auto qkv = project(x, qkv_weight, qkv_bias).view({b, t, n_heads + 2 * n_kv_heads, head_dim});
    v = qkv.narrow(2, n_heads + n_kv_heads, n_kv_heads).transpose(1, 2);  // [B, Hkv, T, hd]
    if (q_norm) {
      q = apply_rope(q_norm(qkv.narrow(2, 0, n_heads)).transpose(1, 2), cos, sin);
      k = apply_rope(k_norm(qkv.narrow(2, n_heads, n_kv_heads)).transpose(1, 2), cos, sin);
    } else if (kernels::available() && kernels::rope_qk_applies(qkv, cos)) {
      std::tie(q, k) = kernels::rope_qk(qkv, cos, sin, n_heads, n_kv_heads);  // one kernel, attention's layout
    } else {
      auto qk = apply_rope(qkv.narrow(2, 0, n_heads + n_kv_heads).transpose(1, 2), cos, sin);  // [B, H+Hkv, T, hd]
      q = qk.narrow(1, 0, n_heads);
      k = qk.narrow(1, n_heads, n_kv_heads);
    }
  } else {
    q = q_proj(x).view({b, t, n_heads, head_dim});     // [B, T, H, hd]
    k = k_proj(x).view({b, t, n_kv_heads, head_dim});  // [B, T, Hkv, hd]
    v = v_proj(x).view({b, t, n_kv_heads, head_dim}).transpose(1, 2);
    if (q_norm) {
      q = q_norm(q);
      k = k_norm(k);
    }
    q = apply_rope(q.transpose(1, 2), cos, sin);  // [B, H, T, hd]
    k = apply_rope(k.transpose(1, 2), cos, sin);  // [B, Hkv, T, hd]
  }
  if (args.row_positions.defined()) {
    std::tie(k, v) = args.cache->write_rows(layer, k, v, args.row_positions, args.row_len);
  } else if (args.static_pos.defined()) {
    std::tie(k, v) = args.cache->write_at(layer, k, v, args.static_pos, args.static_len);
  } else if (args.cache) {
    std::tie(k, v) = args.cache->write(layer, k, v);
  }
  auto out = compat::attention(q, k, v, mask, is_causal, 1.0 / std::sqrt(static_cast<double>(head_dim)));
  return o_proj(out.transpose(1, 2).reshape({b, t, n_heads * head_dim}));
}

MlpImpl::MlpImpl(const ModelConfig& c, const torch::TensorOptions& options) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, false, options));
}

void MlpImpl::fuse_projections() {
  torch::NoGradGuard no_grad;
  const int64_t n = gate_proj->weight.size(0);
  gate_up_weight = torch::cat({gate_proj->weight, up_proj->weight}, 0);
  gate_proj->weight.set_data(gate_up_weight.narrow(0, 0, n));
  up_proj->weight.set_data(gate_up_weight.narrow(0, n, n));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (gate_up_weight.defined() && !torch::GradMode::is_enabled() && !gate_proj->has_lora() && !up_proj->has_lora()) {
    auto gate_up = project(x, gate_up_weight);
    if (x.is_cuda() && kernels::available()) return down_proj(kernels::silu_mul(gate_up));
    auto halves = gate_up.chunk(2, -1);
    return down_proj(torch::silu(halves[0]) * halves[1]);
  }
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& options) {
  self_attn = register_module("self_attn", Attention(c, options));
  mlp = register_module("mlp", Mlp(c, options));
  input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
}

TransformerImpl::TransformerImpl(const ModelConfig& c, const torch::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) layers->push_back(DecoderLayer(c, options));
  norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
}

DecoderLmImpl::DecoderLmImpl(const ModelConfig& c, const DeviceOptions& options) : config_(c), options_(options) {
  auto topts = torch::TensorOptions().device(options.device).dtype(options.dtype);
  model = register_module("model", Transformer(c, topts));
  if (!c.tie_word_embeddings) lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size, false, topts));
  inv_freq_ = rope_inv_freq(c).to(options.device);
}

torch::Tensor DecoderLmImpl::embed(const torch::Tensor& ids) { return model->embed_tokens(ids); }

std::pair<torch::Tensor, torch::Tensor> DecoderLmImpl::rope_tables(const torch::Tensor& positions) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.unsqueeze(0);  // [T, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(0);                              // [1, T, hd]
  return {emb.cos().to(options_.dtype), emb.sin().to(options_.dtype)};
}

torch::Tensor DecoderLmImpl::forward_hidden(const torch::Tensor& x, const ForwardArgs& args) {
  COENC_CHECK(x.dim() == 3 && x.size(2) == config_.hidden_size, "decoder input must be [B, T, {}], got {}",
              config_.hidden_size, x.sizes());
  const int64_t t = x.size(1);
  if (args.static_pos.defined()) return forward_static(x, args);
  if (args.row_positions.defined()) return forward_rows(x, args);
  const int64_t past = args.cache ? args.cache->length() : 0;
  COENC_CHECK_CODE(!args.cache || args.start_pos == past, Internal,
                   "forward at position {} but the KV cache holds {}", args.start_pos, past);
  if (args.cache) args.cache->reserve(t);
  const int64_t total = past + t;
  auto dev = options_.device;

  auto positions = torch::arange(args.start_pos, args.start_pos + t, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  auto [cos, sin] = rope_tables(positions);

  // The attention pattern: build an explicit mask only when the plain causal one does not describe it.
  std::optional<torch::Tensor> mask;
  bool is_causal = false;
  const bool window_bites = config_.sliding_window && total > *config_.sliding_window;
  if (args.causal && past == 0 && !window_bites && !args.key_mask.defined()) {
    is_causal = t > 1;
  } else if (!args.causal && !window_bites && !args.key_mask.defined()) {
    // Bidirectional with nothing to hide (a context tower's batch of full chunks): no mask at all, which keeps the
    // flash kernel; an all-true mask would not.
  } else {
    auto opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
    auto qpos = torch::arange(past, total, opts).unsqueeze(1);  // [T, 1]
    auto kpos = torch::arange(0, total, opts).unsqueeze(0);     // [1, K]
    torch::Tensor m = torch::ones({t, total}, torch::TensorOptions().dtype(torch::kBool).device(dev));
    if (args.causal) m = kpos <= qpos;
    if (window_bites) m = m & (kpos > qpos - *config_.sliding_window);
    if (args.key_mask.defined()) {
      COENC_CHECK(args.key_mask.dim() == 2 && args.key_mask.size(1) == total,
                  "key mask must be [B, {}], got {}", total, args.key_mask.sizes());
      m = m.unsqueeze(0) & args.key_mask.to(dev, torch::kBool).unsqueeze(1);  // [B, T, K]
      m = m.unsqueeze(1);                                                    // [B, 1, T, K]
    }
    mask = m;
  }

  const int64_t n_run = args.n_layers < 0 ? config_.n_layers : std::min(args.n_layers, config_.n_layers);
  COENC_CHECK_CODE(!args.cache || n_run == config_.n_layers, Internal, "a KV-cached forward must run every layer");
  torch::Tensor h = run_layers(x, n_run, cos, sin, mask, is_causal, args, args.n_layers < 0);
  if (args.cache) args.cache->advance(t);
  return h;
}

torch::Tensor DecoderLmImpl::run_layers(const torch::Tensor& x, int64_t n_run, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const std::optional<torch::Tensor>& mask,
                                        bool is_causal, const ForwardArgs& args, bool final_norm) {
  // The residual stream h and each sublayer's output `delta`. "h += delta; normed = norm(h)" is one fused CUDA
  // kernel at inference (two passes over h instead of nine); everywhere else it is the Hugging Face formula.
  const bool fused = x.is_cuda() && kernels::available() && !torch::GradMode::is_enabled() &&
                     !compat::autocast_state(torch::kCUDA).enabled;
  torch::Tensor h = fused ? x.contiguous() : x, delta;
  auto add_norm = [&](RmsNormImpl& norm) {
    if (fused) {
      torch::Tensor h_out, normed;
      kernels::add_rms_norm(h, delta, norm.weight, norm.eps, h_out, normed);
      if (delta.defined()) h = h_out;
      return normed;
    }
    if (delta.defined()) h = h + delta;
    return norm.forward(h);
  };
  const bool checkpoint = checkpoint_layers_ && torch::GradMode::is_enabled() && !args.cache;
  for (int64_t i = 0; i < n_run; ++i) {
    auto layer = model->layers[i]->as<DecoderLayerImpl>();
    if (checkpoint) {
      // The whole layer as one recomputed block: h -> h + attn(norm(h)) -> ... + mlp(norm(...)).
      auto block = [layer, cos, sin, mask, is_causal, args, i](const torch::Tensor& in) {
        torch::Tensor a = in + layer->self_attn->forward(layer->input_layernorm->forward(in), cos, sin, mask,
                                                         is_causal, args, i);
        return a + layer->mlp->forward(layer->post_attention_layernorm->forward(a));
      };
      h = checkpointed(block, h, layer->parameters());
      continue;
    }
    delta = layer->self_attn->forward(add_norm(*layer->input_layernorm), cos, sin, mask, is_causal, args, i);
    delta = layer->mlp(add_norm(*layer->post_attention_layernorm));
  }
  if (final_norm) return add_norm(*model->norm);
  return delta.defined() ? h + delta : h;
}

torch::Tensor DecoderLmImpl::forward_static(const torch::Tensor& x, const ForwardArgs& args) {
  // Every tensor here has a shape fixed by static_len, and every position lives on the device: the whole pass
  // can be captured once as a CUDA graph and replayed for each new token. One additive mask serves all layers.
  COENC_CHECK_CODE(args.cache && x.size(1) == 1 && args.static_len > 0, Internal,
                   "static decoding takes one token, a cache and a positive length");
  auto [cos, sin] = rope_tables(args.static_pos);
  auto kpos = torch::arange(args.static_len, args.static_pos.options());
  torch::Tensor allowed = kpos <= args.static_pos;  // [static_len]
  if (config_.sliding_window) allowed = allowed & (kpos > args.static_pos - *config_.sliding_window);
  torch::Tensor mask = torch::zeros({1, args.static_len}, x.options())
                           .masked_fill(allowed.logical_not().unsqueeze(0), -std::numeric_limits<float>::infinity());
  return run_layers(x, config_.n_layers, cos, sin, mask, false, args, true);
}

torch::Tensor DecoderLmImpl::forward_rows(const torch::Tensor& x, const ForwardArgs& args) {
  // One token for each of B independent sequences, each at its own position: RoPE per row, and a key mask per
  // row that admits its own positions only (rows of shorter sequences leave the rest of the span masked).
  const int64_t b = x.size(0);
  COENC_CHECK_CODE(args.cache && x.size(1) == 1 && args.row_positions.dim() == 1 &&
                       args.row_positions.size(0) == b && args.row_len > 0,
                   Internal, "batched decoding takes one token a row, a cache and a position for each row");
  args.cache->reserve_rows(args.row_len);
  auto [cos, sin] = rope_tables(args.row_positions);     // [1, B, hd]
  cos = cos.transpose(0, 1), sin = sin.transpose(0, 1);  // [B, 1, hd]: row r's position for its one token
  auto kpos = torch::arange(args.row_len, args.row_positions.options()).unsqueeze(0);  // [1, K]
  auto qpos = args.row_positions.unsqueeze(1);                                         // [B, 1]
  torch::Tensor allowed = kpos <= qpos;                                                // [B, K]
  if (config_.sliding_window) allowed = allowed & (kpos > qpos - *config_.sliding_window);
  return run_layers(x, config_.n_layers, cos, sin, allowed.view({b, 1, 1, args.row_len}), false, args, true);
}

std::vector<torch::Tensor> DecoderLmImpl::add_lora(const LoraOptions& o, uint64_t seed) {
  static const std::vector<std::string> known = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  COENC_CHECK(!o.targets.empty(), "LoRA: no target projections given (expected some of q_proj, k_proj, v_proj, "
              "o_proj, gate_proj, up_proj, down_proj)");
  for (const auto& t : o.targets)
    COENC_CHECK(std::find(known.begin(), known.end(), t) != known.end(),
                "LoRA: unknown target \"{}\" (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", t);
  std::vector<torch::Tensor> params;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto* l = model->layers[i]->as<DecoderLayerImpl>();
    const std::vector<std::pair<std::string, Linear>> projections = {
        {"q_proj", l->self_attn->q_proj},  {"k_proj", l->self_attn->k_proj}, {"v_proj", l->self_attn->v_proj},
        {"o_proj", l->self_attn->o_proj},  {"gate_proj", l->mlp->gate_proj}, {"up_proj", l->mlp->up_proj},
        {"down_proj", l->mlp->down_proj}};
    for (size_t j = 0; j < projections.size(); ++j) {
      const std::string& name = projections[j].first;
      Linear lin = projections[j].second;
      if (std::find(o.targets.begin(), o.targets.end(), name) == o.targets.end()) continue;
      lin->add_lora(o.rank, o.alpha, seed + 1000003ULL * i + j);
      params.push_back(lin->lora_A->weight);
      params.push_back(lin->lora_B->weight);
    }
  }
  return params;
}

void DecoderLmImpl::merge_lora() {
  for (const auto& layer : *model->layers) {
    auto* l = layer->as<DecoderLayerImpl>();
    for (Linear lin : {l->self_attn->q_proj, l->self_attn->k_proj, l->self_attn->v_proj, l->self_attn->o_proj,
                       l->mlp->gate_proj, l->mlp->up_proj, l->mlp->down_proj})
      lin->merge_lora();
  }
}

void DecoderLmImpl::fuse_projections() {
  for (const auto& layer : *model->layers) {
    auto* l = layer->as<DecoderLayerImpl>();
    l->self_attn->fuse_projections();
    l->mlp->fuse_projections();
  }
}

torch::Tensor DecoderLmImpl::logits(const torch::Tensor& hidden) {
  const torch::Tensor& w = lm_head ? lm_head->weight : model->embed_tokens->weight;
  return project(hidden, w).to(torch::kFloat32);
}

DecoderLm random_decoder(const ModelConfig& config, const DeviceOptions& options, uint64_t seed, double std) {
  DecoderLm lm(config, options);
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : lm->named_parameters()) {
    torch::Tensor& t = p.value();
    const std::string& name = p.key();
    if (name.size() >= 11 && name.rfind("norm.weight") == name.size() - 11) {
      t.fill_(1.0);
    } else if (t.device().is_cpu()) {
      t.copy_(torch::randn(t.sizes(), gen, torch::kFloat32) * std);
    } else {
      // Generate on the device: a model of billions of parameters would take minutes through the CPU.
      t.normal_(0.0, std);
    }
    t.set_requires_grad(false);
  }
  lm->fuse_projections();
  return lm;
}

}  // namespace coenc
