#include "coenc/co_encoder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/error.h"
#include "coenc/safetensors.h"
#include "core/cuda_graph.h"
#include "core/torch_compat.h"
#include "model/connector.h"

namespace coenc {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTowerPrefix = "context_tower.tower.";
constexpr const char* kConnectorPrefix = "connector.";
constexpr const char* kDecoderPrefix = "language_model.";

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// COENC_CONTEXT_GRAPHS=0: every batch runs eagerly, none from a captured graph (to measure what the graphs bring).
bool context_graphs_by_default() {
  static const bool on = [] {
    const char* env = std::getenv("COENC_CONTEXT_GRAPHS");
    return env == nullptr || std::string(env) != "0";
  }();
  return on;
}

// Checks the connector tensors of a checkpoint against the config before the generic strict loader, so that a
// tower/decoder mismatch is reported in terms of the config fields rather than as a bare shape.
void check_connector_shapes(const WeightSet& w, const CoEncoderConfig& c, const std::string& where) {
  if (w.contains("connector.linear_1.weight")) {
    const torch::Tensor t = w.get("connector.linear_1.weight");
    auto s = t.sizes();
    COENC_CHECK(s.size() == 2 && s[1] == c.context.hidden_size,
                "{}: connector.linear_1.weight {} reads tower states of width {}, but context_config.hidden_size is "
                "{}: the connector was trained for another tower", where, s, s.size() == 2 ? s[1] : -1,
                c.context.hidden_size);
    COENC_CHECK(s[0] == c.text.hidden_size,
                "{}: connector.linear_1.weight {} writes vectors of width {}, but text_config.hidden_size is {}: "
                "the connector was trained for another decoder", where, s, s[0], c.text.hidden_size);
  }
  // Learned BOC/EOC rows: present exactly when the config asks for them, one decoder row each.
  const bool learned = c.context_markers == ContextMarkers::Learned;
  for (const char* name : {"connector.begin_of_context", "connector.end_of_context"}) {
    COENC_CHECK(w.contains(name) == learned,
                "{}: the checkpoint {} {} but the config says context_markers \"{}\"", where,
                learned ? "has no" : "holds", name, learned ? "learned" : "tokens");
    if (!learned) continue;
    const torch::Tensor t = w.get(name);
    COENC_CHECK(t.dim() == 1 && t.size(0) == c.text.hidden_size,
                "{}: {} {} must be [{}] (text_config.hidden_size): one row of the decoder's embeddings", where,
                name, t.sizes(), c.text.hidden_size);
  }
  bool has_dynamic = false;
  for (const auto& name : w.names()) has_dynamic = has_dynamic || starts_with(name, "connector.dynamic_pooling.");
  COENC_CHECK(has_dynamic == (c.pooling == PoolingMode::Dynamic),
              "{}: the checkpoint {} connector.dynamic_pooling.* tensors but the config says pooling \"{}\"", where,
              has_dynamic ? "holds" : "has no", pooling_mode_name(c.pooling));
}

// [begin_of_context_token_id, end_of_context_token_id] as an int64 [2] tensor on `device`.
torch::Tensor marker_ids(const CoEncoderConfig& c, const torch::Device& device) {
  std::vector<int64_t> ids = {c.begin_of_context_token_id, c.end_of_context_token_id};
  return torch::tensor(ids, torch::kInt64).to(device);
}

torch::Tensor to_ids_tensor(const TokenIds& ids, int64_t vocab, const torch::Device& device) {
  std::vector<int64_t> v(ids.begin(), ids.end());
  for (int64_t id : v)
    COENC_CHECK(id >= 0 && id < vocab, "token id {} is outside the tower vocabulary [0, {})", id, vocab);
  return torch::tensor(v, torch::kInt64).to(device);
}

}  // namespace

ContextTowerImpl::ContextTowerImpl(DecoderLm tower_lm) { tower = register_module("tower", std::move(tower_lm)); }

