// coenc chat: an interactive conversation about compressed documents. The documents are compressed once; each
// message is answered with the conversation so far (the pipeline's Conversation reuses the decoder's cache of the
// documents and earlier turns), streaming the answer.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "cli_util.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct ChatArgs {
  std::string model;
  DocumentArgs documents;  // --doc, --ctx
  GenerationArgs gen;
  LayoutArgs layout;
  bool quiet = false;
  int64_t ratio = 0;
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

int run_chat(const ChatArgs& a, const CLI::App& cmd) {
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  const AskOptions ao = ask_options(a.layout, a.gen);
  uses_chat_layout(config, *tok.text, ao);

  const int64_t reserve = 2;  // a short message and the first answer token; each turn checks its own length
  std::vector<PreparedDocument> docs = prepare_documents(a.documents.sources(cmd), config, *tok.context, reserve);
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
  // Standard input is the conversation, so documents are files (no "-").
  add_document_options(*cmd, a->documents, /*stdin_document=*/false);
  add_generation_options(*cmd, a->gen);
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar, greeting or per-turn line on stderr");
  add_layout_options(*cmd, a->layout);
  add_ratio_option(*cmd, a->ratio);
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a, cmd] { return run_chat(*a, *cmd); };
}

}  // namespace coenc::cli
