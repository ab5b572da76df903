// coenc bench: prefill and decode throughput of a decoder, from a model directory or a named shape with random
// weights.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/session.h"
#include "coenc/shapes.h"
#include "coenc/slot_batch.h"
#include "coenc/timing.h"
#include "coenc/train.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct BenchArgs {
  std::string model;                     // model directory, or
  std::string shape;                     // a named shape with random weights
  std::vector<int64_t> prompt = {512};   // prefill lengths to time
  int n_gen = 128;                       // decode steps to time
  int64_t decode_ctx = 128;              // tokens in the session before decode timing starts
  int reps = 3;                          // repetitions; the median is reported
  double bandwidth_gbs = 0;              // the card's bandwidth, GB/s (default: its data sheet's, by name)
  bool no_graphs = false;                // decode without CUDA graphs
  int64_t tower_chunks = 0;              // > 0: time a batch of this many chunks through all layers
  int64_t ttft_doc = 0;                  // > 0: time to first token for a document of this many tokens
  std::string tower_shape = "qwen2-0.5b";  // the context tower of --ttft (random weights)
  std::vector<int64_t> ratios = {4, 8};    // compression ratios of --ttft (mean pooling)
  int64_t question = 32;                   // question tokens after the document
  int64_t chunk = 512;                     // tokens per chunk
  int64_t train_batch = 0;                 // > 0: time Co-Encoder training steps of this many chunks each
  int64_t target = 128;                    // continuation tokens per training example
  std::string train_tower = "full";        // how the tower trains in --train-examples: full | lora | frozen
  bool checkpointing = false;              // activation checkpointing in --train-examples
  std::vector<int64_t> streams;  // aggregate decode of this many sequences in one batch (continuous batching)
  bool json = false;
  DeviceArgs device;
};

// Aggregate decode throughput of N sequences decoding together (SlotBatch: one forward pass a step for all of
// them, as `coenc serve --parallel N` runs its answers), each with --decode-ctx tokens of context.
nlohmann::json batched_decode(const BenchArgs& a, DecoderLm lm, const DeviceOptions& dev) {
  using clock = std::chrono::steady_clock;
  const ModelConfig& cfg = lm->config();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t n : a.streams) {
    std::vector<double> per_step;
    for (int r = 0; r < a.reps; ++r) {
      SlotBatch batch(lm, n, a.decode_ctx + a.n_gen + 8, !a.no_graphs);
      std::vector<int64_t> slots;
      TokenIds tokens(static_cast<size_t>(n), 1);
      for (int64_t i = 0; i < n; ++i)
        slots.push_back(
            batch.join({Segment::tokens(random_token_ids(a.decode_ctx, cfg.vocab_size, 11 + i))}, nullptr));
      for (int i = 0; i < 4; ++i) batch.step(slots, tokens);  // warm-up
      synchronize_device(dev.device);
      auto t0 = clock::now();
      for (int i = 0; i < a.n_gen; ++i) {
        torch::Tensor next =
            batch.step(slots, tokens).argmax(1);  // logits come back to the host, as in serving
        for (int64_t k = 0; k < n; ++k)
          tokens[static_cast<size_t>(k)] = static_cast<TokenId>(next[k].item<int64_t>());
      }
      synchronize_device(dev.device);
      per_step.push_back(std::chrono::duration<double>(clock::now() - t0).count() / a.n_gen);
    }
    const double s = median(per_step);
    out.push_back({{"streams", n}, {"seconds_per_step", s}, {"tokens_per_s", static_cast<double>(n) / s}});
  }
  return out;
}

// Median seconds of `reps` runs of `fn` after one more that warms up kernels and allocator, the device
// synchronised before and after each.
double median_seconds(int reps, const torch::Device& device, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int r = 0; r < reps + 1; ++r) {
    synchronize_device(device);
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    synchronize_device(device);
    if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(times);
}