#if defined(COENC_WITH_CUDA)
// A full batch (n_batch chunks of chunk_size tokens, no mask) of the tower and connector, captured once per row
// count and ratio and replayed with one launch. Batches of a small tower are short on the GPU: launched op by op,
// the host took about as long as the device, and any other work of the host left the device idle (the default
// model's tower on an H100: a library of long documents took 2.0 s of model time with graphs, 2.9 s without;
// docs/benchmarks.md). A graph keeps its batch's activation memory while the model lives. Replays read the static
// ids and write the static outputs: the batch's ids are copied in on the current stream, and the caller copies the
// outputs out on it before the next batch may be queued (`free`).
struct CoEncoderImpl::ContextGraphs {
  struct Graph {
    torch::Tensor ids;       // [rows, chunk_size] int64 on the device, the replays' input
    torch::Tensor mask;      // [rows, chunk_size] bool, all true: read by the replays, so it must live as long
    CapturedGraph captured;  // outputs: vectors [rows, K, d_text], sizes [rows]
  };
  std::mutex mutex;  // one batch at a time goes through a graph's buffers
  std::map<std::pair<int64_t, int64_t>, Graph> graphs;  // by (rows, ratio); captured on first use
  GraphPool pool;
  std::optional<at::cuda::CUDAEvent> free;  // recorded once the last replay's outputs were copied out
};
#else
struct CoEncoderImpl::ContextGraphs {};
#endif

CoEncoderImpl::CoEncoderImpl(const CoEncoderConfig& config, DecoderLm tower, DecoderLm decoder,
                             const DeviceOptions& options)
    : config_(config),
      options_(options),
      context_graphs_on_(context_graphs_by_default()),
      context_graphs_(std::make_shared<ContextGraphs>()) {
  COENC_CHECK(tower->config().hidden_size == config.context.hidden_size &&
                  tower->config().n_layers == config.context.n_layers,
              "the tower ({} layers of width {}) does not match context_config ({} layers of width {})",
              tower->config().n_layers, tower->config().hidden_size, config.context.n_layers,
              config.context.hidden_size);
  COENC_CHECK(decoder->config().hidden_size == config.text.hidden_size &&
                  decoder->config().vocab_size == config.text.vocab_size,
              "the decoder (width {}, vocabulary {}) does not match text_config (width {}, vocabulary {})",
              decoder->config().hidden_size, decoder->config().vocab_size, config.text.hidden_size,
              config.text.vocab_size);
  auto topts = torch::TensorOptions().device(options.device).dtype(options.dtype);
  context_tower = register_module("context_tower", ContextTower(std::move(tower)));
  connector = register_module("connector", std::make_shared<ConnectorImpl>(config, topts));
  language_model = register_module("language_model", std::move(decoder));
}

ConnectorImpl& CoEncoderImpl::connector_impl() { return *connector; }

torch::Tensor CoEncoderImpl::tower_features(const torch::Tensor& ids, const torch::Tensor& lengths, int64_t n_layers,
                                            const torch::Tensor& token_mask) {
  const auto dev = options_.device;
  const int64_t t = ids.size(1);
  auto padding_mask = [&] {  // [B, T], true at real tokens
    if (token_mask.defined()) return token_mask;
    return torch::arange(t, torch::TensorOptions().dtype(torch::kInt64).device(dev)).unsqueeze(0) <
           lengths.to(dev, /*non_blocking=*/lengths.is_pinned()).unsqueeze(1);
  };
  // Lengths on the host say whether there is any padding without waiting for the device; a batch of full chunks
  // needs no mask at all.
  torch::Tensor mask;
  bool padded = false;
  if (lengths.device().is_cpu()) {
    padded = lengths.min().item<int64_t>() < t;
    if (padded) mask = padding_mask();
  } else {
    mask = padding_mask();
    padded = !mask.all().item<bool>();
  }
  ForwardArgs args;
  args.causal = config_.tower_attention == TowerAttention::Causal;
  args.n_layers = n_layers;
  // Padding follows the tokens: under a causal mask no real token sees it; bidirectional attention must mask it.
  if (!args.causal && padded) args.key_mask = mask;
  auto& tower = context_tower->tower;
  // Ids in page-locked memory go over without the host waiting for the device (compress_chunks).
  torch::Tensor h = tower->forward_hidden(tower->embed(ids.to(dev, /*non_blocking=*/ids.is_pinned())), args);
  return padded ? h.masked_fill(mask.logical_not().unsqueeze(-1), 0.0) : h;
}

