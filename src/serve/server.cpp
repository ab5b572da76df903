// coenc serve: the HTTP side (cpp-httplib) of the OpenAI-compatible server. Requests are parsed by api.cpp,
// documents compressed by the pipeline and cached by DocumentCache, prompts laid out by the pipeline
// (conversation_prompt) and answered by generate(). docs/server.md describes the API.
//
// Concurrency: `parallel` slots admit requests (more wait in a bounded queue, beyond it 503). Admitted
// requests' answers decode together (continuous batching, coenc/slot_batch.h): one scheduler thread runs one
// batched decode step over every answer in progress, and new requests join between steps after their own
// prefill. The model runs one forward pass at a time (`engine`): compressions of documents run between steps.
#include "coenc/server.h"

#include "coenc/error.h"

#if COENC_WITH_SERVER  // cpp-httplib found at configure time (CMakeLists.txt); else the stubs at the end

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

// Debian's libcpp-httplib is built with these; its classes' layout depends on them.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/generate.h"
#include "coenc/pipeline.h"
#include "coenc/session.h"
#include "coenc/slot_batch.h"
#include "coenc/tokenizer.h"
#include "serve/api.h"
#include "serve/connection.h"
#include "serve/document_cache.h"

namespace coenc {

using nlohmann::json;
using serve::HttpError;

namespace {

using Clock = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

// Prometheus counters and one latency histogram per route.
class Metrics {
 public:
  void request(const std::string& route, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_[{route, status}];
    auto& h = latency_[route];
    h.count++, h.sum += seconds;
    for (size_t i = 0; i < kBuckets.size(); ++i)
      if (seconds <= kBuckets[i]) h.buckets[i]++;
  }
  // One batched decode step of `rows` answers.
  void step(int64_t rows) {
    std::lock_guard<std::mutex> lock(mu_);
    ++steps_, step_rows_ += rows;
  }
  // One piece of a new prompt read between decode steps (chunked prefill).
  void prefill_piece() {
    std::lock_guard<std::mutex> lock(mu_);
    ++prefill_pieces_;
  }
  // An answer stopped because its client went away.
  void cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    ++cancelled_;
  }
  void tokens(int64_t prompt, int64_t completion, int64_t vectors, int64_t document_tokens) {
    std::lock_guard<std::mutex> lock(mu_);
    prompt_ += prompt, completion_ += completion, vectors_ += vectors, document_tokens_ += document_tokens;
  }
  std::string text(int active, int waiting, const serve::DocumentCache::Stats& c) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    auto line = [&](const std::string& s) { out += s + "\n"; };
    line("# HELP coenc_requests_total HTTP requests answered, by route and status.");
    line("# TYPE coenc_requests_total counter");
    for (const auto& [k, n] : requests_)
      line("coenc_requests_total{route=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
           std::to_string(n));
    auto counter = [&](const char* name, const char* help, int64_t v) {
      line(std::string("# HELP ") + name + " " + help);
      line(std::string("# TYPE ") + name + " counter");
      line(std::string(name) + " " + std::to_string(v));
    };
    auto gauge = [&](const char* name, const char* help, int64_t v) {
      line(std::string("# HELP ") + name + " " + help);
      line(std::string("# TYPE ") + name + " gauge");
      line(std::string(name) + " " + std::to_string(v));
    };
    counter("coenc_prompt_tokens_total", "Decoder positions of the prompts processed.", prompt_);
    counter("coenc_completion_tokens_total", "Tokens generated.", completion_);
    counter("coenc_compressed_vectors_total", "Prompt positions that were compressed vectors.", vectors_);
    counter("coenc_document_tokens_total", "Document tokens those vectors stood for.", document_tokens_);
    counter("coenc_decode_steps_total",
            "Batched decode steps (one forward pass for every answer in progress).", steps_);
    counter("coenc_decode_step_rows_total", "Answers advanced by those steps (rows / steps: the mean batch).",
            step_rows_);
    counter("coenc_prefill_pieces_total",
            "Pieces prompts were read in, between decode steps (--prefill-chunk positions at most each).",
            prefill_pieces_);
    counter("coenc_requests_cancelled_total", "Answers stopped because their client went away.", cancelled_);
    gauge("coenc_requests_active", "Requests holding a slot.", active);
    gauge("coenc_requests_queued", "Requests waiting for a slot.", waiting);
    counter("coenc_document_cache_hits_total", "Documents found compressed in the cache.", c.hits);
    counter("coenc_document_cache_misses_total", "Documents not in the cache (compressed, or an unknown id).", c.misses);
    counter("coenc_document_cache_evictions_total", "Documents evicted to stay within the cache's bytes.", c.evictions);
    gauge("coenc_document_cache_entries", "Documents in the cache.", c.entries);
    gauge("coenc_document_cache_bytes", "Bytes of compressed vectors in the cache.", c.bytes);
    gauge("coenc_document_cache_max_bytes", "The cache's bound (--cache-mb).", c.max_bytes);
    line("# HELP coenc_request_duration_seconds Time from request to the last byte of the response, by route.");
    line("# TYPE coenc_request_duration_seconds histogram");
    for (const auto& [route, h] : latency_) {
      for (size_t i = 0; i < kBuckets.size(); ++i) {
        char le[32];
        std::snprintf(le, sizeof le, "%g", kBuckets[i]);
        line("coenc_request_duration_seconds_bucket{route=\"" + route + "\",le=\"" + le + "\"} " +
             std::to_string(h.buckets[i]));
      }
      line("coenc_request_duration_seconds_bucket{route=\"" + route + "\",le=\"+Inf\"} " + std::to_string(h.count));
      char sum[64];
      std::snprintf(sum, sizeof sum, "%.6f", h.sum);
      line("coenc_request_duration_seconds_sum{route=\"" + route + "\"} " + sum);
      line("coenc_request_duration_seconds_count{route=\"" + route + "\"} " + std::to_string(h.count));
    }
    return out;
  }

