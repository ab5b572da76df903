// A decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3) as a libtorch module tree that mirrors Hugging
// Face's, so that `named_parameters()` yields `model.layers.3.self_attn.q_proj.weight` and loading a checkpoint
// is a name lookup. The module holds weights only; per-request state (the KV cache) is passed in.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "coenc/device.h"
#include "coenc/kv_cache.h"
#include "coenc/model_config.h"

namespace coenc {

// How one forward pass attends.
struct ForwardArgs {
  KvCache* cache = nullptr;  // append this pass's keys/values and attend over everything stored (may be null)
  int64_t start_pos = 0;     // position of x[:, 0]; must equal cache->length() when a cache is given
  bool causal = true;        // false: bidirectional attention (a context tower may use it)
  int64_t n_layers = -1;     // run only the first n layers and return their raw output; -1: all + final norm
  torch::Tensor key_mask;    // optional [B, Tk] bool, true at real (non-padding) keys
  // Static-shape decoding (CUDA graphs): one token at the device-side position `static_pos` ([1] int64),
  // attending over the first `static_len` cache slots. The cache's host-side length is not advanced.
  torch::Tensor static_pos;
  int64_t static_len = 0;
  // Batched decoding of independent sequences (continuous batching, SlotBatch): x is [B, 1, d_model], one
  // token of row r's sequence at position row_positions[r] ([B] int64 on the model's device), and `cache`
  // holds one sequence per row (KvCache::write_rows); each row attends over its own positions 0 ..
  // row_positions[r]. `row_len` = max(row_positions) + 1. The cache's host-side length is not used.
  torch::Tensor row_positions;
  int64_t row_len = 0;
};

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);  // [..., dim] -> [..., dim]
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RmsNorm);

// y = x W^T + b with W [out, in]; parameters are allocated uninitialised (they are loaded or initialised later).
// With a LoRA adapter attached (add_lora), y += (alpha / rank) x A^T B^T.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

  // Attaches a low-rank adapter (LoRA, Hu et al. 2021) as submodules `lora_A` ([rank, in], Kaiming-uniform from
  // `seed`, as PEFT) and `lora_B` ([out, rank], zero, so the output starts unchanged), both float32 and trainable.
  void add_lora(int64_t rank, double alpha, uint64_t seed);
  // Folds the adapter into W (W += alpha / rank · B A, in W's dtype) and removes it.
  void merge_lora();
  bool has_lora() const { return static_cast<bool>(lora_A); }

  torch::Tensor weight, bias;
  std::shared_ptr<LinearImpl> lora_A, lora_B;
  double lora_scale = 0;
};
TORCH_MODULE(Linear);

// Which projections of a decoder get LoRA adapters, and their shape.
struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  // Names of the projections in each layer: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
};

// Token embeddings: weight [vocab, d_model].
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& ids);  // [B, T] int64 -> [B, T, dim]
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& c, const torch::TensorOptions& options);
  // x [B, T, d_model], cos/sin [B or 1, T, head_dim], mask as in compat::attention.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const std::optional<torch::Tensor>& mask, bool is_causal, const ForwardArgs& args,
                        int64_t layer);
  // Concatenates q/k/v into one matrix; the three weights become views of it (same memory, same names).
  void fuse_projections();
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RmsNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 only
  torch::Tensor qkv_weight, qkv_bias;         // [(H + 2 Hkv) hd, d_model] after fuse_projections()
  int64_t n_heads, n_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const ModelConfig& c, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  void fuse_projections();                         // gate and up become views of one [2 I, d_model] matrix
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  torch::Tensor gate_up_weight;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& options);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// Hugging Face's `XxxModel`: embeddings, layers, final norm (registered as "model").
class TransformerImpl : public torch::nn::Module {
 public:
  TransformerImpl(const ModelConfig& c, const torch::TensorOptions& options);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(Transformer);

// Hugging Face's `XxxForCausalLM`.
class DecoderLmImpl : public torch::nn::Module {
 public:
  DecoderLmImpl(const ModelConfig& c, const DeviceOptions& options);

  // ids [B, T] (int64) -> embeddings [B, T, d_model].
  torch::Tensor embed(const torch::Tensor& ids);
  // x [B, T, d_model] -> hidden states [B, T, d_model] (after the final norm unless args.n_layers limits it).
  torch::Tensor forward_hidden(const torch::Tensor& x, const ForwardArgs& args);
  // hidden [..., d_model] -> logits [..., vocab] in float32.
  torch::Tensor logits(const torch::Tensor& hidden);

  // RoPE tables for `positions` [T] (int64, on the model's device): cos, sin [1, T, head_dim] in the compute dtype.
  std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::Tensor& positions);

  // Attaches LoRA adapters to the `options.targets` projections of every layer (seeded per layer and projection)
  // and returns their parameters (trainable). The fused inference paths step aside for an adapted projection.
  std::vector<torch::Tensor> add_lora(const LoraOptions& options, uint64_t seed);
  // Folds every adapter into its weight and removes it: the model is a plain one again, saved as such.
  void merge_lora();

  // Activation checkpointing for training (model/checkpointing.h): under gradient mode, each layer keeps only its
  // input and is recomputed in the backward pass.
  void set_activation_checkpointing(bool on) { checkpoint_layers_ = on; }

  // Fuses the projections that read the same input (q/k/v, gate/up) into single matrix products for inference
  // (with gradients off); parameters keep their names and become views of the fused matrices. load_decoder and
  // random_decoder do this.
  void fuse_projections();

  const ModelConfig& config() const { return config_; }
  const DeviceOptions& device_options() const { return options_; }

  Transformer model{nullptr};
  Linear lm_head{nullptr};  // absent (nullptr) when tie_word_embeddings

 private:
  torch::Tensor forward_static(const torch::Tensor& x, const ForwardArgs& args);
  torch::Tensor forward_rows(const torch::Tensor& x, const ForwardArgs& args);
  torch::Tensor run_layers(const torch::Tensor& x, int64_t n_run, const torch::Tensor& cos,
                           const torch::Tensor& sin, const std::optional<torch::Tensor>& mask, bool is_causal,
                           const ForwardArgs& args, bool final_norm);
  ModelConfig config_;
  DeviceOptions options_;
  torch::Tensor inv_freq_;      // [head_dim / 2] float32, RoPE frequencies after scaling
  bool checkpoint_layers_ = false;
};
TORCH_MODULE(DecoderLm);

// Loads a Hugging Face model directory (config.json + model.safetensors or shards). Strict: every missing,
// unexpected or mis-shaped tensor is reported by name. Weights are converted to `options.dtype` on
// `options.device`, and frozen (requires_grad = false).
DecoderLm load_decoder(const std::filesystem::path& dir, const DeviceOptions& options);

// Writes `lm` as a Hugging Face model directory: config.json (classic layout) and model.safetensors in `storage`
// dtype, each written atomically. transformers' from_pretrained reads the result.
// `max_shard_bytes` > 0 shards the weights (write_model_weights, coenc/checkpoint.h).
void save_decoder(const DecoderLm& lm, const std::filesystem::path& dir, torch::ScalarType storage = torch::kFloat32,
                  int64_t max_shard_bytes = 0);

// A model of `config` with random weights (normal(0, std), norms at 1), for tests and benchmarks.
DecoderLm random_decoder(const ModelConfig& config, const DeviceOptions& options, uint64_t seed, double std = 0.02);

}  // namespace coenc