ConnectorOutput CoEncoderImpl::forward_context(const torch::Tensor& ids, const torch::Tensor& lengths) {
  COENC_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kInt64, "context ids must be int64 [B, T], got {}",
              ids.sizes());
  COENC_CHECK(lengths.dim() == 1 && lengths.size(0) == ids.size(0), "context lengths must be [{}], got {}",
              ids.size(0), lengths.sizes());
  const int64_t t = ids.size(1);
  COENC_CHECK(t <= config_.chunk_size, "a chunk holds at most {} tokens (chunk_size), got {}", config_.chunk_size, t);
  auto lens = lengths.to(torch::kCPU, torch::kInt64);
  COENC_CHECK(t >= 1 && lens.min().item<int64_t>() >= 1 && lens.max().item<int64_t>() <= t,
              "every context length must be in [1, {}]", t);
  const auto dev = options_.device;
  auto mask = torch::arange(t, torch::TensorOptions().dtype(torch::kInt64).device(dev)).unsqueeze(0) <
              lens.to(dev, /*non_blocking=*/lens.is_pinned()).unsqueeze(1);
  return pool_context(ids, lens, mask);
}

ConnectorOutput CoEncoderImpl::pool_context(const torch::Tensor& ids, const torch::Tensor& lens,
                                            const torch::Tensor& mask) {
  const int64_t idx = config_.feature_index(), n = config_.context.n_layers;
  auto& tower = context_tower->tower;
  if (config_.pooling == PoolingMode::Attn) {
    // The pooled layer is the last one the features pass through: feed it its input.
    torch::Tensor x = tower_features(ids, lens, idx - 1, mask);
    TowerLayerRef ref{tower.get(), idx - 1, idx == n, config_.tower_attention == TowerAttention::Causal};
    return connector->forward(x, mask, &ref, lens);
  }
  // hidden_states[n] is the final norm's output; earlier ones are raw layer outputs.
  torch::Tensor features = tower_features(ids, lens, idx == n ? -1 : idx, mask);
  return connector->forward(features, mask, nullptr, lens);
}

torch::Tensor CoEncoderImpl::compress_chunk(const TokenIds& ids) {
  COENC_CHECK(!ids.empty(), "cannot compress an empty chunk");
  torch::NoGradGuard no_grad;
  auto t = to_ids_tensor(ids, config_.context.vocab_size, options_.device).unsqueeze(0);
  ConnectorOutput out = forward_context(t, torch::tensor({t.size(1)}, torch::kInt64));
  return out.vectors[0].narrow(0, 0, out.sizes[0].item<int64_t>());
}

std::vector<torch::Tensor> CoEncoderImpl::compress(const TokenIds& document, int64_t n_batch,
                                                   const std::function<void(int64_t, int64_t)>& on_progress) {
  COENC_CHECK(!document.empty(), "cannot compress an empty document");
  return compress_chunks(split_chunks(document), n_batch, on_progress);
}

std::vector<TokenIds> CoEncoderImpl::split_chunks(const TokenIds& document) const {
  const size_t c = static_cast<size_t>(config_.chunk_size);
  std::vector<TokenIds> chunks;
  for (size_t begin = 0; begin < document.size(); begin += c)
    chunks.emplace_back(document.begin() + begin, document.begin() + std::min(document.size(), begin + c));
  return chunks;
}

namespace {

int64_t next_power_of_two(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// COENC_TRACE_BATCHES=1: one line on stderr per compress_chunks call or collected queue_chunks with where the host's
// time went (to find what bulk compression loses between the tower's batches; docs/benchmarks.md).
struct BatchTrace {
  static bool on() {
    static const bool enabled = [] {
      const char* env = std::getenv("COENC_TRACE_BATCHES");
      return env != nullptr && std::string(env) == "1";
    }();
    return enabled;
  }
  using Clock = std::chrono::steady_clock;
  double ids = 0, forward = 0, copy = 0, away = 0, wait = 0, gather = 0;
  int64_t batches = 0, masked = 0, rows = 0, chunks = 0;
  Clock::time_point start = Clock::now(), mark = start;
  // Seconds since the last lap, added to `phase`.
  void lap(double& phase) {
    const auto now = Clock::now();
    phase += std::chrono::duration<double>(now - mark).count();
    mark = now;
  }
  void print() const {
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr,
                 "compress_chunks: %lld chunks in %lld batches (%lld masked, %lld rows) %.1f ms: ids %.1f, forward "
                 "%.1f, copy %.1f, away %.1f, wait %.1f, gather %.1f\n",
                 static_cast<long long>(chunks), static_cast<long long>(batches), static_cast<long long>(masked),
                 static_cast<long long>(rows), 1e3 * total, 1e3 * ids, 1e3 * forward, 1e3 * copy, 1e3 * away,
                 1e3 * wait, 1e3 * gather);
  }
};

}  // namespace

