// Documents of the pipeline: text -> context tokenizer ids -> compressed chunks, and the one check that they fit
// the decoder.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "core/progress.h"

namespace coenc {

namespace {

std::string document_names(const std::vector<PreparedDocument>& docs) {
  std::string names;
  for (const auto& d : docs) names += (names.empty() ? "" : ", ") + d.name;
  return names;
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
  if (auto at = first_non_text_byte(text))
    fail(ErrorCode::InvalidInput, "{}: not a text document (byte {} is {}; expected UTF-8 text to compress)", name,
         *at, text[*at] == '\0' ? std::string("a NUL") : std::string("not valid UTF-8"));
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

CompressedDocument compress_document(CoEncoderImpl& model, const TokenIds& document, const std::string& source,
                                     int64_t n_batch, const std::function<void(int64_t, int64_t)>& on_progress) {
  const CoEncoderConfig& c = model.config();
  CompressedDocument doc;
  doc.chunks = model.compress(document, n_batch, on_progress);
  for (auto& v : doc.chunks) v = v.to(torch::kCPU).contiguous();
  for (size_t begin = 0; begin < document.size(); begin += c.chunk_size) {
    const size_t end = std::min(document.size(), begin + static_cast<size_t>(c.chunk_size));
    doc.chunk_tokens.push_back(static_cast<int64_t>(end - begin));
    doc.chunk_hashes.push_back(chunk_hash(TokenIds(document.begin() + begin, document.begin() + end)));
  }
  doc.model_fingerprint = model.fingerprint();
  doc.pooling = pooling_mode_name(c.pooling);
  doc.ratio = c.ratio;
  doc.chunk_size = c.chunk_size;
  doc.d_text = c.text.hidden_size;
  doc.source = source;
  return doc;
}

void compress_documents(CoEncoderImpl& model, std::vector<PreparedDocument>& docs, int64_t reserve, bool progress) {
  const CoEncoderConfig& c = model.config();
  for (PreparedDocument& d : docs) {
    if (d.from_coctx) {
      check_coctx_model(d.doc, model, d.name);
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
    d.doc = compress_document(model, d.ids, std::filesystem::path(d.name).filename().string(), 8,
                              [&](int64_t done, int64_t) { bar.update(done, tokens_per_second(done)); });
    bar.finish(tokens_per_second(n_chunks));
    d.n_vectors = d.doc.n_vectors();
    d.exact = true;
    check_documents_fit({d}, c, reserve);
  }
  check_documents_fit(docs, c, reserve);
}

}  // namespace coenc
