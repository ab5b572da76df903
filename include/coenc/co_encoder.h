// The Co-Encoder: a context tower (a decoder LM used as an encoder) reads a document in chunks, a connector pools
// its hidden states into fewer vectors and projects them into the decoder's embedding space, and the decoder reads
// `[BOC] vectors [EOC]` in place of the document's tokens (docs/co_encoder.md).
//
// The module tree mirrors the seed project's (sudy-super/Co-Encoder) CoEncoderForConditionalGeneration, so a
// checkpoint it saved loads by name:
//   context_tower.tower.*       the tower, a Hugging Face XxxForCausalLM (model.layers.N..., lm_head)
//   connector.dynamic_pooling.* the seed's dynamic weighted average pooling (pooling "dynamic" only)
//   connector.linear_1/2.*      the projector Linear-act-Linear into the decoder's hidden size
//   connector.begin_of_context, connector.end_of_context
//                               learned [BOC] / [EOC] rows [d_text] (ours; context_markers "learned" only)
//   language_model.*            the decoder, a Hugging Face XxxForCausalLM
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "coenc/co_encoder_config.h"
#include "coenc/decoder.h"
#include "coenc/model_config.h"
#include "coenc/tokenizer.h"
#include "coenc/types.h"

namespace coenc {

// Chunks whose compression is queued on the model's device (CoEncoderImpl::queue_chunks). collect() waits for the
// device and returns each chunk's vectors [k_i, d_text] in the chunks' order (once).
class QueuedChunks {
 public:
  std::vector<torch::Tensor> collect();
  struct State;  // the queued batches and the marks of their ends (co_encoder.cpp)

 private:
  friend class CoEncoderImpl;
  std::shared_ptr<State> state_;
};

// What the connector produces for a batch of B inputs (padded to the longest).
struct ConnectorOutput {
  torch::Tensor vectors;        // [B, K, d_text]: compressed vectors, in the decoder's embedding space
  torch::Tensor mask;           // [B, K] bool: true at real vectors (item b has sizes[b], the first ones)
  torch::Tensor sizes;          // [B] int64: k of each item
  torch::Tensor size_estimate;  // [B] float, dynamic only: the continuous size before truncation (has gradient)
  torch::Tensor size_loss;      // [] float, dynamic only: ((size - target) / target)^2 averaged, target =
                                //    clamp(T / ratio, min_output_size, max_output_size); add it to a training loss
};

class ConnectorImpl;

// The tower as the seed nests it: `context_tower.tower` is the tower's XxxForCausalLM.
class ContextTowerImpl : public torch::nn::Module {
 public:
  explicit ContextTowerImpl(DecoderLm tower_lm);
  DecoderLm tower{nullptr};
};
TORCH_MODULE(ContextTower);

class CoEncoderImpl : public torch::nn::Module {
 public:
  // Takes ownership of the tower and decoder modules; the connector is created with uninitialised weights.
  CoEncoderImpl(const CoEncoderConfig& config, DecoderLm tower, DecoderLm decoder, const DeviceOptions& options);

  // Compresses a batch: ids [B, T] int64, lengths [B] int64 (item b holds ids[b, :lengths[b]], padding after it;
  // every length in [1, T], T <= chunk_size). Runs with gradients when GradMode is on (training).
  ConnectorOutput forward_context(const torch::Tensor& ids, const torch::Tensor& lengths);

  // Tower features: ids [B, T], lengths [B] -> [B, T, d_context], HF hidden_states[context_feature_layer]
  // (zero at padding). For pooling "attn" the connector reads one layer earlier (see forward_context).
  // `token_mask` [B, T] bool on the model's device, true at real tokens: the caller's, when it has one already
  // (forward_context's, which the connector reads too); built from `lengths` otherwise, and only if anything is
  // padded.
  torch::Tensor tower_features(const torch::Tensor& ids, const torch::Tensor& lengths, int64_t n_layers,
                               const torch::Tensor& token_mask = {});