 private:
  static constexpr std::array<double, 11> kBuckets = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120};
  struct Histogram {
    std::array<int64_t, kBuckets.size()> buckets{};
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  int64_t prompt_ = 0, completion_ = 0, vectors_ = 0, document_tokens_ = 0, steps_ = 0, step_rows_ = 0,
          prefill_pieces_ = 0, cancelled_ = 0;
};

// A prompt ready to run: its segments, what ends it, and how it is counted.
struct Prepared {
  std::vector<Segment> segments;
  TokenIds stop_tokens;
  int64_t n_positions = 0;
  serve::Usage usage;
};

}  // namespace

struct Server::State {
  explicit State(ServerOptions o) : opt(std::move(o)), cache(opt.cache_bytes) {}
  ~State() { stop_scheduler(); }

  ServerOptions opt;
  httplib::Server http;
  std::thread thread;
  int port = 0;
  std::atomic<bool> ready{false};
  std::string model_id;
  int64_t created = 0;

  // The model: a Co-Encoder (co_encoder set, its decoder in `decoder`) or a plain decoder.
  CoEncoder co_encoder{nullptr};
  DecoderLm decoder{nullptr};
  std::unique_ptr<Tokenizer> text_tok, context_tok;

  std::mutex engine;  // one forward pass at a time
  std::mutex slots_mu;
  std::condition_variable slots_cv;
  int active = 0, waiting = 0;
  serve::DocumentCache cache;
  Metrics metrics;
  std::atomic<uint64_t> next_id{1};

  // ---- slots ----

  // Holds a slot from admission to the response's last byte (a stream's provider keeps it).
  struct Slot {
    explicit Slot(State* state) : s(state) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    State* s;
    ~Slot() {
      {
        std::lock_guard<std::mutex> lock(s->slots_mu);
        --s->active;
      }
      s->slots_cv.notify_one();
    }
  };
  std::shared_ptr<Slot> admit() {
    std::unique_lock<std::mutex> lock(slots_mu);
    if (active >= opt.parallel) {
      if (waiting >= opt.max_queue)
        throw HttpError(503, "server_error", "queue_full",
                        "the server is busy: " + std::to_string(active) + " requests are being served and " +
                            std::to_string(waiting) + " are queued (--parallel, --max-queue); retry later");
      ++waiting;
      slots_cv.wait(lock, [&] { return active < opt.parallel; });
      --waiting;
    }
    ++active;
    lock.unlock();
    return std::make_shared<Slot>(this);
  }

  // ---- model ----

