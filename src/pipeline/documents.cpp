// Documents of the pipeline: text -> context tokenizer ids -> compressed chunks, and the one check that they fit
// the decoder.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <filesystem>
#include <map>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "core/progress.h"
#include "io/data_file.h"

namespace coenc {

namespace {

std::string document_names(const std::vector<PreparedDocument>& docs) {
  std::string names;
  for (const auto& d : docs) names += (names.empty() ? "" : ", ") + d.name;
  return names;
}

// A NUL or a byte that is not UTF-8 means the file is not a text document.
void check_text_document(const std::string& name, const std::string& text) {
  if (auto at = first_non_text_byte(text))
    fail(ErrorCode::InvalidInput, "{}: not a text document (byte {} is {}; expected UTF-8 text to compress)", name,
         *at, text[*at] == '\0' ? std::string("a NUL") : std::string("not valid UTF-8"));
}

}  // namespace

int64_t min_vectors(const CoEncoderConfig& c, int64_t n_tokens) {
  int64_t n = 0;
  for (int64_t begin = 0; begin < n_tokens; begin += c.chunk_size) {
    const int64_t t = std::min(c.chunk_size, n_tokens - begin);
    n += c.pooling == PoolingMode::Dynamic ? c.min_output_size : (t + c.ratio - 1) / c.ratio;
  }
  return n;
}

TokenIds encode_document(const std::string& name, const std::string& text, const Tokenizer& tok) {
  check_text_document(name, text);
  EncodeOptions eo;
  eo.add_special = false;
  eo.parse_special = false;
  TokenIds ids = tok.encode(text, eo);
  COENC_CHECK(!ids.empty(), "{}: the document is empty (expected text to compress)", name);
  return ids;
}

void check_documents_fit(const std::vector<PreparedDocument>& docs, const CoEncoderConfig& c, int64_t reserve) {
  const int64_t limit = c.text.max_position_embeddings;
  int64_t total = reserve;
  bool exact = true;
  std::string counts;
  for (const auto& d : docs) {
    total += 2 + d.n_vectors;
    exact = exact && d.exact;
    counts += (counts.empty() ? "" : " + ") + std::to_string(d.n_vectors);
  }
  if (total <= limit) return;
  const char* at_least = exact ? "" : "at least ";
  if (docs.size() == 1)
    fail(ErrorCode::ExceedsContext,
         "{}: {} tokens compress into {}{} vectors, but the decoder reads at most {} positions "
         "(text_config.max_position_embeddings{}): split the document",
         docs[0].name, docs[0].n_tokens, at_least, docs[0].n_vectors, limit,
         reserve > 0 ? format(", {} kept for the question and answer", reserve) : std::string());
  fail(ErrorCode::ExceedsContext,
       "{}: the {} documents compress into {}{} vectors; with a [BOC] and an [EOC] row each and {} positions for "
       "the question and one answer token, they need {}{} positions, but the decoder reads at most {} "
       "(text_config.max_position_embeddings): ask about fewer or shorter documents",
       document_names(docs), docs.size(), at_least, counts, reserve, at_least, total, limit);
}

int64_t question_reserve(const Tokenizer& text_tokenizer, const std::string& question) {
  return static_cast<int64_t>(text_tokenizer.encode(question).size()) + 1;
}

std::vector<PreparedDocument> prepare_documents(std::vector<DocumentSource> sources, const CoEncoderConfig& config,
                                                const Tokenizer& context_tokenizer, int64_t reserve) {
  std::vector<PreparedDocument> docs;
  for (DocumentSource& s : sources) {
    PreparedDocument d;
    d.name = s.name;
    d.from_coctx = s.from_coctx;
    if (s.from_coctx) {
      d.doc = std::move(s.coctx);
      d.n_tokens = d.doc.n_tokens();
      d.n_vectors = d.doc.n_vectors();
      d.exact = true;
    } else {
      d.ids = encode_document(s.name, s.text, context_tokenizer);
      d.n_tokens = static_cast<int64_t>(d.ids.size());
      d.n_vectors = min_vectors(config, d.n_tokens);
      d.exact = config.pooling != PoolingMode::Dynamic;
    }
    // Each document alone first (it is told to be split), then all of them together.
    check_documents_fit({d}, config, reserve);
    docs.push_back(std::move(d));
  }
  check_documents_fit(docs, config, reserve);
  return docs;
}

namespace {

// Everything a .coctx records about `chunks` (their token ids) and `vectors` (what `model` made of them).
CompressedDocument describe(CoEncoderImpl& model, const std::vector<TokenIds>& chunks,
                            std::vector<torch::Tensor> vectors, const std::string& source) {
  const CoEncoderConfig& c = model.config();
  CompressedDocument doc;
  doc.chunks = std::move(vectors);
  for (auto& v : doc.chunks) v = v.to(torch::kCPU).contiguous();
  for (const TokenIds& chunk : chunks) {
    doc.chunk_tokens.push_back(static_cast<int64_t>(chunk.size()));
    doc.chunk_hashes.push_back(chunk_hash(chunk));
  }
  doc.model_fingerprint = model.fingerprint();
  doc.pooling = pooling_mode_name(c.pooling);
  doc.ratio = c.ratio;
  doc.chunk_size = c.chunk_size;
  doc.d_text = c.text.hidden_size;
  doc.source = source;
  return doc;
}

}  // namespace

CompressedDocument compress_document(CoEncoderImpl& model, const TokenIds& document, const std::string& source,
                                     int64_t n_batch, const std::function<void(int64_t, int64_t)>& on_progress) {
  COENC_CHECK(!document.empty(), "{}: cannot compress an empty document", source);
  const std::vector<TokenIds> chunks = model.split_chunks(document);
  return describe(model, chunks, model.compress_chunks(chunks, n_batch, on_progress, torch::kCPU), source);
}

namespace {

// A group of documents whose chunks are queued on the device together, batched across document boundaries
// (CoEncoderImpl::queue_chunks); describe_documents collects them. Bulk compression queues the next group before it
// describes and writes this one.
struct QueuedDocuments {
  std::vector<std::vector<TokenIds>> chunks;  // each document's
  std::vector<std::string> sources;
  QueuedChunks vectors;
};

QueuedDocuments queue_document_batch(CoEncoderImpl& model, const std::vector<TokenIds>& documents,
                                     std::vector<std::string> sources, int64_t n_batch) {
  COENC_CHECK_CODE(documents.size() == sources.size(), Internal, "queue_document_batch: {} documents, {} sources",
                   documents.size(), sources.size());
  QueuedDocuments q;
  std::vector<TokenIds> all;
  for (size_t d = 0; d < documents.size(); ++d) {
    COENC_CHECK(!documents[d].empty(), "{}: cannot compress an empty document", sources[d]);
    q.chunks.push_back(model.split_chunks(documents[d]));
    all.insert(all.end(), q.chunks.back().begin(), q.chunks.back().end());
  }
  q.sources = std::move(sources);
  q.vectors = model.queue_chunks(all, n_batch, torch::kCPU);
  return q;
}

std::vector<CompressedDocument> describe_documents(CoEncoderImpl& model, QueuedDocuments& q) {
  std::vector<torch::Tensor> vectors = q.vectors.collect();
  std::vector<CompressedDocument> out;
  size_t next = 0;
  for (size_t d = 0; d < q.chunks.size(); ++d) {
    const size_t n = q.chunks[d].size();
    out.push_back(describe(model, q.chunks[d],
                           std::vector<torch::Tensor>(vectors.begin() + next, vectors.begin() + next + n),
                           q.sources[d]));
    next += n;
  }
  return out;
}

}  // namespace

void compress_documents(CoEncoderImpl& model, std::vector<PreparedDocument>& docs, int64_t reserve, bool progress,
                        int64_t n_batch) {
  const CoEncoderConfig& c = model.config();
  for (PreparedDocument& d : docs) {
    if (d.from_coctx) {
      check_coctx_model(d.doc, model.config(), model.fingerprint(), d.name);
      continue;
    }
    const int64_t n_chunks = (d.n_tokens + c.chunk_size - 1) / c.chunk_size;
    ProgressBar bar("compressing", n_chunks, "chunks", progress && n_chunks > 1);
    const auto start = std::chrono::steady_clock::now();
    auto tokens_per_second = [&](int64_t chunks_done) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double tokens = static_cast<double>(std::min(d.n_tokens, chunks_done * c.chunk_size));
      return format("{} tok/s", static_cast<int64_t>(s > 0 ? tokens / s : 0));
    };
    d.doc = compress_document(model, d.ids, std::filesystem::path(d.name).filename().string(), n_batch,
                              [&](int64_t done, int64_t) { bar.update(done, tokens_per_second(done)); });
    bar.finish(tokens_per_second(n_chunks));
    d.n_vectors = d.doc.n_vectors();
    d.exact = true;
    check_documents_fit({d}, c, reserve);
  }
  check_documents_fit(docs, c, reserve);
}

