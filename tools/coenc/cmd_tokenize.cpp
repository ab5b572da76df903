// coenc tokenize: text -> token ids and pieces with a model's tokenizer, for people and for scripts; and an
// encode benchmark (one thread, or several sharing one tokenizer).
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct TokenizeArgs {
  std::string model;         // model directory, tokenizer.json or tokenizer.model
  bool add_special = false;  // BOS / post-processor template
  bool no_parse_special = false;
  bool json = false;   // one {"ids", "pieces"} object for all of stdin
  bool jsonl = false;  // each stdin line is a JSON string; one object per line
  std::string bench;   // benchmark: encode this file's lines
  int repeat = 3;      // benchmark repetitions, each with a freshly loaded tokenizer
  int threads = 1;     // benchmark: threads encoding the lines with one shared tokenizer
};

nlohmann::json encode_object(const Tokenizer& tok, const std::string& text, const EncodeOptions& opts) {
  TokenIds ids = tok.encode(text, opts);
  nlohmann::json pieces = nlohmann::json::array();
  for (TokenId id : ids) pieces.push_back(tok.id_to_piece(id));
  return {{"ids", ids}, {"pieces", pieces}};
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A piece for a terminal: control characters escaped, the rest as stored in the vocabulary.
std::string printable(const std::string& piece) {
  std::string out;
  for (char c : piece) {
    auto b = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (b < 0x20 || b == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", b);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

int run_bench(const TokenizeArgs& a, const EncodeOptions& opts) {
  std::ifstream in(a.bench, std::ios::binary);
  COENC_CHECK_CODE(in.good(), NotFound, "--bench {}: cannot open the file", a.bench);
  std::vector<std::string> lines;
  uint64_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    bytes += line.size() + 1;
    lines.push_back(line + "\n");
  }
  COENC_CHECK(a.repeat > 0, "--repeat must be positive, got {}", a.repeat);
  COENC_CHECK(a.threads > 0, "--threads must be positive, got {}", a.threads);
  double best = 1e30;
  uint64_t tokens = 0;
  for (int r = 0; r < a.repeat; ++r) {
    // A fresh tokenizer each time: the word cache starts empty, as in a new process. With --threads, every
    // thread encodes every N-th line through the one tokenizer (as `coenc compress` of a library does).
    auto tok = Tokenizer::load(a.model);
    std::vector<uint64_t> counts(static_cast<size_t>(a.threads), 0);
    auto encode_share = [&](size_t t) {
      for (size_t i = t; i < lines.size(); i += counts.size()) counts[t] += tok->encode(lines[i], opts).size();
    };
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (size_t t = 1; t < counts.size(); ++t) workers.emplace_back(encode_share, t);
    encode_share(0);
    for (auto& w : workers) w.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    tokens = 0;
    for (uint64_t c : counts) tokens += c;
  }
  nlohmann::json report = {{"file", a.bench},  {"lines", lines.size()}, {"bytes", bytes},
                           {"tokens", tokens}, {"seconds", best},       {"mb_per_s", bytes / best / 1e6},
                           {"threads", a.threads}, {"repeat", a.repeat}};
  std::cout << report.dump() << "\n";
  return 0;
}

int run_tokenize(const TokenizeArgs& a) {
  COENC_CHECK(!(a.json && a.jsonl), "give at most one of --json and --jsonl");
  EncodeOptions opts;
  opts.add_special = a.add_special;
  opts.parse_special = !a.no_parse_special;
  if (!a.bench.empty()) return run_bench(a, opts);
  auto tok = Tokenizer::load(a.model);
  if (a.jsonl) {
    size_t line_no = 0;
    for (std::string line; std::getline(std::cin, line);) {
      ++line_no;
      if (line.empty()) continue;
      nlohmann::json text;
      try {
        text = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail(ErrorCode::InvalidInput, "stdin line {}: not valid JSON (expected a JSON string): {}", line_no,
             e.what());
      }
      COENC_CHECK(text.is_string(), "stdin line {}: expected a JSON string, got {}", line_no,
                  text.type_name());
      std::cout << dump(encode_object(*tok, text.get<std::string>(), opts)) << "\n";
    }
    return 0;
  }
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (a.json) {
    std::cout << dump(encode_object(*tok, text, opts)) << "\n";
    return 0;
  }
  for (TokenId id : tok->encode(text, opts))
    std::cout << id << "\t" << printable(tok->id_to_piece(id)) << "\n";
  return 0;
}

}  // namespace

CommandFn setup_tokenize(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Encode text with a model's tokenizer and print the token ids and pieces.");
  cmd->footer(
      "All of standard input is one text; the output is one line per token, ID<TAB>PIECE, where PIECE is "
      "the\n"
      "vocabulary entry (byte-level vocabularies show a space as 'Ġ' and a newline as 'Ċ').\n\n"
      "Examples:\n"
      "  echo -n 'Hello world' | coenc tokenize --model path/to/Qwen3-0.6B\n"
      "  coenc tokenize --model tokenizer.json --json < doc.txt          # {\"ids\": [...], \"pieces\": "
      "[...]}\n"
      "  printf '\"first\"\\n\"second\\\\n\"\\n' | coenc tokenize --model DIR --jsonl   # one object per "
      "line\n"
      "  coenc tokenize --model DIR --bench corpus.txt                   # single-thread encode speed\n"
      "  coenc tokenize --model DIR --bench corpus.txt --threads 8       # eight threads, one tokenizer");
  cmd->add_option(
         "--model", args->model,
         "model directory (tokenizer.json or tokenizer.model, plus tokenizer_config.json), or a bare "
         "tokenizer.json / tokenizer.model")
      ->required();
  cmd->add_flag("--add-special", args->add_special,
                "add the model's special tokens around the text (BOS, or the tokenizer.json post-processor)");
  cmd->add_flag(
      "--no-parse-special", args->no_parse_special,
      "encode special-token text in the input (e.g. '<|im_end|>') as plain text, not as the special token");
  cmd->add_flag("--json", args->json,
                "print one JSON object {\"ids\": [...], \"pieces\": [...]} for all of stdin");
  cmd->add_flag("--jsonl", args->jsonl,
                "read one JSON string per stdin line and print one {\"ids\", \"pieces\"} object per line");
  cmd->add_option("--bench", args->bench,
                  "instead of reading stdin, time encoding every line of this file (on one thread unless "
                  "--threads) and print {\"mb_per_s\", ...} as JSON");
  cmd->add_option("--threads", args->threads, "with --bench: threads sharing the one tokenizer")
      ->capture_default_str();
  cmd->add_option("--repeat", args->repeat,
                  "benchmark repetitions (each loads the tokenizer afresh; the best is kept)")
      ->capture_default_str();
  return [args] { return run_tokenize(*args); };
}

}  // namespace coenc::cli
