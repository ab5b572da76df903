#include "cli_util.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "core/progress.h"

namespace coenc::cli {

namespace {

CLI::Validator number_at_least(double min, bool strict, const char* what) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        size_t used = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size()) return "must be a number, got \"" + text + "\"";
        return (strict ? v > min : v >= min) ? std::string() : std::string("must be ") + what + ", got " + text;
      },
      strict ? "POSITIVE" : "NON-NEGATIVE");
}

}  // namespace

void add_ratio_option(CLI::App& cmd, int64_t& ratio) {
  cmd.add_option("--ratio", ratio,
                 "tokens per vector instead of the checkpoint's compression_ratio (mean and attn pooling; the "
                 "default model was trained at 4, 8 and 16)")
      ->check(positive());
}

void apply_ratio(CoEncoderConfig& config, int64_t ratio) {
  if (ratio <= 0) return;
  COENC_CHECK_CODE(config.pooling != PoolingMode::Dynamic, Unsupported,
                   "--ratio needs mean or attn pooling; this checkpoint's dynamic pooling sizes itself");
  config.ratio = ratio;
}

CLI::Validator positive() { return number_at_least(0, true, "positive"); }
CLI::Validator non_negative() { return number_at_least(0, false, ">= 0"); }

void add_device_options(CLI::App& cmd, DeviceArgs& args) {
  cmd.add_option("--device", args.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd.add_option("--dtype", args.dtype, "compute dtype: f32, bf16, f16, or auto (f32 on CPU, bf16 on CUDA)")
      ->capture_default_str();
}

void add_sampling_options(CLI::App& cmd, SamplingOptions& o) {
  cmd.add_option("--temp", o.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  cmd.add_option("--top-k", o.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
  cmd.add_option("--top-p", o.top_p, "nucleus sampling threshold (1 = off)")->capture_default_str();
  cmd.add_option("--min-p", o.min_p, "drop tokens below min-p x the top probability (0 = off)")->capture_default_str();
  cmd.add_option("--repeat-penalty", o.repetition_penalty, "penalise repeated tokens (1 = off)")->capture_default_str();
  cmd.add_option("--repeat-last-n", o.penalty_last_n, "how many recent tokens the penalty looks at")->capture_default_str();
  cmd.add_option("--seed", o.seed, "random seed")->capture_default_str();
}

TokenIds parse_id_list(const std::string& text, const char* flag) {
  TokenIds ids;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (std::isspace(static_cast<unsigned char>(text[i])) || text[i] == ',')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    COENC_CHECK(j > i && (j == text.size() || text[j] == ',' || std::isspace(static_cast<unsigned char>(text[j]))),
                "{}: expected comma-separated non-negative integers, got \"{}\"", flag, text);
    COENC_CHECK(j - i <= 9, "{}: token id \"{}\" is too large", flag, text.substr(i, j - i));
    ids.push_back(static_cast<TokenId>(std::stol(text.substr(i, j - i))));
    i = j;
  }
  COENC_CHECK(!ids.empty(), "{}: no token ids given", flag);
  return ids;
}


int64_t min_vectors(const CoEncoderConfig& c, int64_t n_tokens) {
  int64_t n = 0;
  for (int64_t begin = 0; begin < n_tokens; begin += c.chunk_size) {
    const int64_t t = std::min(c.chunk_size, n_tokens - begin);
    n += c.pooling == PoolingMode::Dynamic ? c.min_output_size : (t + c.ratio - 1) / c.ratio;
  }
  return n;
}

namespace {

void check_fits(const std::string& path, const CoEncoderConfig& c, int64_t n_tokens, int64_t n_vectors,
                bool exact, int64_t reserve) {
  const int64_t limit = c.text.max_position_embeddings;
  if (2 + n_vectors + reserve > limit)
    fail(ErrorCode::ExceedsContext,
         "{}: {} tokens compress into {}{} vectors, but the decoder reads at most {} positions "
         "(text_config.max_position_embeddings{}): split the document",
         path, n_tokens, exact ? "" : "at least ", n_vectors, limit,
         reserve > 0 ? format(", {} kept for the question and answer", reserve) : std::string());
}

}  // namespace

std::string read_text_input(const std::string& path, const char* what) {
  return path == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), {})
                     : read_file_bytes(path, what);
}

TokenCallback stream_to_stdout(const Tokenizer* tok) {
  return [tok](TokenId id, const std::string& delta) {
    if (tok)
      std::cout << delta;
    else
      std::cout << id << " ";
    std::cout.flush();
    return true;
  };
}

void print_generation_summary(const GenerationResult& r) {
  std::cout << "\n";
  const double tps = r.decode_seconds > 0 && r.ids.size() > 1 ? (r.ids.size() - 1) / r.decode_seconds : 0;
  char line[256];
  std::snprintf(
      line, sizeof line, "coenc: %lld prompt tokens in %.3f s, %zu tokens generated (%.1f tok/s), stop: %s\n",
      static_cast<long long>(r.n_prompt), r.prefill_seconds, r.ids.size(), tps, r.stop_reason.c_str());
  std::cerr << line;
}

TokenIds merge_ids(TokenIds ids, const TokenIds& more) {
  for (TokenId id : more)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

TokenIds read_document(const std::string& path, const Tokenizer& tok, const CoEncoderConfig& c,
                       int64_t reserve) {
  const std::string text = read_text_input(path, "document");
  if (auto at = first_non_text_byte(text))
    fail(ErrorCode::InvalidInput, "{}: not a text document (byte {} is {}; expected UTF-8 text to compress)", path,
         *at, text[*at] == '\0' ? std::string("a NUL") : std::string("not valid UTF-8"));
  EncodeOptions eo;
  eo.add_special = false;
  eo.parse_special = false;
  TokenIds ids = tok.encode(text, eo);
  COENC_CHECK(!ids.empty(), "{}: the document is empty (expected text to compress)", path);
  check_fits(path, c, static_cast<int64_t>(ids.size()), min_vectors(c, static_cast<int64_t>(ids.size())),
             false, reserve);
  return ids;
}

CompressedDocument compress_with_progress(CoEncoderImpl& model, const TokenIds& ids, const std::string& path,
                                          bool quiet, int64_t reserve) {
  const CoEncoderConfig& c = model.config();
  const int64_t n_tokens = static_cast<int64_t>(ids.size());
  const int64_t n_chunks = (n_tokens + c.chunk_size - 1) / c.chunk_size;
  ProgressBar bar("compressing", n_chunks, "chunks", !quiet && n_chunks > 1);
  const auto start = std::chrono::steady_clock::now();
  auto tokens_per_second = [&](int64_t chunks_done) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens = static_cast<double>(std::min(n_tokens, chunks_done * c.chunk_size));
    return format("{} tok/s", static_cast<int64_t>(s > 0 ? tokens / s : 0));
  };
  CompressedDocument doc =
      compress_document(model, ids, std::filesystem::path(path).filename().string(), 8,
                        [&](int64_t done, int64_t) { bar.update(done, tokens_per_second(done)); });
  bar.finish(tokens_per_second(n_chunks));
  check_fits(path, c, n_tokens, doc.n_vectors(), true, reserve);
  return doc;
}

}  // namespace coenc::cli