// ---- bulk compression

namespace {

bool is_document_file(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".txt" || ext == ".md";
}

// A corpus file's name without its format suffixes: wiki-00.txt.xz -> wiki-00.
std::string corpus_stem(const std::string& path) {
  std::string name = std::filesystem::path(data_file_format_name(path)).filename().string();
  for (const char* ext : {".txt", ".jsonl"})
    if (name.size() > std::strlen(ext) && name.compare(name.size() - std::strlen(ext), std::string::npos, ext) == 0)
      return name.substr(0, name.size() - std::strlen(ext));
  return name;
}

}  // namespace

std::vector<BulkDocument> bulk_documents(const std::vector<std::string>& paths, const std::vector<std::string>& corpora,
                                         const std::filesystem::path& out_dir) {
  namespace fs = std::filesystem;
  std::vector<BulkDocument> docs;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(path))
        if (e.is_regular_file() && is_document_file(e.path())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      COENC_CHECK(!files.empty(), "{}: no .txt or .md documents in this folder", path);
      for (const auto& f : files)
        docs.push_back({f.string(), out_dir / fs::relative(f, path).replace_extension(".coctx"),
                        read_file_bytes(f, "document")});
      continue;
    }
    docs.push_back({path, out_dir / fs::path(path).filename().replace_extension(".coctx"),
                    read_file_bytes(path, "document")});
  }
  for (const std::string& corpus : corpora) {
    std::vector<std::string> texts = read_text_documents(corpus, "corpus");
    COENC_CHECK(!texts.empty(), "{}: no documents in this corpus file", corpus);
    const std::string stem = corpus_stem(corpus);
    for (size_t i = 0; i < texts.size(); ++i) {
      char number[24];  // up to 20 digits
      std::snprintf(number, sizeof number, "%06zu", i + 1);
      docs.push_back({corpus + ":" + std::to_string(i + 1), out_dir / (stem + "-" + number + ".coctx"),
                      std::move(texts[i])});
    }
  }
  std::map<fs::path, const BulkDocument*> by_output;
  for (const auto& d : docs) {
    // What encode_document would refuse, refused before any work (an empty text has no tokens).
    COENC_CHECK(!d.text.empty(), "{}: the document is empty (expected text to compress)", d.name);
    check_text_document(d.name, d.text);
    auto [it, fresh] = by_output.emplace(d.output.lexically_normal(), &d);
    COENC_CHECK(fresh, "{} and {} would both be written to {}: compress them into different folders", it->second->name,
                d.name, d.output.string());
  }
  return docs;
}