// Time to first token for a long document + question: the decoder reading every token, against a Co-Encoder
// (tower --tower-shape, mean pooling at each ratio, random weights) compressing the document in chunks of 512 first.
// Everything between receiving the ids and having the first token's logits on the host is timed, tower included;
// and again with the document compressed beforehand ("cached": the question about a document already compressed).
nlohmann::json time_to_first_token(const BenchArgs& a, DecoderLm lm, const DeviceOptions& dev) {
  using clock = std::chrono::steady_clock;
  torch::NoGradGuard no_grad;
  const ModelConfig& cfg = lm->config();
  const TokenIds doc = random_token_ids(a.ttft_doc, std::min<int64_t>(cfg.vocab_size, named_shape(a.tower_shape).vocab_size), 17);
  const TokenIds question = random_token_ids(a.question, cfg.vocab_size, 19);
  const double kv_bytes_per_position =
      2.0 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * static_cast<double>(torch::elementSize(dev.dtype));
  auto measure = [&](const std::function<std::vector<Segment>()>& build_input) {
    std::vector<double> times;
    int64_t positions = 0, peak = 0;
    for (int r = 0; r < a.reps + 1; ++r) {
      synchronize_device(dev.device);
      reset_peak_memory(dev.device);
      auto t0 = clock::now();
      std::vector<Segment> input = build_input();
      int64_t total = 0;
      for (const auto& seg : input) total += seg.length();
      SessionOptions so;
      so.n_ctx = total;
      so.n_batch = total;  // one pass, as transformers prefills
      Session session(lm, so);
      torch::Tensor logits = session.prefill(input);  // on the host: the first token can be sampled now
      if (r > 0) times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
      positions = session.n_past();
      peak = peak_memory_bytes(dev.device);
    }
    return nlohmann::json{{"seconds", median(times)}, {"decoder_positions", positions},
                          {"kv_bytes", kv_bytes_per_position * positions}, {"peak_bytes", peak}};
  };
  nlohmann::json out = {{"document_tokens", a.ttft_doc}, {"question_tokens", a.question}, {"tower", a.tower_shape}};
  TokenIds full = doc;
  full.insert(full.end(), question.begin(), question.end());
  out["full"] = measure([&] { return std::vector<Segment>{Segment::tokens(full)}; });
  DecoderLm tower = random_decoder(named_shape(a.tower_shape), dev, 3);
  out["compressed"] = nlohmann::json::array();
  for (int64_t ratio : a.ratios) {
    CoEncoderConfig cc;
    cc.context = tower->config();
    cc.text = cfg;
    cc.pooling = PoolingMode::Mean;
    cc.ratio = ratio;
    cc.chunk_size = 512;
    cc.min_output_size = 1;
    cc.max_output_size = 512;
    cc.begin_of_context_token_id = 1;
    cc.end_of_context_token_id = 2;
    CoEncoder co(cc, tower, lm, dev);
    co->init_connector(5, 0.02, false);
    nlohmann::json m = measure([&] { return raw_prompt(*co, {co->compress(doc, 64)}, question); });
    m["ratio"] = ratio;
    // Where the compressed path's time goes: the tower and connector alone (the rest is the decoder's prefill).
    m["tower_seconds"] = median_seconds(a.reps, dev.device, [&] { co->compress(doc, 64); });
    m["speedup"] = out["full"]["seconds"].get<double>() / m["seconds"].get<double>();
    // A question about a document compressed earlier (coenc serve's document cache, a .coctx file): the tower
    // is skipped, the decoder prefills [BOC] vectors [EOC] question.
    const auto cached = co->compress(doc, 64);  // its chunks of vectors
    nlohmann::json again = measure([&] { return raw_prompt(*co, {cached}, question); });
    again["speedup"] = out["full"]["seconds"].get<double>() / again["seconds"].get<double>();
    m["cached"] = again;
    out["compressed"].push_back(m);
  }
  return out;
}

int run_bench(const BenchArgs& a);

