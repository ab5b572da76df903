// coenc chat: an interactive conversation about compressed documents. The documents are compressed once; each
// message is answered with the conversation so far (the pipeline's Conversation reuses the decoder's cache of the
// documents and earlier turns), streaming the answer.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "cli_util.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct ChatArgs {
  std::string model;
  std::vector<std::string> docs, ctxs;   // every --doc and --ctx, as CLI11 collects them ...
  std::vector<std::pair<bool, std::string>> sources;  // ... and in command-line order (true: a .coctx file)
  GenerationArgs gen;
  bool quiet = false;
  bool no_chat = false, chat = false;
  int64_t ratio = 0;
  std::string chat_format, system;
  std::string template_kwargs;  // --chat-template-kwargs (JSON object; chat layout only)
  SamplingOptions sampling;
  DeviceArgs device;
};

// Ctrl-C while an answer streams stops that answer, not the program (the handler is set only then).
std::atomic<bool> g_interrupted{false};
void stop_answer(int) { g_interrupted = true; }

const char* kHelp =
    "  /help    this list\n"
    "  /docs    the documents and what they compressed into\n"
    "  /reset   forget the conversation (the documents stay)\n"
    "  /quit    leave (or Ctrl-D); Ctrl-C stops an answer\n"
    "  A line ending in \\ continues on the next line.\n";

// One message from the user: lines joined while they end in a backslash. False at the end of input.
bool read_message(bool interactive, std::string& message) {
  message.clear();
  std::string line;
  for (bool first = true;; first = false) {
    if (interactive) std::cout << (first ? "> " : ". ") << std::flush;
    if (!std::getline(std::cin, line)) return !message.empty();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line.back() == '\\') {
      line.pop_back();
      message += line + "\n";
      continue;
    }
    message += line;
    return true;
  }
}

int run_chat(const ChatArgs& a) {
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  AskOptions ao;
  ao.chat = !a.no_chat;
  ao.force_chat = a.chat;
  ao.chat_format = a.chat_format;
  ao.system = a.system;
  ao.chat_template_kwargs = parse_chat_template_kwargs(a.template_kwargs);
  ao.ignore_eos = a.gen.ignore_eos;
  ao.n_ctx = a.gen.n_ctx;
  uses_chat_layout(config, *tok.text, ao);

  std::vector<DocumentSource> sources;
  for (const auto& [coctx, path] : a.sources) {
    DocumentSource d;
    d.name = path;
    d.from_coctx = coctx;
    if (coctx)
      d.coctx = read_coctx(path);
    else
      d.text = read_text_input(path, "document");
    sources.push_back(std::move(d));
  }
  const int64_t reserve = 2;  // a short message and the first answer token; each turn checks its own length
  std::vector<PreparedDocument> docs = prepare_documents(std::move(sources), config, *tok.context, reserve);
  CoEncoder model = load_co_encoder(a.model, device_options(a.device));
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  compress_documents(*model, docs, reserve, !a.quiet);
  Conversation conversation(*model, *tok.text, std::move(docs), ao);

  const bool interactive = isatty(STDIN_FILENO);
  if (interactive && !a.quiet)
    std::cerr << "coenc chat: " << conversation.documents().size() << " document(s) compressed; /help for commands\n";
  GenerationOptions go;
  go.max_new_tokens = a.gen.n_predict;
  go.stop_strings = a.gen.stop;
  go.sampling = a.sampling;
  std::string message;
  while (read_message(interactive, message)) {
    if (message.find_first_not_of(" \t\n") == std::string::npos) continue;
    if (message == "/quit" || message == "/exit") break;
    if (message == "/help") {
      std::cout << kHelp << std::flush;
      continue;
    }
    if (message == "/reset") {
      conversation.reset();
      std::cout << "(conversation forgotten; the documents stay)\n" << std::flush;
      continue;
    }
    if (message == "/docs") {
      for (const auto& d : conversation.documents())
        std::cout << "  " << d.name << ": " << d.n_tokens << " tokens -> " << d.n_vectors << " vectors\n";
      std::cout << std::flush;
      continue;
    }
    if (message[0] == '/' && message.find(' ') == std::string::npos) {
      std::cout << "unknown command " << message << "; /help lists them\n" << std::flush;
      continue;
    }
    g_interrupted = false;
    struct sigaction action = {}, previous = {};
    action.sa_handler = stop_answer;
    sigaction(SIGINT, &action, &previous);
    TokenCallback stream = stream_to_stdout(tok.text.get());
    GenerationResult r;
    try {
      r = conversation.reply(message, go, [&](TokenId id, const std::string& delta) {
        return stream(id, delta) && !g_interrupted;
      });
    } catch (const Error& e) {
      sigaction(SIGINT, &previous, nullptr);
      if (e.code() != ErrorCode::ExceedsContext) throw;
      std::cout << "coenc: " << e.what() << "\n" << std::flush;  // the chat goes on: a shorter message may fit
      continue;
    }
    sigaction(SIGINT, &previous, nullptr);
    std::cout << "\n";
    if (g_interrupted) std::cout << "(stopped)\n";
    std::cout << std::flush;
    if (!a.quiet) {
      const auto& c = conversation.last_cost();
      const double tps = r.decode_seconds > 0 && r.ids.size() > 1 ? (r.ids.size() - 1) / r.decode_seconds : 0;
      char line[256];
      std::snprintf(line, sizeof line,
                    "[turn %zu: %lld prompt positions, %lld fed, %lld reused; %zu tokens, %.1f tok/s; stop: %s%s]\n",
                    conversation.n_exchanges(), static_cast<long long>(r.n_prompt), static_cast<long long>(c.n_fed),
                    static_cast<long long>(c.n_reused), r.ids.size(), tps, r.stop_reason.c_str(),
                    c.n_dropped > 0 ? ("; " + std::to_string(c.n_dropped) + " earliest exchange(s) dropped to fit")
                                          .c_str()
                                    : "");
      std::cerr << line << std::flush;
    }
  }
  if (interactive) std::cout << "\n";
  return 0;
}

}  // namespace