namespace {

// A document of a bulk run once read for the model: its ids, and whether its .coctx is up to date already.
struct BulkPrepared {
  TokenIds ids;
  bool current = false;
};

// COENC_BULK_OVERLAP=0: each group is collected, described and written before the next is queued (to measure
// what the overlap brings; docs/benchmarks.md).
bool overlap_groups() {
  static const bool on = [] {
    const char* env = std::getenv("COENC_BULK_OVERLAP");
    return env == nullptr || std::string(env) != "0";
  }();
  return on;
}

// Runs fn(i) for i in [begin, end) on `threads` threads (the first exception is rethrown here).
void parallel_for(size_t begin, size_t end, unsigned threads, const std::function<void(size_t)>& fn) {
  std::vector<std::future<void>> parts;
  for (unsigned t = 0; t < threads; ++t)
    parts.push_back(std::async(std::launch::async, [&, t] {
      for (size_t i = begin + t; i < end; i += threads) fn(i);
    }));
  for (auto& p : parts) p.get();
}

}  // namespace

BulkResult compress_bulk(CoEncoderImpl& model, const Tokenizer& context_tokenizer,
                         const std::vector<BulkDocument>& docs, const BulkOptions& options) {
  namespace fs = std::filesystem;
  COENC_CHECK(options.n_batch >= 1, "the batch must hold at least one chunk, got {}", options.n_batch);
  const int64_t group = options.group_chunks > 0 ? options.group_chunks : 8 * options.n_batch;
  const int64_t chunk_size = model.config().chunk_size;
  // The CPU's share runs beside the model's: while a block of documents is compressed, the next is tokenized and
  // checked against its .coctx, and finished groups are written, each on a few threads.
  COENC_CHECK(options.threads >= 0, "the number of threads must be positive (or 0 for the default), got {}",
              options.threads);
  const unsigned threads = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                               : std::max(1u, std::min(8u, std::thread::hardware_concurrency() / 2));
  const size_t block = 256;
  BulkResult result;
  result.threads = static_cast<int>(threads);
  const auto start = std::chrono::steady_clock::now();
  ProgressBar bar("compressing", static_cast<int64_t>(docs.size()), "docs", options.progress);
  int64_t done = 0;
  auto note = [&] {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return format("{} tok/s, {} up to date", static_cast<int64_t>(s > 0 ? result.tokens / s : 0), result.skipped);
  };

  // Where the main thread's time goes: the model, or waiting for the tokenizers or the writers.
  auto waited = [](double& seconds, const std::function<void()>& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto prepare = [&](size_t begin, size_t end) {
    std::vector<BulkPrepared> out(end - begin);
    parallel_for(begin, end, threads, [&](size_t i) {
      const BulkDocument& d = docs[i];
      BulkPrepared& p = out[i - begin];
      p.ids = encode_document(d.name, d.text, context_tokenizer);
      std::error_code ec;
      if (options.force || !fs::exists(d.output, ec)) return;
      // Up to date: the file reads back whole, this model made it, and it holds these very chunks.
      try {
        const CompressedDocument old = read_coctx(d.output);
        check_coctx_model(old, model.config(), model.fingerprint(), d.output);
        std::vector<std::string> hashes;
        for (const TokenIds& chunk : model.split_chunks(p.ids)) hashes.push_back(chunk_hash(chunk));
        p.current = old.chunk_hashes == hashes;
      } catch (const Error&) {
        p.current = false;  // damaged, another model's, or another text's: compress it again
      }
    });
    return out;
  };

  // What a group's writer reports once its documents are on disk.
  struct Written {
    int64_t documents = 0, tokens = 0, vectors = 0, chunks = 0;
  };
  std::deque<std::future<Written>> writing;  // groups being collected, described and written, oldest first
  auto wait_writes = [&](size_t keep) {
    while (writing.size() > keep) {
      const Written w = writing.front().get();
      writing.pop_front();
      result.documents += w.documents, result.tokens += w.tokens, result.vectors += w.vectors;
      result.chunks += w.chunks;
    }
  };
  // A group of documents queued on the device. Once the next group is queued behind it, a writer takes it: waits
  // for its vectors, describes its documents and writes them, while the main thread goes on queueing. (When the
  // main thread described the groups itself, per chunk a few tensor operations and a hash, its cycle per group of
  // ~1,600 chunks took ~27 ms on an H100 machine while the device needed ~21 ms: the device waited.
  // docs/benchmarks.md.)
  struct Group {
    QueuedDocuments queued;
    std::vector<size_t> targets;  // its documents (indices into docs)
  };
  std::optional<Group> in_flight;
  auto finish_group = [&](Group& g) {
    waited(result.write_wait_seconds, [&] { wait_writes(1); });  // at most two groups on their way to disk
    done += static_cast<int64_t>(g.targets.size());
    writing.push_back(std::async(std::launch::async, [&model, &docs, queued = std::move(g.queued),
                                                      targets = std::move(g.targets), threads]() mutable {
      const std::vector<CompressedDocument> out = describe_documents(model, queued);
      Written w;
      for (const CompressedDocument& c : out) {
        w.documents += 1, w.tokens += c.n_tokens(), w.vectors += c.n_vectors();
        w.chunks += static_cast<int64_t>(c.chunks.size());
      }
      parallel_for(0, targets.size(), threads, [&](size_t i) {
        const fs::path& path = docs[targets[i]].output;
        if (path.has_parent_path()) fs::create_directories(path.parent_path());
        write_coctx(path, out[i]);
      });
      return w;
    }));
    bar.update(done, note());
  };
  std::future<std::vector<BulkPrepared>> next;
  if (!docs.empty()) next = std::async(std::launch::async, prepare, 0, std::min(block, docs.size()));
  for (size_t first = 0; first < docs.size(); first += block) {
    std::vector<BulkPrepared> prepared;
    waited(result.tokenize_wait_seconds, [&] { prepared = next.get(); });
    const size_t last = std::min(first + block, docs.size());
    if (last < docs.size()) next = std::async(std::launch::async, prepare, last, std::min(last + block, docs.size()));
    std::vector<TokenIds> ids;
    std::vector<std::string> sources;
    std::vector<size_t> pending;
    int64_t pending_chunks = 0;
    auto flush = [&] {
      if (pending.empty()) return;
      Group g;
      waited(result.model_seconds,
             [&] { g.queued = queue_document_batch(model, ids, std::move(sources), options.n_batch); });
      g.targets = std::move(pending);
      if (in_flight) finish_group(*in_flight);  // the device computes `g` meanwhile
      in_flight = std::move(g);
      if (!overlap_groups()) {
        finish_group(*in_flight), in_flight.reset();
        waited(result.write_wait_seconds, [&] { wait_writes(0); });
      }
      ids.clear(), sources.clear(), pending.clear(), pending_chunks = 0;
    };
    for (size_t i = first; i < last; ++i) {
      BulkPrepared& p = prepared[i - first];
      if (p.current) {
        result.skipped += 1;
        bar.update(++done, note());
        continue;
      }
      pending_chunks += (static_cast<int64_t>(p.ids.size()) + chunk_size - 1) / chunk_size;
      ids.push_back(std::move(p.ids));
      sources.push_back(fs::path(docs[i].name).filename().string());
      pending.push_back(i);
      if (pending_chunks >= group) flush();
    }
    flush();
  }
  if (in_flight) finish_group(*in_flight);
  waited(result.write_wait_seconds, [&] { wait_writes(0); });
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bar.finish(note());
  return result;
}

}  // namespace coenc