// What `coenc compress` of a library does with the tower's batches (compress_chunks: ids over, tower, connector,
// vectors back to the host), for 8 batches of --tower-chunks full chunks a run, as a library's groups hold them.
nlohmann::json time_compress_chunks(const BenchArgs& a, CoEncoderImpl& model, const DeviceOptions& dev) {
  const int64_t c = model.config().chunk_size, batches = 8;
  const TokenIds ids = random_token_ids(batches * a.tower_chunks * c, model.config().context.vocab_size, 17);
  std::vector<TokenIds> chunks;
  for (int64_t i = 0; i < batches * a.tower_chunks; ++i)
    chunks.emplace_back(ids.begin() + i * c, ids.begin() + (i + 1) * c);
  const double s =
      median_seconds(a.reps, dev.device, [&] { model.compress_chunks(chunks, a.tower_chunks, nullptr, torch::kCPU); });
  return {{"batches", batches}, {"chunks", a.tower_chunks}, {"chunk", c}, {"seconds", s},
          {"tokens_per_s", static_cast<double>(chunks.size() * c) / s}};
}

// -m names a Co-Encoder checkpoint: its context tower is what `coenc compress` runs, and --tower-chunks alone
// times it (prefill and decode are a decoder's figures; the tower has no output head to decode with).
int run_bench_of_tower(const BenchArgs& a) {
  COENC_CHECK(a.tower_chunks > 0 && a.train_batch == 0 && a.ttft_doc == 0 && a.streams.empty(),
              "{}: a Co-Encoder checkpoint: only its context tower is timed, with --tower-chunks N (--chunk its "
              "chunk_size); --ttft, --streams and --train-examples take a decoder or a --shape",
              a.model);
  BenchArgs tower = a;
  tower.prompt.clear();
  tower.n_gen = 0;
  return run_bench(tower);
}