void CoEncoderImpl::set_context_graphs(bool on) { context_graphs_on_ = on; }

int64_t CoEncoderImpl::captured_context_graphs() const {
#if defined(COENC_WITH_CUDA)
  std::lock_guard<std::mutex> lock(context_graphs_->mutex);
  const auto& graphs = context_graphs_->graphs;
  return std::count_if(graphs.begin(), graphs.end(), [](const auto& g) { return g.second.captured.graph != nullptr; });
#else
  return 0;
#endif
}

struct QueuedChunks::State {
  std::vector<size_t> order;                                      // the chunks, longest first
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches;  // vectors [b, K, d_text], sizes [b]
  std::deque<std::pair<compat::DeviceMark, int64_t>> queued;      // each batch's end, and the chunks done by then
  std::function<void(int64_t, int64_t)> on_progress;
  int64_t n_chunks = 0;
  std::optional<BatchTrace> trace;
  bool collected = false;

  void finish_oldest() {
    if (trace) trace->lap(trace->gather);  // what came before the wait
    queued.front().first.wait();
    if (trace) trace->lap(trace->wait);
    if (on_progress) on_progress(queued.front().second, n_chunks);
    queued.pop_front();
  }
};

std::vector<torch::Tensor> QueuedChunks::collect() {
  COENC_CHECK_CODE(state_ && !state_->collected, Internal, "these queued chunks were collected already");
  State& s = *state_;
  if (s.trace) s.trace->lap(s.trace->away);  // the caller's time between queueing and collecting
  while (!s.queued.empty()) s.finish_oldest();
  std::vector<torch::Tensor> out(s.order.size());
  size_t next = 0;
  for (const auto& [vectors, sizes] : s.batches) {
    const torch::Tensor counts = sizes.to(torch::kCPU, torch::kInt64).contiguous();
    const int64_t* size = counts.data_ptr<int64_t>();
    for (int64_t i = 0; i < vectors.size(0); ++i) out[s.order[next++]] = vectors[i].narrow(0, 0, size[i]);
  }
  if (s.trace) s.trace->lap(s.trace->gather), s.trace->print();
  s.collected = true;
  s.batches.clear();
  return out;
}

std::vector<torch::Tensor> CoEncoderImpl::compress_chunks(const std::vector<TokenIds>& chunks, int64_t n_batch,
                                                          const std::function<void(int64_t, int64_t)>& on_progress,
                                                          std::optional<torch::Device> out_device) {
  return queue_batches(chunks, n_batch, on_progress, out_device, /*wait_behind=*/true).collect();
}

QueuedChunks CoEncoderImpl::queue_chunks(const std::vector<TokenIds>& chunks, int64_t n_batch,
                                         std::optional<torch::Device> out_device) {
  return queue_batches(chunks, n_batch, nullptr, out_device, /*wait_behind=*/false);
}