CommandFn setup_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  auto* cmd = app.add_subcommand("chat", "Talk about compressed documents: several questions, one compression.");
  cmd->footer(
      "The documents (--doc: text compressed now; --ctx: a .coctx file from `coenc compress`) are compressed\n"
      "once, then every line you type is answered, streaming, with the conversation so far: the first user\n"
      "turn holds every document's [BOC] vectors [EOC] block and your first message, in the layout the\n"
      "checkpoint was trained with (as `coenc ask`: its first answer is ask's answer). The decoder's cache of\n"
      "the documents and the earlier turns is kept, so a follow-up costs only its own tokens. When the\n"
      "conversation outgrows the window (-c), the earliest exchanges are dropped; the documents stay.\n"
      "Reads standard input line by line, so it also runs in a pipe (no prompts are printed then).\n"
      "Commands: /help, /docs, /reset, /quit (or Ctrl-D); Ctrl-C stops an answer. After each answer one line\n"
      "on stderr says its prompt positions, how many were fed and how many reused, tokens and speed (-q: none).\n\n"
      "Examples:\n"
      "  coenc chat -m models/default-coenc --doc examples/sample-document.txt\n"
      "  coenc chat -m CKPT --ctx report.coctx --ctx minutes.coctx --temp 0.7 -n 256\n"
      "  printf 'Who wrote it?\\nWhen?\\n' | coenc chat -m CKPT --doc memo.txt --temp 0 -q");
  cmd->add_option("--model,-m", a->model, "Co-Encoder checkpoint directory")->required();
  // Standard input is the conversation, so documents are files (CLI::ExistingFile: no "-").
  CLI::Option* doc =
      cmd->add_option("--doc,-d", a->docs, "a document to compress and talk about, UTF-8 text; repeatable")
          ->allow_extra_args(false)
          ->check(CLI::ExistingFile);
  CLI::Option* ctx =
      cmd->add_option("--ctx", a->ctxs, "a .coctx file made by `coenc compress` with the same model; repeatable")
          ->allow_extra_args(false)
          ->check(CLI::ExistingFile);
  add_generation_options(*cmd, a->gen);
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar, greeting or per-turn line on stderr");
  auto* no_chat = cmd->add_flag("--no-chat", a->no_chat, "the raw layout, even with a chat template");
  cmd->add_flag("--chat", a->chat, "the chat template's layout, even for a checkpoint trained on the raw one")
      ->excludes(no_chat);
  cmd->add_option("--chat-format", a->chat_format,
                  "a built-in chat format instead of the tokenizer's chat_template: "
                  "chatml, llama3, llama2, mistral or gemma");
  cmd->add_option("--system", a->system, "system message (chat template only)");
  add_chat_template_kwargs_option(*cmd, a->template_kwargs);
  add_ratio_option(*cmd, a->ratio);
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a, cmd, doc, ctx] {
    size_t next_doc = 0, next_ctx = 0;
    for (const CLI::Option* o : cmd->parse_order()) {
      if (o == doc && next_doc < a->docs.size()) a->sources.emplace_back(false, a->docs[next_doc++]);
      if (o == ctx && next_ctx < a->ctxs.size()) a->sources.emplace_back(true, a->ctxs[next_ctx++]);
    }
    return run_chat(*a);
  };
}

}  // namespace coenc::cli