  // One chunk (1 <= size <= chunk_size tokens) -> its vectors [k, d_text] (no gradient).
  torch::Tensor compress_chunk(const TokenIds& ids);
  // A document of any length: split into chunks of chunk_size tokens (the last may be shorter), compressed in
  // batches of up to `n_batch` chunks. Returns each chunk's vectors [k_i, d_text]; the result equals compressing
  // each chunk alone. `on_progress(chunks_done, n_chunks)`, if given, is called after each batch. Throws
  // InvalidInput for an empty document.
  std::vector<torch::Tensor> compress(const TokenIds& document, int64_t n_batch = 8,
                                      const std::function<void(int64_t, int64_t)>& on_progress = nullptr);
  // A document's chunks as compress() cuts them: chunk_size tokens each, the last may be shorter.
  std::vector<TokenIds> split_chunks(const TokenIds& document) const;
  // Chunks of any documents (each 1 <= size <= chunk_size tokens), compressed in batches of up to `n_batch`
  // (longest first; padded to chunk_size on a GPU, to the batch's longest on the CPU): what `compress` does for
  // one document, and what bulk compression does across documents so that a corpus of short ones still fills the
  // batches. Returns each chunk's vectors [k_i, d_text] in the chunks' order, on the model's device, or on
  // `out_device` (each batch copied there at once: a .coctx wants them on the CPU); `on_progress(chunks_done,
  // n_chunks)` after each batch.
  std::vector<torch::Tensor> compress_chunks(const std::vector<TokenIds>& chunks, int64_t n_batch = 8,
                                             const std::function<void(int64_t, int64_t)>& on_progress = nullptr,
                                             std::optional<torch::Device> out_device = std::nullopt);
  // compress_chunks in two steps: every batch queued on a GPU without waiting for any (the CPU computes them
  // here), and collect() later. Bulk compression queues one group of documents while it writes the one before, so
  // that the device is not idle while the host describes and hands out a group.
  QueuedChunks queue_chunks(const std::vector<TokenIds>& chunks, int64_t n_batch,
                            std::optional<torch::Device> out_device = std::nullopt);

  // The [BOC] and [EOC] rows, [2, d_text] in the model's dtype and device: the decoder's embeddings of
  // begin/end_of_context_token_id (context_markers "tokens"), or connector.begin_of_context / end_of_context
  // ("learned"). Follows GradMode: under training it carries the gradient of whichever parameters it reads.
  torch::Tensor context_marks();
  // The decoder rows of one compressed block: [BOC; chunk vectors in order; EOC] -> [2 + sum k_i, d_text]
  // (no gradient; for inference).
  torch::Tensor context_block(const std::vector<torch::Tensor>& chunks);
  // (Prompts around the blocks are the pipeline's: raw_prompt and ask_prompt, coenc/pipeline.h.)

  // Sets every connector parameter to the seed's initialisation (normal(0, std) matrices, zero biases,
  // scale_param 0.01) from `seed`, with requires_grad = `trainable`. Learned BOC/EOC rows start as the
  // decoder's embeddings of begin/end_of_context_token_id (so a model starts out reading what the seed's does);
  // they draw nothing from `seed`, so the other parameters are the same with either context_markers.
  void init_connector(uint64_t seed, double std = 0.02, bool trainable = true);

  const CoEncoderConfig& config() const { return config_; }
  const DeviceOptions& device_options() const { return options_; }
  // Compresses at `ratio` tokens per vector from now on (pooling "mean" or "attn": their pooling has no
  // parameters tied to r, so one connector can serve several ratios; evaluation and multi-ratio training use
  // this). The fingerprint then names the new ratio. Throws Unsupported for "dynamic", InvalidInput for a
  // ratio below 1.
  void set_compression_ratio(int64_t ratio);
  // Records the prompt layout the model was trained with ("raw" or "chat"; config prompt_layout).
  void set_prompt_layout(const std::string& layout);
  // On CUDA, compress_chunks / queue_chunks run each full batch (n_batch chunks of chunk_size tokens) from a CUDA
  // graph captured on first use (pooling "mean" and "attn"): on by default, COENC_CONTEXT_GRAPHS=0 turns it off
  // for a run. The vectors equal the eager batch's to float rounding (the same kernels; unit test
  // Chunking.CudaGraphedFullBatchesEqualEagerOnes).
  void set_context_graphs(bool on);
  // How many such graphs are captured (one per row count and ratio used so far).
  int64_t captured_context_graphs() const;
  ConnectorImpl& connector_impl();

  // 32 hex digits identifying everything that determines the compressed vectors: the tower and connector weights
  // (names, shapes and values rounded to bf16, so that one checkpoint gives one fingerprint whether it runs in f32
  // or bf16) and the config fields that shape compression (tower config, feature layer, activation, pooling,
  // ratio, chunk size, output bounds, tower attention, d_text). Not the decoder, nor the learned BOC/EOC rows:
  // they frame the vectors in the decoder's input, and a .coctx file holds only the vectors. Computed on the
  // first call (one pass over the tower and connector weights), then cached: call it only once the weights no
  // longer change.
  const std::string& fingerprint();

