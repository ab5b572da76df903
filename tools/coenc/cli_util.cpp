#include "cli_util.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <sstream>

#include "coenc/atomic_file.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/timing.h"

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

DeviceOptions device_options(const DeviceArgs& args) {
  DeviceOptions dev = parse_device_options(args.device, args.dtype);
  tune_cpu_threads(dev.device, dev.dtype);
  return dev;
}

void add_generation_options(CLI::App& cmd, GenerationArgs& args) {
  cmd.add_option("-n,--n-predict", args.n_predict, "maximum number of tokens to generate")
      ->capture_default_str()
      ->check(non_negative());
  cmd.add_option("--stop", args.stop, "stop when this text appears (repeatable)");
  cmd.add_flag("--ignore-eos", args.ignore_eos, "do not stop at end-of-sequence / end-of-turn tokens");
  cmd.add_option("-c,--ctx-size", args.n_ctx, "context size in positions (default: the model's window)")
      ->check(positive());
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


std::string read_text_input(const std::string& path, const char* what) {
  return path == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), {})
                     : read_file_bytes(path, what);
}

void add_document_options(CLI::App& cmd, DocumentArgs& a, bool stdin_document) {
  // One value per flag (so that `--doc a.txt "question"` leaves the question alone); repeat the flag for more.
  a.doc = cmd.add_option("--doc,-d", a.docs,
                         stdin_document ? "a document to compress, UTF-8 text (- for standard input); repeatable"
                                        : "a document to compress, UTF-8 text; repeatable")
              ->allow_extra_args(false);
  a.ctx = cmd.add_option("--ctx", a.ctxs, "a .coctx file made by `coenc compress` with the same model; repeatable")
              ->allow_extra_args(false);
  if (!stdin_document) {
    a.doc->check(CLI::ExistingFile);
    a.ctx->check(CLI::ExistingFile);
  }
}

std::vector<DocumentSource> DocumentArgs::sources(const CLI::App& cmd) const {
  std::vector<DocumentSource> out;
  size_t next_doc = 0, next_ctx = 0;
  for (const CLI::Option* o : cmd.parse_order()) {
    const bool is_doc = o == doc && next_doc < docs.size(), is_ctx = o == ctx && next_ctx < ctxs.size();
    if (!is_doc && !is_ctx) continue;
    DocumentSource d;
    d.from_coctx = is_ctx;
    d.name = is_ctx ? ctxs[next_ctx++] : docs[next_doc++];
    if (is_ctx)
      d.coctx = read_coctx(d.name);
    else
      d.text = read_text_input(d.name, "document");
    out.push_back(std::move(d));
  }
  COENC_CHECK_CODE(next_doc == docs.size() && next_ctx == ctxs.size(), Internal,
                   "--doc / --ctx values out of step with the parse order");
  return out;
}

void add_layout_options(CLI::App& cmd, LayoutArgs& a) {
  auto* no_chat = cmd.add_flag("--no-chat", a.no_chat,
                               "the raw layout [BOC] vectors [EOC] ... question, even with a chat template");
  cmd.add_flag("--chat", a.chat, "the chat template's layout, even for a checkpoint trained on the raw one")
      ->excludes(no_chat);
  cmd.add_option("--chat-format", a.chat_format,
                 "a built-in chat format instead of the tokenizer's chat_template: "
                 "chatml, llama3, llama2, mistral or gemma");
  cmd.add_option("--system", a.system, "system message (chat template only)");
  add_chat_template_kwargs_option(cmd, a.template_kwargs);
}

AskOptions ask_options(const LayoutArgs& layout, const GenerationArgs& gen) {
  AskOptions o;
  o.chat = !layout.no_chat;
  o.force_chat = layout.chat;
  o.chat_format = layout.chat_format;
  o.system = layout.system;
  o.chat_template_kwargs = parse_chat_template_kwargs(layout.template_kwargs);
  o.ignore_eos = gen.ignore_eos;
  o.n_ctx = gen.n_ctx;
  return o;
}

void add_chat_template_kwargs_option(CLI::App& cmd, std::string& json_text) {
  cmd.add_option("--chat-template-kwargs", json_text,
                 "keyword arguments of the chat template as a JSON object, e.g. '{\"enable_thinking\": false}'");
}

nlohmann::ordered_json parse_chat_template_kwargs(const std::string& json_text) {
  if (json_text.empty()) return nullptr;
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(json_text);
  } catch (const nlohmann::json::exception&) {
    fail(ErrorCode::InvalidInput, "--chat-template-kwargs: not JSON: {}", json_text);
  }
  COENC_CHECK(j.is_object(), "--chat-template-kwargs: expected a JSON object such as '{{\"enable_thinking\": false}}', "
              "got {}", json_text);
  return j;
}

std::vector<std::string> command_line_without_nproc() {
  std::istringstream in(read_file_bytes("/proc/self/cmdline", "command line"));
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) {
    if (arg == "--nproc") {
      std::getline(in, arg, '\0');  // its value
      continue;
    }
    if (arg.rfind("--nproc=", 0) != 0) args.push_back(arg);
  }
  return args;
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

}  // namespace coenc::cli
