// Flags and parsing shared by several subcommands.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "coenc/co_encoder.h"
#include "coenc/generate.h"
#include "coenc/pipeline.h"
#include "coenc/sampler.h"
#include "coenc/tokenizer.h"
#include "coenc/types.h"

namespace coenc::cli {

struct DeviceArgs {
  std::string device = "cpu";  // cpu, cuda, cuda:N
  std::string dtype = "auto";  // f32, bf16, f16, auto (f32 on CPU, bf16 on CUDA)
};

void add_device_options(CLI::App& cmd, DeviceArgs& args);
// --device / --dtype parsed, and the CPU's threads set for that dtype (tune_cpu_threads).
DeviceOptions device_options(const DeviceArgs& args);

// How long an answer may run and where it stops: -n, --stop, --ignore-eos, -c (generate and ask, as llama-cli).
struct GenerationArgs {
  int n_predict = 128;            // tokens to generate at most
  std::vector<std::string> stop;  // stop strings
  bool ignore_eos = false;        // keep going past end-of-sequence / end-of-turn tokens
  int64_t n_ctx = 0;              // positions of the decoder's context; 0: the model's window
};
void add_generation_options(CLI::App& cmd, GenerationArgs& args);

// ---- documents and their layout (ask, chat)

// The documents of a prompt: --doc (text compressed now) and --ctx (.coctx files from `coenc compress`), each
// repeatable, in any mix. CLI11 collects each flag's values apart; sources() puts them back in command-line order.
struct DocumentArgs {
  std::vector<std::string> docs, ctxs;
  CLI::Option* doc = nullptr;
  CLI::Option* ctx = nullptr;
  // Every document in command-line order, read: text (read_text_input) or a .coctx file (read_coctx, unchecked
  // against a model). `cmd` is the subcommand the options were added to.
  std::vector<DocumentSource> sources(const CLI::App& cmd) const;
};
// `stdin_document`: --doc - reads standard input (ask); chat reads its messages there, so its documents must be
// existing files.
void add_document_options(CLI::App& cmd, DocumentArgs& args, bool stdin_document);

// How a question is laid out: --no-chat, --chat, --chat-format, --system, --chat-template-kwargs.
struct LayoutArgs {
  bool no_chat = false;         // the seed's raw layout even when the decoder has a chat template
  bool chat = false;            // the chat template even for a connector trained on the raw layout
  std::string chat_format;      // chatml, llama3, ...; default: the tokenizer's chat_template
  std::string system;           // a system message (chat only)
  std::string template_kwargs;  // --chat-template-kwargs (JSON object; chat only)
};
void add_layout_options(CLI::App& cmd, LayoutArgs& args);
// The pipeline's AskOptions from the layout and generation flags (ignore_eos, n_ctx).
AskOptions ask_options(const LayoutArgs& layout, const GenerationArgs& gen);

// --ratio R: compress at R tokens per vector instead of the checkpoint's compression_ratio (mean and attn
// pooling, whose connector serves any ratio; the default Co-Encoder was trained at 4, 8 and 16).
void add_ratio_option(CLI::App& cmd, int64_t& ratio);
// Puts a --ratio into `config` (before anything is sized from it); 0 leaves the checkpoint's. Unsupported for
// dynamic pooling.
void apply_ratio(CoEncoderConfig& config, int64_t ratio);

// --chat-template-kwargs JSON (llama.cpp's flag): keyword arguments of the chat template, e.g.
// '{"enable_thinking": false}' for Qwen3 (ChatRenderOptions::template_kwargs). parse_chat_template_kwargs turns the
// text into the object (null when empty), refusing anything but a JSON object in one line.
void add_chat_template_kwargs_option(CLI::App& cmd, std::string& json_text);
nlohmann::ordered_json parse_chat_template_kwargs(const std::string& json_text);

// Validators for numeric flags with one readable line ("--reps: must be positive, got 0").
CLI::Validator positive();
CLI::Validator non_negative();
void add_sampling_options(CLI::App& cmd, SamplingOptions& options);

// "1,2, 3" -> {1, 2, 3}; `flag` names the option in errors.
TokenIds parse_id_list(const std::string& text, const char* flag);

// The whole text of `path` ("-": standard input); `what` names it in errors ("prompt file").
std::string read_text_input(const std::string& path, const char* what);

// This process's command line (as the kernel recorded it) without its --nproc flag: what each of the processes
// that launch_data_parallel (coenc/train.h) starts runs (train, compress).
std::vector<std::string> command_line_without_nproc();

// ---- generation output (generate, ask)

// Streams each new piece of text to stdout (the ids, space-separated, when there is no tokenizer).
TokenCallback stream_to_stdout(const Tokenizer* tokenizer);
// Ends the streamed text and prints one summary line on stderr: prompt positions, time, tokens, speed, stop
// reason.
void print_generation_summary(const GenerationResult& result);

}  // namespace coenc::cli