QueuedChunks CoEncoderImpl::queue_batches(const std::vector<TokenIds>& chunks, int64_t n_batch,
                                          const std::function<void(int64_t, int64_t)>& on_progress,
                                          std::optional<torch::Device> out_device, bool wait_behind) {
  COENC_CHECK(n_batch >= 1, "n_batch must be positive, got {}", n_batch);
  torch::NoGradGuard no_grad;
  QueuedChunks queued;
  queued.state_ = std::make_shared<QueuedChunks::State>();
  QueuedChunks::State& s = *queued.state_;
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  s.n_chunks = n_chunks;
  s.on_progress = on_progress;
  if (BatchTrace::on()) s.trace.emplace(), s.trace->chunks = n_chunks;
  auto& trace = s.trace;
  // Batches take the chunks longest first: full chunks fill batches of their own, which a bidirectional tower
  // reads without any attention mask (the flash kernel takes none), and the short ones (each document's last) come
  // together at the end. The vectors come back in the chunks' order.
  std::vector<size_t>& order = s.order;
  order.resize(chunks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return chunks[a].size() > chunks[b].size(); });
  // On a GPU nothing waits for the device while a batch is queued: ids go over and vectors (for the host) come back
  // through page-locked memory, so the host prepares batch i + 1 while the device computes batch i. With
  // `wait_behind` the host then waits for batch i - 1 (and reports its progress); collect() waits for the rest and
  // reads the sizes.
  const bool gpu = options_.device.is_cuda();
  const bool to_pinned = gpu && out_device && out_device->is_cpu();
  for (int64_t first = 0; first < n_chunks; first += n_batch) {
    const int64_t b = std::min(n_batch, n_chunks - first);
    int64_t width = 0;
    for (int64_t i = 0; i < b; ++i) {
      const auto len = static_cast<int64_t>(chunks[order[first + i]].size());
      COENC_CHECK(len >= 1 && len <= config_.chunk_size, "a chunk must hold 1 to {} tokens, got {}",
                  config_.chunk_size, len);
      width = std::max(width, len);
    }
    // On a GPU every batch is chunk_size wide: one shape for the fused attention kernels, which plan per shape
    // (batches of short chunks padded only to their longest gave a new width nearly every batch; with the
    // unmasked full batches, measured neutral for bulk speed on an H100, docs/benchmarks.md). The CPU computes
    // only what the longest chunk needs.
    if (gpu) width = config_.chunk_size;
    // On a GPU a masked batch (one holding a short chunk: each group's last in bulk compression) of fewer than
    // n_batch chunks is padded with rows of one token up to the next power of two: masked attention plans its kernel
    // per shape on the host (cuDNN), and a new row count at every group's end would plan again each time (without
    // the padding a library compressed at half the speed on an H100, docs/benchmarks.md). A batch of full chunks
    // takes no mask and no plan (flash), and is not padded.
    const bool masked = static_cast<int64_t>(chunks[order[first + b - 1]].size()) < width;  // longest first
    const int64_t rows = gpu && masked ? std::min(n_batch, next_power_of_two(b)) : b;
    // The batch's ids in one host buffer, zero-padded to `width` (page-locked for a GPU, so that they go over
    // without a wait).
    const auto host = torch::TensorOptions().dtype(torch::kInt64).pinned_memory(gpu);
    auto ids = torch::zeros({rows, width}, host);
    auto lengths = torch::ones({rows}, host);
    int64_t* id_rows = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < b; ++i) {
      const TokenIds& chunk = chunks[order[first + i]];
      for (size_t t = 0; t < chunk.size(); ++t) {
        const int64_t id = chunk[t];
        COENC_CHECK(id >= 0 && id < config_.context.vocab_size, "token id {} is outside the tower vocabulary [0, {})",
                    id, config_.context.vocab_size);
        id_rows[i * width + static_cast<int64_t>(t)] = id;
      }
      lengths.data_ptr<int64_t>()[i] = static_cast<int64_t>(chunk.size());
    }
    if (trace) trace->lap(trace->ids), trace->batches += 1, trace->masked += masked, trace->rows += rows;
    // A full batch of n_batch chunks replays its captured graph (holding the graphs' lock until its outputs are
    // copied out); any other batch runs eagerly.
    const bool graphed = gpu && !masked && b == n_batch && graphs_usable();
    std::unique_lock<std::mutex> graph_lock;
    ConnectorOutput out = graphed ? replay_context_graph(ids, graph_lock) : forward_context(ids, lengths);
    if (rows > b) out.vectors = out.vectors.narrow(0, 0, b), out.sizes = out.sizes.narrow(0, 0, b);
    if (trace) trace->lap(trace->forward);
    torch::Tensor vectors = out.vectors, sizes = out.sizes;
    if (to_pinned) {
      const auto pinned = torch::TensorOptions().device(torch::kCPU).pinned_memory(true);
      vectors = torch::empty(out.vectors.sizes(), pinned.dtype(out.vectors.scalar_type()));
      vectors.copy_(out.vectors, /*non_blocking=*/true);
      sizes = torch::empty(out.sizes.sizes(), pinned.dtype(out.sizes.scalar_type()));
      sizes.copy_(out.sizes, /*non_blocking=*/true);
    } else if (out_device) {
      vectors = out.vectors.to(*out_device);
    }
    if (graphed) {  // the graph's buffers are rewritten by its next replay: keep copies
      if (!to_pinned) {
        if (vectors.is_same(out.vectors)) vectors = vectors.clone();
        sizes = sizes.clone();
      }
      release_context_graph(graph_lock);
    }
    s.batches.emplace_back(vectors, sizes);
    s.queued.emplace_back(compat::DeviceMark(options_.device), first + b);
    if (trace) trace->lap(trace->copy);
    if (wait_behind)
      while (s.queued.size() > (gpu ? 1u : 0u)) s.finish_oldest();
  }
  return queued;
}