int run_bench(const BenchArgs& a) {
  using clock = std::chrono::steady_clock;
  COENC_CHECK(a.model.empty() != a.shape.empty(), "give exactly one of --model and --shape");
  if (a.train_batch > 0) {
    COENC_CHECK(a.device.dtype == "auto",
                "--dtype {} has no effect with --train-examples (float32 weights, bf16 autocast on CUDA)",
                a.device.dtype);
    // Weights of its own (float32, trainable parts): runs alone, without the inference model beside it.
    DeviceOptions dev = parse_device_options(a.device.device, "f32");
    const ModelConfig cfg = a.model.empty() ? named_shape(a.shape) : ModelConfig::load(a.model);
    COENC_CHECK(a.train_tower == "full" || a.train_tower == "lora" || a.train_tower == "frozen",
                "--train-tower must be full, lora or frozen, got \"{}\"", a.train_tower);
    TrainStepBenchmark b;
    b.tower = named_shape(a.tower_shape);
    b.decoder = cfg;
    b.ratio = a.ratios.empty() ? 4 : a.ratios[0];
    b.chunk = a.chunk;
    b.target = a.target;
    b.examples = a.train_batch;
    b.train_tower = a.train_tower;
    b.activation_checkpointing = a.checkpointing;
    b.reps = a.reps;
    b.device = dev.device;
    nlohmann::json t = benchmark_train_steps(b);
    t["tower"] = a.tower_shape;
    if (a.json) {
      std::cout << nlohmann::json{{"train_step", t}}.dump(2) << "\n";
      return 0;
    }
    std::printf("Co-Encoder training step (tower %s %s, decoder %s frozen, %s autocast): %lld examples of %lld + "
                "%lld tokens in %.4f s, %.0f tokens/s (%.0f context tokens/s), peak %.1f GiB\n",
                a.tower_shape.c_str(), a.train_tower.c_str(), (a.model.empty() ? a.shape : a.model).c_str(),
                t["autocast"].get<std::string>().c_str(), static_cast<long long>(a.train_batch),
                static_cast<long long>(a.chunk), static_cast<long long>(a.target), t["seconds_per_step"].get<double>(),
                t["tokens_per_s"].get<double>(), t["context_tokens_per_s"].get<double>(),
                t["peak_bytes"].get<double>() / (1 << 30));
    return 0;
  }
  COENC_CHECK(a.reps > 0 && a.n_gen >= 0 && a.decode_ctx > 0, "--reps and --decode-ctx must be positive, --gen >= 0");
  DeviceOptions dev = device_options(a.device);
  // -m names a decoder, or a Co-Encoder checkpoint whose context tower is timed (what `coenc compress` of a
  // library runs: compare its tokens_per_s with --tower-chunks at the checkpoint's chunk_size).
  const bool tower_of_co_encoder = !a.model.empty() && is_co_encoder_checkpoint(a.model);
  bool bidirectional = false;  // a Co-Encoder's tower attends as its checkpoint says (a named shape: causal)
  DecoderLm lm = nullptr;
  CoEncoder co_encoder = nullptr;
  if (tower_of_co_encoder) {
    co_encoder = load_co_encoder(a.model, dev);
    bidirectional = co_encoder->config().tower_attention == TowerAttention::Bidirectional;
    lm = co_encoder->context_tower->tower;
  } else {
    lm = a.model.empty() ? random_decoder(named_shape(a.shape), dev, 1) : load_decoder(a.model, dev);
  }
  const ModelConfig& cfg = lm->config();
  // Parameters that take part in a matrix product for every token: all but the embedding table and the output
  // head (which prefill applies to the last position only).
  const double matmul_params = static_cast<double>(cfg.n_params()) -
                               static_cast<double>(cfg.vocab_size * cfg.hidden_size) * (cfg.tie_word_embeddings ? 1 : 2);
  // FLOPs of a causal forward over `chunks` sequences of `n` tokens: 2 per matmul weight per token, plus QK^T and
  // PV over the lower half of the attention square (all of it when bidirectional).
  auto forward_flops = [&](double chunks, double n, bool whole_square = false) {
    return chunks * (2.0 * matmul_params * n +
                     (whole_square ? 4.0 : 2.0) * cfg.n_layers * cfg.n_heads * cfg.head_dim * n * n);
  };

  const std::string model_name =
      a.model.empty() ? a.shape : a.model + (tower_of_co_encoder ? " (context tower)" : "");
  nlohmann::json report = {{"model", model_name},
                           {"device", dev.device.str()},
                           {"dtype", c10::toString(dev.dtype)},
                           {"params", cfg.n_params()},
                           {"threads", torch::get_num_threads()},
                           {"prefill", nlohmann::json::array()}};
  for (int64_t n : a.prompt) {
    COENC_CHECK(n > 0, "--prompt lengths must be positive");
    TokenIds ids = random_token_ids(n, cfg.vocab_size, 7);
    std::vector<double> times;
    for (int r = 0; r < a.reps + 1; ++r) {  // the first run warms up kernels and allocator
      SessionOptions so;
      so.n_ctx = n;
      so.n_batch = n;
      Session session(lm, so);
      synchronize_device(dev.device);
      reset_peak_memory(dev.device);
      auto t0 = clock::now();
      session.prefill({Segment::tokens(ids)});
      synchronize_device(dev.device);
      if (r > 0) times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    }
    const double s = median(times);
    const double flops = forward_flops(1, static_cast<double>(n)) + 2.0 * cfg.vocab_size * cfg.hidden_size;
    report["prefill"].push_back({{"tokens", n}, {"seconds", s}, {"tokens_per_s", n / s},
                                 {"tflops", flops / s / 1e12}, {"peak_bytes", peak_memory_bytes(dev.device)}});
  }

  if (a.tower_chunks > 0) {
    // A context tower's work: a batch of independent chunks through every layer, no KV cache, no output head.
    COENC_CHECK(a.chunk > 0, "--chunk must be positive");
    torch::NoGradGuard no_grad;
    TokenIds ids = random_token_ids(a.tower_chunks * a.chunk, cfg.vocab_size, 13);
    torch::Tensor batch = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()))
                              .view({a.tower_chunks, a.chunk})
                              .to(dev.device);
    reset_peak_memory(dev.device);
    ForwardArgs args;
    args.causal = !bidirectional;
    const double s = median_seconds(a.reps, dev.device, [&] { lm->forward_hidden(lm->embed(batch), args); });
    const double n = static_cast<double>(a.tower_chunks * a.chunk);
    report["tower"] = {{"chunks", a.tower_chunks}, {"chunk", a.chunk}, {"seconds", s}, {"tokens_per_s", n / s},
                       {"attention", bidirectional ? "bidirectional" : "causal"},
                       {"tflops", forward_flops(a.tower_chunks, a.chunk, bidirectional) / s / 1e12},
                       {"peak_bytes", peak_memory_bytes(dev.device)}};
  }

  if (a.tower_chunks > 0 && co_encoder) report["compress"] = time_compress_chunks(a, *co_encoder, dev);

  if (a.ttft_doc > 0) report["ttft"] = time_to_first_token(a, lm, dev);

  std::vector<double> per_token;
  for (int r = 0; r < (a.n_gen > 0 ? a.reps : 0); ++r) {
    SessionOptions so;
    so.n_ctx = a.decode_ctx + a.n_gen + 8;
    so.cuda_graphs = !a.no_graphs;
    Session session(lm, so);
    session.prefill({Segment::tokens(random_token_ids(a.decode_ctx, cfg.vocab_size, 11))});
    TokenId tok = 1;
    for (int i = 0; i < 4; ++i) session.decode(tok);  // warm-up (graph capture)
    synchronize_device(dev.device);
    auto t0 = clock::now();
    for (int i = 0; i < a.n_gen; ++i) {
      torch::Tensor logits = session.decode(tok);  // logits come back to the host each step, as in generation
      tok = static_cast<TokenId>(logits.argmax().item<int64_t>());
    }
    synchronize_device(dev.device);
    per_token.push_back(std::chrono::duration<double>(clock::now() - t0).count() / a.n_gen);
  }
  const double s_tok = per_token.empty() ? 0 : median(per_token);
  nlohmann::json decode = {{"context", a.decode_ctx}, {"tokens", a.n_gen}, {"seconds_per_token", s_tok},
                           {"tokens_per_s", 1.0 / s_tok}, {"cuda_graphs", dev.device.is_cuda() && !a.no_graphs}};
  if (a.n_gen > 0) {
    // The bound of batch-1 decoding is memory bandwidth over the bytes a step reads: the weights it uses (not
    // the input embedding table) and the KV cache at the step's context (on average halfway through the timed
    // steps).
    const DecodeTraffic traffic = decode_traffic(cfg, static_cast<int64_t>(torch::elementSize(dev.dtype)),
                                                 static_cast<double>(a.decode_ctx) + a.n_gen / 2.0);
    const std::string card = device_name(dev.device);
    const double spec = a.bandwidth_gbs > 0 ? a.bandwidth_gbs : spec_bandwidth_gbs(card);
    const double measured = measure_copy_bandwidth_gbs(
        dev.device, dev.device.is_cuda() ? (int64_t{1} << 30) : (int64_t{256} << 20), 5);
    decode["card"] = card;
    decode["weight_bytes_per_token"] = traffic.weight_bytes;
    decode["kv_bytes_per_token"] = traffic.kv_bytes;
    decode["bytes_per_token"] = traffic.total();
    decode["achieved_gbs"] = traffic.total() / s_tok / 1e9;
    decode["measured_copy_gbs"] = measured;
    decode["fraction_of_measured"] = traffic.total() / s_tok / 1e9 / measured;
    if (spec > 0) {
      decode["spec_gbs"] = spec;
      decode["spec_source"] = a.bandwidth_gbs > 0 ? "--bandwidth" : "card";
      decode["fraction_of_spec"] = traffic.total() / s_tok / 1e9 / spec;
    }
  }
  if (a.n_gen > 0) report["decode"] = decode;
  if (!a.streams.empty()) {
    COENC_CHECK(a.n_gen > 0, "--streams times decode steps: --gen must be positive");
    report["batched_decode"] = batched_decode(a, lm, dev);
    for (auto& b : report["batched_decode"]) b["x_single_session"] = b["tokens_per_s"].get<double>() * s_tok;
  }

  if (a.json) {
    std::cout << report.dump(2) << "\n";
    return 0;
  }
  std::printf("model %s | %s %s | %.3g B params | %d threads\n", report["model"].get<std::string>().c_str(),
              dev.device.str().c_str(), c10::toString(dev.dtype), cfg.n_params() / 1e9, torch::get_num_threads());
  std::printf("%-10s %10s %12s %10s\n", "prefill", "seconds", "tokens/s", "TFLOP/s");
  for (const auto& p : report["prefill"])
    std::printf("%-10lld %10.4f %12.1f %10.2f\n", static_cast<long long>(p["tokens"].get<int64_t>()),
                p["seconds"].get<double>(), p["tokens_per_s"].get<double>(), p["tflops"].get<double>());
  if (report.contains("tower")) {
    const auto& t = report["tower"];
    std::printf("tower: %lld chunks of %lld tokens, %s attention, in %.4f s, %.0f tokens/s, %.1f TFLOP/s\n",
                static_cast<long long>(a.tower_chunks), static_cast<long long>(a.chunk),
                t["attention"].get<std::string>().c_str(), t["seconds"].get<double>(), t["tokens_per_s"].get<double>(),
                t["tflops"].get<double>());
  }
  if (report.contains("compress")) {
    const auto& c = report["compress"];
    std::printf("compress (tower + connector + vectors to the host, as a library is compressed): %lld batches of "
                "%lld chunks of %lld tokens in %.4f s, %.0f tokens/s\n",
                static_cast<long long>(c["batches"].get<int64_t>()), static_cast<long long>(a.tower_chunks),
                static_cast<long long>(c["chunk"].get<int64_t>()), c["seconds"].get<double>(),
                c["tokens_per_s"].get<double>());
  }
  if (report.contains("ttft")) {
    const auto& t = report["ttft"];
    auto line = [](const char* what, const nlohmann::json& m) {
      std::printf("%-16s %8.4f s  %8lld decoder positions  KV %8.1f MiB  peak %8.1f MiB\n", what,
                  m["seconds"].get<double>(), static_cast<long long>(m["decoder_positions"].get<int64_t>()),
                  m["kv_bytes"].get<double>() / (1 << 20), m["peak_bytes"].get<double>() / (1 << 20));
    };
    std::printf("time to first token, %lld-token document + %lld-token question (tower %s):\n",
                static_cast<long long>(a.ttft_doc), static_cast<long long>(a.question), a.tower_shape.c_str());
    line("full context", t["full"]);
    for (const auto& m : t["compressed"]) {
      const std::string r = std::to_string(m["ratio"].get<int64_t>());
      line(("compressed r=" + r).c_str(), m);
      std::printf("%-16s %8.4f s  (tower and connector alone, of the line above)\n", ("  tower r=" + r).c_str(),
                  m["tower_seconds"].get<double>());
      line(("cached r=" + r).c_str(), m["cached"]);
    }
  }
  if (a.n_gen == 0) return 0;
  if (report.contains("batched_decode")) {
    std::printf("decode of N streams together (one batched step for all, as coenc serve --parallel N):\n");
    std::printf("%-8s %12s %12s %18s\n", "streams", "ms/step", "tokens/s", "x one session");
    for (const auto& b : report["batched_decode"])
      std::printf("%-8lld %12.2f %12.1f %18.1f\n", static_cast<long long>(b["streams"].get<int64_t>()),
                  b["seconds_per_step"].get<double>() * 1e3, b["tokens_per_s"].get<double>(),
                  b["x_single_session"].get<double>());
  }
  std::printf(
      "decode at context %lld: %.2f ms/token, %.1f tokens/s, %.1f MB read a token (weights %.1f, KV %.1f): "
      "%.0f GB/s, %.0f%% of the %.0f GB/s measured copy",
      static_cast<long long>(a.decode_ctx), s_tok * 1e3, 1.0 / s_tok,
      decode["bytes_per_token"].get<double>() / 1e6, decode["weight_bytes_per_token"].get<double>() / 1e6,
      decode["kv_bytes_per_token"].get<double>() / 1e6, decode["achieved_gbs"].get<double>(),
      100 * decode["fraction_of_measured"].get<double>(), decode["measured_copy_gbs"].get<double>());
  if (decode.contains("fraction_of_spec"))
    std::printf(", %.0f%% of the %.0f GB/s %s", 100 * decode["fraction_of_spec"].get<double>(),
                decode["spec_gbs"].get<double>(),
                a.bandwidth_gbs > 0 ? "given by --bandwidth"
                                    : ("specified for the " + decode["card"].get<std::string>()).c_str());
  std::printf("\n");
  return 0;
}

}  // namespace