  void load() {
    namespace fs = std::filesystem;
    const DeviceOptions dev = parse_device_options(opt.device, opt.dtype);
    model_id = fs::path(opt.model).filename().string();
    if (model_id.empty()) model_id = fs::path(opt.model).parent_path().filename().string();
    if (is_co_encoder_checkpoint(opt.model)) {
      CoEncoderConfig config = CoEncoderConfig::load(opt.model);
      CoEncoderTokenizers tok = load_co_encoder_tokenizers(opt.model, config);
      co_encoder = load_co_encoder(opt.model, dev);
      decoder = co_encoder->language_model;
      text_tok = std::move(tok.text);
      context_tok = std::move(tok.context);
    } else {
      const ModelConfig cfg = ModelConfig::load(opt.model);
      text_tok = Tokenizer::load(opt.model);
      COENC_CHECK(text_tok->vocab_size() <= cfg.vocab_size,
                  "{}: the tokenizer has {} tokens but the model's vocab_size is {}", opt.model,
                  text_tok->vocab_size(), cfg.vocab_size);
      decoder = load_decoder(opt.model, dev);
    }
    if (!opt.cache_dir.empty()) {
      COENC_CHECK(co_encoder, "--cache-dir keeps compressed documents: {} is a plain decoder", opt.model);
      std::error_code ec;
      std::filesystem::create_directories(opt.cache_dir, ec);
      COENC_CHECK(std::filesystem::is_directory(opt.cache_dir), "--cache-dir {}: cannot create the folder ({})",
                  opt.cache_dir, ec.message());
    }
    start_scheduler();
    created =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    ready = true;
  }

  int64_t window() const { return decoder->config().max_position_embeddings; }

  // The cache's document `id`: in memory, or (with --cache-dir) read back from its .coctx file, which must have
  // been made by this model (a file that is damaged or from another model is an error naming it).
  std::shared_ptr<const CompressedDocument> cached(const std::string& id) {
    if (auto doc = cache.find(id)) return doc;
    if (opt.cache_dir.empty() || id.find_first_not_of("doc-0123456789abcdef") != std::string::npos) return nullptr;
    const std::filesystem::path path = std::filesystem::path(opt.cache_dir) / (id + ".coctx");
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return nullptr;
    auto doc = std::make_shared<CompressedDocument>(read_coctx(path, co_encoder->config(), co_encoder->fingerprint()));
    cache.insert(id, doc);
    return doc;
  }

  void keep(const std::string& id, const std::shared_ptr<const CompressedDocument>& doc) {
    cache.insert(id, doc);
    if (!opt.cache_dir.empty()) write_coctx(std::filesystem::path(opt.cache_dir) / (id + ".coctx"), *doc);
  }

  // A document of a request, compressed (or found in the cache).
  // `compressed` (optional) says whether the tower ran for it.
  std::shared_ptr<const CompressedDocument> document(const serve::DocumentRef& ref, size_t index,
                                                     bool* compressed = nullptr) {
    if (compressed) *compressed = false;
    if (!co_encoder)
      throw HttpError(400, "invalid_request_error", "documents_unsupported",
                      opt.model + " is a plain decoder: documents need a Co-Encoder checkpoint");
    if (!ref.id.empty()) {
      auto doc = cached(ref.id);
      if (!doc)
        throw HttpError(404, "invalid_request_error", "document_not_found",
                        "document \"" + ref.id + "\" is not in the cache (never compressed here, or evicted: send its "
                        "text again, or POST it to /v1/compress)");
      return doc;
    }
    const std::string id = serve::DocumentCache::document_id(co_encoder->fingerprint(), ref.text);
    if (auto doc = cached(id)) return doc;
    const std::string name = "document " + std::to_string(index + 1);
    PreparedDocument p;
    p.name = name;
    p.ids = encode_document(name, ref.text, *context_tok);
    p.n_tokens = static_cast<int64_t>(p.ids.size());
    p.n_vectors = min_vectors(co_encoder->config(), p.n_tokens);
    check_documents_fit({p}, co_encoder->config(), 1);  // before the tower runs on a document that cannot fit
    std::shared_ptr<CompressedDocument> doc;
    {
      std::lock_guard<std::mutex> lock(engine);
      doc = std::make_shared<CompressedDocument>(compress_document(*co_encoder, p.ids, name));
    }
    keep(id, doc);
    if (compressed) *compressed = true;
    return doc;
  }