bool CoEncoderImpl::graphs_usable() const {
#if defined(COENC_WITH_CUDA)
  // Dynamic pooling reads its sizes back to the host (a wait, which a capture cannot hold). (queue_batches runs
  // without gradients, so training never reaches a graph.)
  return context_graphs_on_ && options_.device.is_cuda() && config_.pooling != PoolingMode::Dynamic;
#else
  return false;
#endif
}

ConnectorOutput CoEncoderImpl::replay_context_graph(const torch::Tensor& host_ids,
                                                    std::unique_lock<std::mutex>& lock) {
#if defined(COENC_WITH_CUDA)
  ContextGraphs& g = *context_graphs_;
  lock = std::unique_lock<std::mutex>(g.mutex);
  const int64_t rows = host_ids.size(0), width = host_ids.size(1);
  COENC_CHECK_CODE(width == config_.chunk_size, Internal, "a graphed batch is {} tokens wide, not chunk_size {}", width,
                   config_.chunk_size);
  auto stream = c10::cuda::getCurrentCUDAStream(compat::cuda_index(options_.device));
  if (g.free) g.free->block(stream);  // the previous batch's outputs are copied out (on whichever stream it ran)
  const auto key = std::make_pair(rows, config_.ratio);
  auto it = g.graphs.find(key);
  if (it == g.graphs.end()) {
    ContextGraphs::Graph graph;
    const auto dev = torch::TensorOptions().device(options_.device);
    graph.ids = torch::zeros({rows, width}, dev.dtype(torch::kInt64));
    graph.mask = torch::ones({rows, width}, dev.dtype(torch::kBool));  // every row is full
    it = g.graphs.emplace(key, std::move(graph)).first;
  }
  ContextGraphs::Graph& graph = it->second;
  graph.ids.copy_(host_ids, /*non_blocking=*/host_ids.is_pinned());
  if (!graph.captured.graph) {  // captured on first use (its warm-up reads the ids just copied)
    torch::Tensor ids = graph.ids, mask = graph.mask;
    torch::Tensor lens = torch::full({rows}, width, torch::kInt64);  // read on the host only
    graph.captured = g.pool.capture([this, ids, lens, mask] {
      ConnectorOutput o = pool_context(ids, lens, mask);
      return std::vector<torch::Tensor>{o.vectors, o.sizes};
    });
  }
  graph.captured.graph->replay();
  ConnectorOutput out;
  out.vectors = graph.captured.outputs[0];
  out.sizes = graph.captured.outputs[1];
  return out;
#else
  (void)host_ids, (void)lock;
  fail(ErrorCode::Internal, "context graphs need a CUDA build");
#endif
}

void CoEncoderImpl::release_context_graph(std::unique_lock<std::mutex>& lock) {
#if defined(COENC_WITH_CUDA)
  if (!context_graphs_->free) context_graphs_->free.emplace();
  context_graphs_->free->record(c10::cuda::getCurrentCUDAStream(compat::cuda_index(options_.device)));
#endif
  lock.unlock();
}

torch::Tensor CoEncoderImpl::context_marks() {
  if (config_.context_markers == ContextMarkers::Learned)
    return torch::stack({connector->begin_of_context, connector->end_of_context});  // [2, d_text]
  return language_model->embed(marker_ids(config_, options_.device));             // [2, d_text]
}

torch::Tensor CoEncoderImpl::context_block(const std::vector<torch::Tensor>& chunks) {
  torch::NoGradGuard no_grad;
  auto rows = context_marks();  // [2, d_text]
  std::vector<torch::Tensor> parts = {rows.narrow(0, 0, 1)};
  for (const auto& v : chunks) {
    COENC_CHECK(v.dim() == 2 && v.size(1) == config_.text.hidden_size,
                "compressed vectors must be [k, {}], got {}", config_.text.hidden_size, v.sizes());
    parts.push_back(v.to(options_.device, options_.dtype));
  }
  parts.push_back(rows.narrow(0, 1, 1));
  return torch::cat(parts, 0);  // [2 + sum k, d_text]
}

