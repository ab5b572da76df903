// coenc ask: answer a question about one or more documents that the decoder reads compressed (each from a
// .coctx file, or compressed on the fly), streaming the answer as it is produced.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "commands.h"

namespace coenc::cli {

namespace {

// One document of the prompt, as the command line named it.
struct AskSource {
  bool coctx = false;  // --ctx: a .coctx file made by `coenc compress`; else --doc: text compressed now
  std::string path;
};

struct AskArgs {
  std::string model;                    // Co-Encoder checkpoint directory
  std::vector<std::string> docs, ctxs;  // every --doc and every --ctx, as CLI11 collects them ...
  std::vector<AskSource> sources;       // ... and all of them in command-line order (see setup_ask)
  std::string question;
  GenerationArgs gen;       // -n, --stop, --ignore-eos, -c
  bool json = false;        // one JSON object at the end instead of streaming
  bool quiet = false;       // no progress bar while compressing --doc
  bool no_chat = false;     // the seed's raw layout even when the decoder has a chat template
  bool chat = false;        // the chat template even for a connector trained on the raw layout
  int64_t ratio = 0;        // > 0: compress --doc at this ratio (and expect it of --ctx files)
  std::string chat_format;  // chatml, llama3, ...; default: the tokenizer's chat_template
  std::string system;       // a system message (chat only)
  std::string template_kwargs;  // --chat-template-kwargs (JSON object; chat only)
  SamplingOptions sampling;
  DeviceArgs device;
};

int run_ask(const AskArgs& a) {
  COENC_CHECK(!a.sources.empty(),
              "give at least one --doc (a document) or --ctx (a .coctx file); either may be repeated");
  COENC_CHECK(std::count_if(a.sources.begin(), a.sources.end(),
                            [](const AskSource& s) { return !s.coctx && s.path == "-"; }) <= 1,
              "--doc - (standard input) may be given only once");
  COENC_CHECK(!a.question.empty(), "the question is empty");
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
  uses_chat_layout(config, *tok.text, ao);  // a layout we cannot follow is reported before any work

  // Everything that can be checked without the model is, before the (slow) load.
  const int64_t reserve = question_reserve(*tok.text, a.question);
  std::vector<DocumentSource> sources;
  for (const AskSource& s : a.sources) {
    DocumentSource d;
    d.name = s.path;
    d.from_coctx = s.coctx;
    if (s.coctx)
      d.coctx = read_coctx(s.path);
    else
      d.text = read_text_input(s.path, "document");
    sources.push_back(std::move(d));
  }
  std::vector<PreparedDocument> docs = prepare_documents(std::move(sources), config, *tok.context, reserve);

  CoEncoder model = load_co_encoder(a.model, device_options(a.device));
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  compress_documents(*model, docs, reserve, !(a.quiet || a.json));

  GenerationOptions go;
  go.max_new_tokens = a.gen.n_predict;
  go.stop_strings = a.gen.stop;
  go.sampling = a.sampling;
  GenerationResult r =
      answer(*model, *tok.text, docs, a.question, ao, go, a.json ? TokenCallback() : stream_to_stdout(tok.text.get()));
  if (a.json) {
    int64_t n_vectors = 0, n_tokens = 0;
    nlohmann::json per_doc = nlohmann::json::array();
    for (const auto& d : docs) {
      n_vectors += d.n_vectors;
      n_tokens += d.n_tokens;
      per_doc.push_back({{"source", d.name},
                         {"from", d.from_coctx ? "ctx" : "doc"},
                         {"n_context_tokens", d.n_tokens},
                         {"n_chunks", d.doc.chunks.size()},
                         {"n_vectors", d.n_vectors}});
    }
    nlohmann::json j = {{"ids", r.ids},
                        {"text", r.text},
                        {"stop_reason", r.stop_reason},
                        {"n_context_tokens", n_tokens},
                        {"n_vectors", n_vectors},
                        {"n_prompt", r.n_prompt},
                        {"documents", per_doc}};
    std::cout << j.dump() << "\n";
  } else {
    print_generation_summary(r);
  }
  return 0;
}

}  // namespace

CommandFn setup_ask(CLI::App& app) {
  auto a = std::make_shared<AskArgs>();
  auto* cmd =
      app.add_subcommand("ask", "Answer a question about compressed documents, streaming the answer.");
  cmd->footer(
      "The decoder reads each document as compressed vectors: from a .coctx file made by `coenc compress`\n"
      "(--ctx; refused if another model made it or it was changed), or compressed now (--doc, with a\n"
      "progress bar on stderr for long documents). --doc and --ctx may each be given several times, in any\n"
      "mix: every document becomes its own [BOC] vectors [EOC] block, in the order given, and together with\n"
      "the question they must fit the decoder's max_position_embeddings. The layout is the one the\n"
      "checkpoint was trained with (config.json \"prompt_layout\"; without it: chat when the decoder's\n"
      "tokenizer, text_tokenizer/, has a chat template). Chat: the user turn holds block 1, block 2, ... and\n"
      "then the question. Raw (or --no-chat): the decoder reads exactly [BOC] v1 [EOC] [BOC] v2 [EOC] ...\n"
      "followed by the question's tokens, which for one document is the seed project's layout. --chat\n"
      "uses the chat template even for a checkpoint trained raw.\n"
      "Documents interleaved with text: name them in the question as {doc1}, {doc2}, ... (in --doc/--ctx\n"
      "order); a named document's block stands at its placeholder, unnamed ones stay before the question.\n\n"
      "Examples:\n"
      "  coenc compress -m CKPT --doc report.txt -o report.coctx\n"
      "  coenc ask -m CKPT --ctx report.coctx \"Who signed the report?\"\n"
      "  coenc ask -m CKPT --doc report.txt -n 32 --temp 0 --json \"When was it written?\"\n"
      "  coenc ask -m CKPT --ctx report.coctx --ctx minutes.coctx --doc memo.txt \"Do they agree?\"\n"      "  coenc ask -m CKPT --doc v1.txt --doc v2.txt \"What changed from {doc1} to {doc2}?\"\n"
      "--temp 0 is greedy (deterministic); otherwise --seed fixes the draw. --json prints {\"ids\": [...],\n"
      "\"text\": ..., \"stop_reason\": ..., \"n_context_tokens\": N, \"n_vectors\": K, \"n_prompt\": P,\n"
      "\"documents\": [{\"source\": FILE, \"from\": \"ctx\"|\"doc\", \"n_context_tokens\": N1,\n"
      "\"n_chunks\": C1, \"n_vectors\": K1}, ...]} at the end: N and K are the totals over the documents.");
  cmd->add_option("--model,-m", a->model, "Co-Encoder checkpoint directory")->required();
  // One value per flag (so that `--doc a.txt "question"` leaves the question alone); repeat the flag for
  // more. CLI11 keeps --doc and --ctx values apart; parse_order() gives back how they were interleaved.
  CLI::Option* doc =
      cmd->add_option("--doc,-d", a->docs,
                      "a document to compress and ask about, UTF-8 text (- for standard input); "
                      "repeatable")
          ->allow_extra_args(false);
  CLI::Option* ctx = cmd->add_option("--ctx", a->ctxs,
                                     "a .coctx file made by `coenc compress` with the same model; repeatable")
                         ->allow_extra_args(false);
  cmd->add_option("question", a->question, "the question")->required();
  add_generation_options(*cmd, a->gen);
  cmd->add_flag("--json", a->json, "print one JSON object at the end instead of streaming");
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar while compressing --doc");
  auto* no_chat = cmd->add_flag("--no-chat", a->no_chat,
                                "the raw layout [BOC] vectors [EOC] ... question, even with a chat template");
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
      if (o == doc && next_doc < a->docs.size()) a->sources.push_back({false, a->docs[next_doc++]});
      if (o == ctx && next_ctx < a->ctxs.size()) a->sources.push_back({true, a->ctxs[next_ctx++]});
    }
    COENC_CHECK_CODE(next_doc == a->docs.size() && next_ctx == a->ctxs.size(), Internal,
                     "ask: --doc / --ctx values out of step with the parse order");
    return run_ask(*a);
  };
}

}  // namespace coenc::cli