  Prepared prepare(const serve::CompletionRequest& r) {
    Prepared p;
    append_unique(p.stop_tokens, decoder->config().eos_token_ids);
    if (!r.chat) {
      if (r.has_prompt_embeds) {  // sizes were checked against the base64 text; now against the decoder
        const serve::PromptEmbeds& e = r.prompt_embeds;
        if (e.cols != decoder->config().hidden_size)
          serve::bad_request("prompt_embeds.shape: rows of width " + std::to_string(e.cols) + ", but the decoder's "
                             "d_model is " + std::to_string(decoder->config().hidden_size), "invalid_field");
        if (e.rows >= window())
          fail(ErrorCode::ExceedsContext, "prompt_embeds has {} rows, but the decoder holds {} positions", e.rows,
               window());
        static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "prompt_embeds are read as little-endian");
        torch::Tensor rows = torch::from_blob(const_cast<char*>(e.bytes.data()), {e.rows, e.cols},
                                              e.bf16 ? torch::kBFloat16 : torch::kFloat32)
                                 .clone();
        p.segments.push_back(Segment::embeddings(rows));
        p.usage.compressed_vectors += e.rows;
      }
      EncodeOptions eo;
      eo.add_special = !r.has_prompt_embeds;  // BOS starts a text prompt, not text after given rows
      TokenIds ids = text_tok->encode(r.prompt, eo);
      if (!ids.empty()) p.segments.push_back(Segment::tokens(std::move(ids)));
      if (p.segments.empty()) serve::bad_request("\"prompt\" is empty", "invalid_field");
    } else if (co_encoder) {
      std::vector<std::vector<torch::Tensor>> documents;
      for (size_t d = 0; d < r.documents.size(); ++d) {
        auto doc = document(r.documents[d], d);
        documents.push_back(doc->chunks);
        p.usage.compressed_vectors += doc->n_vectors();
        p.usage.document_tokens += doc->n_tokens();
      }
      std::lock_guard<std::mutex> lock(engine);
      AskOptions ao;
      ao.chat_template_kwargs = r.chat_template_kwargs;
      AskPrompt prompt = conversation_prompt(*co_encoder, *text_tok, documents, r.messages, ao);
      p.segments = std::move(prompt.segments);
      append_unique(p.stop_tokens, prompt.stop_tokens);
    } else {
      if (!r.documents.empty()) document(r.documents[0], 0);  // the plain-decoder error
      std::vector<ChatMessage> messages;
      for (const auto& m : r.messages) {
        std::string content;
        for (const auto& part : m.parts) content += part.text;
        messages.push_back({m.role, content});
      }
      if (text_tok->chat_template().empty())
        serve::bad_request(opt.model + " has no chat template: use /v1/completions with a text prompt",
                           "no_chat_template");
      const ChatTemplate chat = resolve_chat_template(*text_tok);
      ChatRenderOptions ro;
      ro.template_kwargs = r.chat_template_kwargs;
      p.segments.push_back(Segment::tokens(encode_chat(*text_tok, messages, chat, ro)));
      append_unique(p.stop_tokens, chat_stop_ids(*text_tok, chat));
    }
    for (const auto& s : p.segments) p.n_positions += s.length();
    if (p.n_positions >= window())
      fail(ErrorCode::ExceedsContext, "the prompt needs {} decoder positions ({} of them compressed vectors), but the "
           "decoder holds {}", p.n_positions, p.usage.compressed_vectors, window());
    p.usage.prompt_tokens = p.n_positions;
    return p;
  }

  // ---- continuous batching ----
  // The scheduler thread owns `batch`: every step, requests that were handed to it join free slots (each
  // after its own prefill), then one forward pass decodes the next token of every answer in progress. A
  // request's thread waits for its answer's text deltas and sends them; a client that goes away cancels its
  // answer at the next token, which frees its slot.
  struct Job {
    std::vector<Segment> segments;
    GenerationOptions options;
    Clock::time_point deadline;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> deltas;
    bool done = false;
    std::atomic<bool> cancelled{false};
    GenerationResult result;

    // False once the client has gone or the request is out of time: its answer stops.
    bool wanted() const { return !cancelled && Clock::now() < deadline; }
    std::exception_ptr error;

    void push(const std::string& delta) {
      {
        std::lock_guard<std::mutex> lock(mu);
        deltas.push_back(delta);
      }
      cv.notify_one();
    }
    void finish(GenerationResult r, std::exception_ptr e = nullptr) {
      {
        std::lock_guard<std::mutex> lock(mu);
        result = std::move(r), error = e, done = true;
      }
      cv.notify_one();
    }
  };
  std::unique_ptr<SlotBatch> batch;
  std::mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::deque<std::shared_ptr<Job>> jobs;
  bool stopping = false;
  std::thread scheduler;

  void start_scheduler() {
    batch = std::make_unique<SlotBatch>(decoder, opt.parallel, window());
    scheduler = std::thread([this] { schedule(); });
  }

  void stop_scheduler() {
    if (!scheduler.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(jobs_mu);
      stopping = true;
    }
    jobs_cv.notify_all();
    scheduler.join();
  }

  void schedule() {
    struct Answer {
      std::shared_ptr<Job> job;
      std::unique_ptr<Generation> generation;
      int64_t slot;
      TokenId token;  // the next token to feed
    };
    std::vector<Answer> answers;  // decoding: one batched step a turn
    std::deque<Answer> joining;   // slots reserved, prompts read a piece a turn (oldest first)
    // Feeds `logits` to an answer: true while it goes on; else its slot is freed and its request told.
    auto advance = [&](Answer& a, const torch::Tensor& logits) {
      auto token = a.generation->next(logits, batch->history(a.slot), batch->n_past(a.slot), batch->n_ctx());
      if (token) {
        a.token = *token;
        return true;
      }
      batch->leave(a.slot);
      a.job->finish(std::move(a.generation->result()));
      return false;
    };
    auto fail_answer = [&](Answer& a) {
      if (a.slot >= 0 && batch->busy(a.slot)) batch->leave(a.slot);
      a.job->finish({}, std::current_exception());
    };
    for (;;) {
      std::vector<std::shared_ptr<Job>> admitted;
      {
        std::unique_lock<std::mutex> lock(jobs_mu);
        jobs_cv.wait(lock, [&] { return stopping || !jobs.empty() || !answers.empty() || !joining.empty(); });
        if (stopping && jobs.empty() && answers.empty() && joining.empty()) return;
        while (!jobs.empty() &&
               static_cast<int64_t>(answers.size() + joining.size() + admitted.size()) < batch->n_slots()) {
          admitted.push_back(std::move(jobs.front()));
          jobs.pop_front();
        }
      }
      for (auto& job : admitted) {
        Answer a{job, nullptr, -1, 0};
        a.generation = std::make_unique<Generation>(job->options, [job](TokenId, const std::string& delta) {
          if (!delta.empty()) job->push(delta);
          return job->wanted();
        });
        try {
          a.slot = batch->reserve(job->segments);
          joining.push_back(std::move(a));
        } catch (...) {
          fail_answer(a);
        }
      }
      // Chunked prefill: while answers are decoding, at most `prefill_chunk` prompt positions are read between
      // two of their steps; with none decoding, whole prompts.
      int64_t budget = answers.empty() || opt.prefill_chunk <= 0 ? -1 : opt.prefill_chunk;
      while (!joining.empty() && budget != 0) {
        Answer& a = joining.front();
        if (!a.job->wanted()) {  // gone (or out of time) before its first token
          batch->leave(a.slot);
          GenerationResult r;
          r.stop_reason = "cancelled";
          a.job->finish(std::move(r));
          joining.pop_front();
          continue;
        }
        const int64_t n = budget < 0 ? batch->pending(a.slot) : std::min(budget, batch->pending(a.slot));
        torch::Tensor logits;
        bool done = false;
        try {
          std::lock_guard<std::mutex> lock(engine);
          done = batch->prefill(a.slot, n, &logits);
        } catch (...) {  // a bad id or embedding row in this prompt: it alone fails
          fail_answer(a);
          joining.pop_front();
          continue;
        }
        if (budget > 0) budget -= n;
        metrics.prefill_piece();
        if (!done) continue;
        Answer joined = std::move(a);
        joining.pop_front();
        try {
          if (advance(joined, logits)) answers.push_back(std::move(joined));
        } catch (...) {  // a sampler or detokenizer error on its first token
          fail_answer(joined);
        }
      }
      if (answers.empty()) continue;
      std::vector<int64_t> slots;
      TokenIds tokens;
      for (const Answer& a : answers) slots.push_back(a.slot), tokens.push_back(a.token);
      torch::Tensor logits;
      try {
        std::lock_guard<std::mutex> lock(engine);
        logits = batch->step(slots, tokens);
        metrics.step(static_cast<int64_t>(slots.size()));
      } catch (...) {  // every answer in the step shares its failure
        for (Answer& a : answers) {
          batch->leave(a.slot);
          a.job->finish({}, std::current_exception());
        }
        answers.clear();
        continue;
      }
      std::vector<Answer> going_on;
      for (size_t i = 0; i < answers.size(); ++i) {
        Answer& a = answers[i];
        try {
          if (advance(a, logits[static_cast<int64_t>(i)])) going_on.push_back(std::move(a));
        } catch (...) {  // this answer alone fails (a sampler or detokenizer error); its slot is freed
          fail_answer(a);
        }
      }
      answers = std::move(going_on);
    }
  }

  // Generates for `p` in a slot of the batch. `on_delta` gets each piece of text on this (the request's)
  // thread; returning false cancels the answer (the client has gone). So does the client closing `client`'s
  // connection, which is looked for twice a second while the request waits (in the queue, in prefill, between
  // deltas): a non-streaming answer frees its slot without waiting to be written.
  GenerationResult run(const Prepared& p, const serve::CompletionRequest& r,
                       const std::function<bool(const std::string&)>& on_delta, const serve::Connection& client) {
    auto job = std::make_shared<Job>();
    job->segments = p.segments;
    job->options.max_new_tokens = r.max_tokens >= 0 ? r.max_tokens : opt.default_max_tokens;
    job->options.sampling = r.sampling;
    job->options.stop_tokens = p.stop_tokens;
    job->options.stop_strings = r.stop;
    job->options.detokenize = [this](const TokenIds& ids) {
      return text_tok->decode_bytes(ids, /*skip_special=*/true);
    };
    job->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(std::min(opt.request_timeout_s, 1e9)));
    {
      std::lock_guard<std::mutex> lock(jobs_mu);
      jobs.push_back(job);
    }
    jobs_cv.notify_one();
    std::unique_lock<std::mutex> lock(job->mu);
    const auto every = std::chrono::milliseconds(500);
    auto next_look = Clock::now() + every;
    for (;;) {
      job->cv.wait_until(lock, next_look, [&] { return job->done || !job->deltas.empty(); });
      if (Clock::now() >= next_look) {
        next_look = Clock::now() + every;
        if (!job->cancelled && !job->done) {
          lock.unlock();  // the scheduler pushes deltas meanwhile
          const bool gone = serve::client_has_closed(client);
          lock.lock();
          if (gone) {
            job->cancelled = true;
            metrics.cancelled();
          }
        }
      }
      while (!job->deltas.empty()) {
        std::string delta = std::move(job->deltas.front());
        job->deltas.pop_front();
        lock.unlock();
        if (on_delta && !job->cancelled && !on_delta(delta)) {
          job->cancelled = true;
          metrics.cancelled();
        }
        lock.lock();
      }
      if (job->done) break;
    }
    if (job->error) std::rethrow_exception(job->error);
    GenerationResult g = std::move(job->result);
    for (const auto& s : p.segments) g.n_prompt += s.length();
    return g;
  }

  std::string new_id(const char* prefix) { return prefix + std::to_string(next_id++); }
};

