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

struct AskArgs {
  std::string model;  // Co-Encoder checkpoint directory
  DocumentArgs documents;
  std::string question;
  GenerationArgs gen;  // -n, --stop, --ignore-eos, -c
  LayoutArgs layout;   // --no-chat, --chat, --chat-format, --system, --chat-template-kwargs
  bool json = false;   // one JSON object at the end instead of streaming
  bool quiet = false;  // no progress bar while compressing --doc
  int64_t ratio = 0;   // > 0: compress --doc at this ratio (and expect it of --ctx files)
  SamplingOptions sampling;
  DeviceArgs device;
};

int run_ask(const AskArgs& a, const CLI::App& cmd) {
  COENC_CHECK(!a.documents.docs.empty() || !a.documents.ctxs.empty(),
              "give at least one --doc (a document) or --ctx (a .coctx file); either may be repeated");
  COENC_CHECK(std::count(a.documents.docs.begin(), a.documents.docs.end(), "-") <= 1,
              "--doc - (standard input) may be given only once");
  COENC_CHECK(!a.question.empty(), "the question is empty");
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  const AskOptions ao = ask_options(a.layout, a.gen);
  uses_chat_layout(config, *tok.text, ao);  // a layout we cannot follow is reported before any work

  // Everything that can be checked without the model is, before the (slow) load.
  const int64_t reserve = question_reserve(*tok.text, a.question);
  std::vector<PreparedDocument> docs = prepare_documents(a.documents.sources(cmd), config, *tok.context, reserve);

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
  add_document_options(*cmd, a->documents, /*stdin_document=*/true);
  cmd->add_option("question", a->question, "the question")->required();
  add_generation_options(*cmd, a->gen);
  cmd->add_flag("--json", a->json, "print one JSON object at the end instead of streaming");
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar while compressing --doc");
  add_layout_options(*cmd, a->layout);
  add_ratio_option(*cmd, a->ratio);
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a, cmd] { return run_ask(*a, *cmd); };
}

}  // namespace coenc::cli