CommandFn setup_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode throughput of a decoder.");
  cmd->footer(
      "Examples:\n"
      "  coenc bench --shape tiny --prompt 128,512\n"
      "  coenc bench --shape llama3-8b --device cuda --dtype bf16 --prompt 4096,32768 --json\n"
      "  coenc bench --shape qwen2-0.5b --device cuda --prompt 512 --gen 0 --tower-chunks 64 --chunk 512\n"
      "  coenc bench -m models/default-coenc --device cuda --tower-chunks 256 --chunk 128 --gen 0 --prompt 128\n"
      "  coenc bench --shape llama3-8b --device cuda --prompt 512 --gen 0 --ttft 32768 --ratios 4,8\n"
      "  coenc bench --shape llama3-8b --device cuda --train-examples 16 --tower-shape qwen2-0.5b --ratios 4\n"
      "  coenc bench --shape llama3-8b --device cuda --prompt 128 --gen 64 --streams 1,8,32\n"
      "Decode is reported against the memory-bandwidth bound: bytes a step reads (the weights it uses, not "
      "the\n"
      "input embedding table, plus the KV cache at its context) per second, as a fraction of a copy's "
      "bandwidth\n"
      "measured on the device in the same run and of the card's data-sheet figure (recognised from its name, "
      "or\n"
      "--bandwidth).\n"
      "Shapes (random weights): " +
      named_shape_list());
  cmd->add_option("--model,-m", a->model,
                  "Hugging Face decoder directory, or a Co-Encoder checkpoint (its context tower is timed)");
  cmd->add_option("--shape", a->shape, "a named shape with random weights instead of a model");
  cmd->add_option("--prompt", a->prompt, "prefill lengths to time, e.g. 512,4096")
      ->delimiter(',')
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--gen", a->n_gen, "decode steps to time")->check(non_negative())->capture_default_str();
  cmd->add_option("--decode-ctx", a->decode_ctx, "tokens in the context before decode timing")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--reps", a->reps, "repetitions (median reported)")->check(positive())->capture_default_str();
  cmd->add_option(
         "--bandwidth", a->bandwidth_gbs,
         "the card's memory bandwidth in GB/s, instead of the data-sheet figure recognised from its name")
      ->check(positive());
  cmd->add_flag("--no-graphs", a->no_graphs, "decode without CUDA graphs");
  cmd->add_option("--tower-chunks", a->tower_chunks,
                  "also time a context tower's work: this many chunks in one batch, all layers, no cache (with -m a "
                  "Co-Encoder checkpoint: its tower, attending as the checkpoint's tower_attention says, then what "
                  "`coenc compress` of a library does with such batches: tower, connector, vectors to the host)")
      ->check(positive());
  cmd->add_option("--chunk", a->chunk, "tokens per chunk (--tower-chunks, --train-examples)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--ttft", a->ttft_doc,
                  "time to first token for a document of this many tokens: full context vs compressed at each "
                  "--ratios (tower included) vs cached (compressed beforehand, as a .coctx or serve's cache)")
      ->check(positive());
  cmd->add_option("--tower-shape", a->tower_shape, "context tower shape (--ttft, --train-examples)")
      ->capture_default_str();
  cmd->add_option("--ratios", a->ratios, "compression ratios (--ttft: each of them; --train-examples: the first)")
      ->delimiter(',')
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--question-tokens", a->question, "tokens of the question after the document (--ttft)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--train-examples", a->train_batch,
                  "time Co-Encoder training steps of this many examples instead (tower --tower-shape, decoder "
                  "--shape frozen, float32 weights, bf16 autocast on CUDA)")
      ->check(positive());
  cmd->add_option("--target-tokens", a->target, "continuation tokens per example (--train-examples)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--train-tower", a->train_tower, "full, lora or frozen (--train-examples)")->capture_default_str();
  cmd->add_flag("--checkpointing", a->checkpointing, "activation checkpointing in the tower (--train-examples)");
  cmd->add_option("--streams", a->streams,
                  "also time N sequences decoding together in one batch (continuous batching), e.g. 1,8,32: "
                  "aggregate tokens/s and its multiple of the one-session rate")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "print the report as JSON");
  add_device_options(*cmd, a->device);
  return [a] {
    return !a->model.empty() && is_co_encoder_checkpoint(a->model) ? run_bench_of_tower(*a) : run_bench(*a);
  };
}

}  // namespace coenc::cli