  ContextTower context_tower{nullptr};
  std::shared_ptr<ConnectorImpl> connector;
  DecoderLm language_model{nullptr};

 private:
  // compress_chunks' and queue_chunks' loop: `wait_behind` waits for batch i - 1 after queueing batch i.
  QueuedChunks queue_batches(const std::vector<TokenIds>& chunks, int64_t n_batch,
                             const std::function<void(int64_t, int64_t)>& on_progress,
                             std::optional<torch::Device> out_device, bool wait_behind);
  // forward_context once the lengths are on the host (`lens`) and the mask [B, T] on the device (`mask`).
  ConnectorOutput pool_context(const torch::Tensor& ids, const torch::Tensor& lens, const torch::Tensor& mask);
  // The captured full batches (set_context_graphs; co_encoder.cpp): whether a batch may use one, a replay on the
  // host ids [rows, chunk_size] that takes the graphs' lock and returns the graph's own output buffers, and the
  // release once the caller has queued its copies of them.
  struct ContextGraphs;
  bool graphs_usable() const;
  ConnectorOutput replay_context_graph(const torch::Tensor& host_ids, std::unique_lock<std::mutex>& lock);
  void release_context_graph(std::unique_lock<std::mutex>& lock);
  struct FingerprintCache {
    std::once_flag once;
    std::string value;
  };
  CoEncoderConfig config_;
  DeviceOptions options_;
  std::shared_ptr<FingerprintCache> fingerprint_ = std::make_shared<FingerprintCache>();
  bool context_graphs_on_;
  std::shared_ptr<ContextGraphs> context_graphs_;
};
TORCH_MODULE(CoEncoder);

// Loads a Co-Encoder checkpoint directory (config.json + model.safetensors or shards; the tower / decoder from
// their own directories when the config names them). Strict: missing, unexpected and mis-shaped tensors are
// reported by name. Weights are converted to `options`, frozen, and fused for inference.
CoEncoder load_co_encoder(const std::filesystem::path& dir, const DeviceOptions& options);

// Writes `model` as a checkpoint directory in the seed's layout (config.json, model.safetensors, every tensor
// under its seed name), atomically per file. A tower / decoder the config references by path is skipped and the
// path written as it is: it is relative to the checkpoint the model was loaded from, so write such a model into
// that same directory, or name the paths with the overload below.
// `max_shard_bytes` > 0 shards the weights (write_model_weights, coenc/checkpoint.h).
void save_co_encoder(CoEncoderImpl& model, const std::filesystem::path& dir,
                     torch::ScalarType storage = torch::kFloat32, int64_t max_shard_bytes = 0);
// The same, choosing how the tower and decoder are written: a non-empty `context_tower_path` /
// `language_model_path` (relative to `dir`, or absolute) references that Hugging Face directory instead of storing
// the part's tensors (it must hold those very weights); an empty one stores them.
void save_co_encoder(CoEncoderImpl& model, const std::filesystem::path& dir, const std::string& context_tower_path,
                     const std::string& language_model_path, torch::ScalarType storage = torch::kFloat32, int64_t max_shard_bytes = 0);

// The two tokenizers of a checkpoint. The seed saves them in `context_tokenizer/` and `text_tokenizer/` inside the
// checkpoint directory; a tower or decoder referenced by path (context_tower_path, language_model_path) may
// instead carry its tokenizer in its own directory, which is used when the subfolder is absent.
struct CoEncoderTokenizers {
  std::unique_ptr<Tokenizer> context;  // the tower's: turns documents into the ids that are compressed
  std::unique_ptr<Tokenizer> text;     // the decoder's: questions, answers and the chat template
};

// Loads both tokenizers of the checkpoint `dir` (see CoEncoderTokenizers). Throws NotFound naming every place
// looked in when one is missing, and InvalidInput when a tokenizer has more ids than its model's vocab_size.
CoEncoderTokenizers load_co_encoder_tokenizers(const std::filesystem::path& dir, const CoEncoderConfig& config);

// A Co-Encoder of `config` with random tower and decoder (random_decoder, frozen) and a seed-initialised,
// trainable connector; for tests.
CoEncoder random_co_encoder(const CoEncoderConfig& config, const DeviceOptions& options, uint64_t seed,
                            double std = 0.02);

}  // namespace coenc