Server::Server(ServerOptions options) : state_(std::make_unique<State>(std::move(options))) {}

Server::~Server() { stop(); }

int Server::port() const { return state_->port; }

void Server::load_model() { state_->load(); }

void Server::start() {
  State& s = *state_;
  COENC_CHECK(s.opt.parallel >= 1, "--parallel must be at least 1, got {}", s.opt.parallel);
  COENC_CHECK(s.opt.max_queue >= 0, "--max-queue must be non-negative, got {}", s.opt.max_queue);
  // SIGINT / SIGTERM go to wait_for_signal (sigwait): blocked here, before any thread starts, so every thread
  // inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up mid-stream is a failed write, not the end of the server

  httplib::Server& http = s.http;
  const size_t threads = static_cast<size_t>(s.opt.parallel + s.opt.max_queue + 4);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(static_cast<size_t>(s.opt.max_body_bytes));

  auto send_error = [](httplib::Response& res, const HttpError& e) {
    res.status = e.status;
    res.set_content(dump(serve::error_body(e)), "application/json");
  };
  // Every handler: the model must be loaded, errors become envelopes, each answer is counted.
  auto route = [&s, send_error](const std::string& name, bool needs_model,
                                std::function<void(const httplib::Request&, httplib::Response&, Clock::time_point)> fn) {
    return [&s, name, needs_model, fn, send_error](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = Clock::now();
      try {
        if (needs_model && !s.ready)
          throw HttpError(503, "unavailable_error", "loading", "the model is still loading");
        fn(req, res, t0);
      } catch (const HttpError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, serve::http_error(e));
      } catch (const std::bad_alloc&) {
        send_error(res, HttpError(503, "server_error", "out_of_memory", "out of memory while serving the request"));
      } catch (const std::exception& e) {
        send_error(res, HttpError(500, "server_error", "internal_error", e.what()));
      }
      if (!res.is_chunked_content_provider_)
        s.metrics.request(name, res.status < 0 ? 200 : res.status,
                          std::chrono::duration<double>(Clock::now() - t0).count());
    };
  };

  http.set_pre_routing_handler([&s, send_error](const httplib::Request& req, httplib::Response& res) {
    if (s.opt.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    if (auth.compare(0, bearer.size(), bearer) == 0 && constant_time_equal(auth.substr(bearer.size()), s.opt.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, HttpError(401, "invalid_request_error", "invalid_api_key",
                              "missing or wrong API key: send \"Authorization: Bearer KEY\""));
    s.metrics.request("unauthorized", 401, 0);
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([send_error](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(res, HttpError(404, "invalid_request_error", "not_found", "no route " + req.method + " " + req.path));
    else if (res.status == 413)
      send_error(res, HttpError(413, "invalid_request_error", "request_too_large",
                                "the request body is larger than the server accepts (--max-body-mb)"));
    else
      send_error(res, HttpError(res.status, "invalid_request_error", "http_error", "HTTP error " + std::to_string(res.status)));
  });
  if (s.opt.log_requests)
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "coenc serve: %s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
    });

  http.Get("/health", route("/health", false, [&s](const httplib::Request&, httplib::Response& res, Clock::time_point) {
             if (!s.ready) throw HttpError(503, "unavailable_error", "loading", "the model is still loading");
             res.set_content(R"({"status":"ok"})", "application/json");
           }));
  http.Get("/v1/models", route("/v1/models", true, [&s](const httplib::Request&, httplib::Response& res, Clock::time_point) {
             json m = {{"id", s.model_id},
                       {"object", "model"},
                       {"created", s.created},
                       {"owned_by", "coenc"},
                       {"meta",
                        {{"kind", s.co_encoder ? "co_encoder" : "decoder"},
                         {"n_ctx", s.window()},
                         {"compression_ratio", s.co_encoder ? s.co_encoder->config().ratio : 0}}}};
             res.set_content(dump({{"object", "list"}, {"data", json::array({m})}}), "application/json");
           }));
  http.Get("/metrics", route("/metrics", false, [&s](const httplib::Request&, httplib::Response& res, Clock::time_point) {
             int active, waiting;
             {
               std::lock_guard<std::mutex> lock(s.slots_mu);
               active = s.active, waiting = s.waiting;
             }
             res.set_content(s.metrics.text(active, waiting, s.cache.stats()), "text/plain; version=0.0.4");
           }));
  http.Post("/tokenize", route("/tokenize", true, [&s](const httplib::Request& req, httplib::Response& res, Clock::time_point) {
              const json body = serve::parse_body(req.body);
              if (!body.contains("content") || !body["content"].is_string())
                serve::bad_request("\"content\" must be a string", "invalid_field");
              EncodeOptions eo;
              eo.add_special = body.value("add_special", false);
              eo.parse_special = body.value("parse_special", true);
              res.set_content(dump({{"tokens", s.text_tok->encode(body["content"].get<std::string>(), eo)}}),
                              "application/json");
            }));
  http.Post("/detokenize", route("/detokenize", true, [&s](const httplib::Request& req, httplib::Response& res, Clock::time_point) {
              const json body = serve::parse_body(req.body);
              if (!body.contains("tokens") || !body["tokens"].is_array())
                serve::bad_request("\"tokens\" must be an array of token ids", "invalid_field");
              TokenIds ids;
              const json& t = body["tokens"];
              for (size_t i = 0; i < t.size(); ++i) {
                if (!t[i].is_number_integer() || t[i].get<int64_t>() < 0 || t[i].get<int64_t>() >= s.text_tok->vocab_size())
                  serve::bad_request("tokens[" + std::to_string(i) + "] must be a token id in [0, " +
                                         std::to_string(s.text_tok->vocab_size()) + "), got " + t[i].dump(),
                                     "invalid_field");
                ids.push_back(static_cast<TokenId>(t[i].get<int64_t>()));
              }
              res.set_content(dump({{"content", s.text_tok->decode(ids)}}), "application/json");
            }));
  http.Post("/v1/compress", route("/v1/compress", true, [&s](const httplib::Request& req, httplib::Response& res, Clock::time_point) {
              const json body = serve::parse_body(req.body);
              if (!body.contains("text") || !body["text"].is_string() || body["text"].get<std::string>().empty())
                serve::bad_request("\"text\" must be a non-empty string: the document to compress", "invalid_field");
              auto slot = s.admit();
              serve::DocumentRef ref;
              ref.text = body["text"].get<std::string>();
              bool compressed = false;
              auto doc = s.document(ref, 0, &compressed);
              const bool cached = !compressed;
              res.set_content(dump({{"id", serve::DocumentCache::document_id(s.co_encoder->fingerprint(), ref.text)},
                                    {"object", "document"},
                                    {"n_tokens", doc->n_tokens()},
                                    {"n_vectors", doc->n_vectors()},
                                    {"n_chunks", doc->chunks.size()},
                                    {"ratio", doc->ratio},
                                    {"cached", cached}}),
                              "application/json");
            }));

  auto completion = [&s](bool chat) {
    return [&s, chat](const httplib::Request& req, httplib::Response& res, Clock::time_point t0) {
      const serve::CompletionRequest r = serve::parse_completion_request(serve::parse_body(req.body), chat);
      auto slot = s.admit();
      auto prepared = std::make_shared<Prepared>(s.prepare(r));
      const std::string id = s.new_id(chat ? "chatcmpl-" : "cmpl-");
      const int64_t created =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      const std::string route = chat ? "/v1/chat/completions" : "/v1/completions";
      const serve::Connection client{req.local_addr, req.local_port, req.remote_addr, req.remote_port};
      if (!r.stream) {
        GenerationResult g = s.run(*prepared, r, nullptr, client);
        serve::Usage u = prepared->usage;
        u.completion_tokens = static_cast<int64_t>(g.ids.size());
        s.metrics.tokens(u.prompt_tokens, u.completion_tokens, u.compressed_vectors, u.document_tokens);
        res.set_content(dump(serve::completion_response(chat, id, created, s.model_id, g.text,
                                                        serve::finish_reason(g.stop_reason), u)),
                        "application/json");
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [&s, r, prepared, id, created, chat, slot, client](size_t, httplib::DataSink& sink) {
            auto send = [&](const json& j) {
              const std::string line = "data: " + dump(j) + "\n\n";
              return sink.is_writable() && sink.write(line.data(), line.size());
            };
            bool connected = send(serve::completion_chunk(chat, id, created, s.model_id, "", "", true));
            GenerationResult g;
            try {
              if (connected)
                g = s.run(*prepared, r, [&](const std::string& delta) {
                  connected = send(serve::completion_chunk(chat, id, created, s.model_id, delta, "", false));
                  return connected;
                }, client);
            } catch (const std::exception& e) {  // the status is sent already: the error is the stream's last event
              const Error* ce = dynamic_cast<const Error*>(&e);
              send(serve::error_body(ce ? serve::http_error(*ce)
                                        : HttpError(500, "server_error", "internal_error", e.what())));
              sink.done();
              return true;
            }
            serve::Usage u = prepared->usage;
            u.completion_tokens = static_cast<int64_t>(g.ids.size());
            s.metrics.tokens(u.prompt_tokens, u.completion_tokens, u.compressed_vectors, u.document_tokens);
            if (connected) {
              send(serve::completion_chunk(chat, id, created, s.model_id, "", serve::finish_reason(g.stop_reason), false));
              if (r.include_usage) {
                json last = serve::completion_chunk(chat, id, created, s.model_id, "", "", false);
                last["choices"] = json::array();
                last["usage"] = serve::usage_json(u);
                send(last);
              }
              const std::string done = "data: [DONE]\n\n";
              if (sink.is_writable()) sink.write(done.data(), done.size());
            }
            sink.done();
            return true;
          },
          [&s, route, t0](bool) {
            s.metrics.request(route, 200, std::chrono::duration<double>(Clock::now() - t0).count());
          });
    };
  };
  http.Post("/v1/chat/completions", route("/v1/chat/completions", true, completion(true)));
  http.Post("/v1/completions", route("/v1/completions", true, completion(false)));
  // llama.cpp's names for the same routes.
  http.Post("/chat/completions", route("/v1/chat/completions", true, completion(true)));
  http.Post("/completions", route("/v1/completions", true, completion(false)));

  if (s.opt.port == 0) {
    s.port = http.bind_to_any_port(s.opt.host);
    COENC_CHECK(s.port > 0, "cannot listen on {} (any port)", s.opt.host);
  } else {
    COENC_CHECK(http.bind_to_port(s.opt.host, s.opt.port), "cannot listen on {}:{} (in use, or not an address of this "
                "machine?)", s.opt.host, s.opt.port);
    s.port = s.opt.port;
  }
  s.thread = std::thread([&http] { http.listen_after_bind(); });
}

void Server::stop() {
  if (!state_) return;
  if (state_->thread.joinable()) {
    state_->http.stop();
    state_->thread.join();  // every request in flight has had its answer
  }
  state_->stop_scheduler();
}

void Server::wait_for_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "coenc serve: %s: finishing the requests in flight, then exiting\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
  stop();
}

}  // namespace coenc

#else  // no cpp-httplib in this build

namespace coenc {

struct Server::State {};

Server::Server(ServerOptions) {}
Server::~Server() = default;
int Server::port() const { return 0; }
void Server::start() {
  fail(ErrorCode::Unsupported, "this build of coenc has no HTTP server: cpp-httplib (Debian: libcpp-httplib-dev) was "
       "not found when it was configured");
}
void Server::load_model() { start(); }
void Server::stop() {}
void Server::wait_for_signal() {}

}  // namespace coenc

#endif