void CoEncoderImpl::init_connector(uint64_t seed, double std, bool trainable) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  // Learned markers start where the seed's are, so training begins from the seed's behaviour.
  torch::Tensor token_marks = config_.context_markers == ContextMarkers::Learned
                                  ? language_model->embed(marker_ids(config_, options_.device))
                                  : torch::Tensor();  // [2, d_text]
  for (auto& p : connector->named_parameters()) {
    torch::Tensor& t = p.value();
    const std::string& name = p.key();
    if (name == "begin_of_context" || name == "end_of_context") {
      t.copy_(token_marks[name == "begin_of_context" ? 0 : 1]);
    } else if (name == "dynamic_pooling.scale_param") {
      t.fill_(0.01);
    } else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      t.zero_();
    } else {
      t.copy_(torch::randn(t.sizes(), gen, torch::kFloat32) * std);
    }
    t.set_requires_grad(trainable);
  }
}

CoEncoder load_co_encoder(const fs::path& dir, const DeviceOptions& options) {
  CoEncoderConfig config = CoEncoderConfig::load(dir);
  WeightSet weights = WeightSet::open(dir);
  const std::string where = dir.string();
  check_connector_shapes(weights, config, where);

  auto embedded = [&](const ModelConfig& c, const std::string& path, const char* prefix) {
    if (!path.empty()) return load_decoder(dir / path, options);
    DecoderLm lm(c, options);
    LoadRules rules;
    rules.prefix = prefix;
    if (c.tie_word_embeddings) rules.tolerated.insert(std::string(prefix) + "lm_head.weight");
    load_module_weights(*lm, weights, rules, where);
    for (auto& p : lm->parameters()) p.set_requires_grad(false);
    lm->fuse_projections();
    return lm;
  };
  DecoderLm tower = embedded(config.context, config.context_tower_path, kTowerPrefix);
  DecoderLm decoder = embedded(config.text, config.language_model_path, kDecoderPrefix);
  CoEncoder model(config, tower, decoder, options);
  LoadRules rules;
  rules.prefix = kConnectorPrefix;
  load_module_weights(*model->connector, weights, rules, where);
  for (auto& p : model->connector->parameters()) p.set_requires_grad(false);

  // Anything else in the checkpoint belongs to no part of the model.
  std::vector<std::string> stray;
  for (const auto& name : weights.names()) {
    const bool tower_part = starts_with(name, kTowerPrefix) && config.context_tower_path.empty();
    const bool decoder_part = starts_with(name, kDecoderPrefix) && config.language_model_path.empty();
    if (!tower_part && !decoder_part && !starts_with(name, kConnectorPrefix)) stray.push_back(name);
  }
  COENC_CHECK(stray.empty(), "{}: checkpoint does not match the model: unexpected tensors: {}{}", where, stray[0],
              stray.size() > 1 ? format(" and {} more", stray.size() - 1) : std::string());
  return model;
}

void save_co_encoder(CoEncoderImpl& model, const fs::path& dir, torch::ScalarType storage, int64_t max_shard_bytes) {
  save_co_encoder(model, dir, model.config().context_tower_path, model.config().language_model_path, storage,
                  max_shard_bytes);
}

void save_co_encoder(CoEncoderImpl& model, const fs::path& dir, const std::string& context_tower_path,
                     const std::string& language_model_path, torch::ScalarType storage, int64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  COENC_CHECK(!ec, "{}: cannot create the checkpoint directory: {}", dir.string(), ec.message());
  CoEncoderConfig c = model.config();
  c.context_tower_path = context_tower_path;
  c.language_model_path = language_model_path;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters()) {
    if (!c.context_tower_path.empty() && starts_with(p.key(), kTowerPrefix)) continue;
    if (!c.language_model_path.empty() && starts_with(p.key(), kDecoderPrefix)) continue;
    tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, storage));
  }
  nlohmann::json config = c.to_json();
  config["torch_dtype"] = storage == torch::kBFloat16 ? "bfloat16" : storage == torch::kFloat16 ? "float16" : "float32";
  write_model_weights(dir, tensors, max_shard_bytes);
  write_file_atomic(dir / "config.json", config.dump(2) + "\n");
}

CoEncoder random_co_encoder(const CoEncoderConfig& config, const DeviceOptions& options, uint64_t seed, double std) {
  DecoderLm tower = random_decoder(config.context, options, seed, std);
  DecoderLm decoder = random_decoder(config.text, options, seed + 1, std);
  CoEncoder model(config, tower, decoder, options);
  model->init_connector(seed + 2, std, true);
  return model;
}

}  // namespace coenc
