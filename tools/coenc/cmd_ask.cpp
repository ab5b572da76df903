// coenc ask: answer a question about a document that the decoder reads compressed (from a .coctx file, or
// compressed on the fly), streaming the answer as it is produced.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/generate.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct AskArgs {
  std::string model;  // Co-Encoder checkpoint directory
  std::string doc;    // a document to compress first ("-": standard input)
  std::string ctx;    // or a .coctx file made by `coenc compress`
  std::string question;
  int n_predict = 128;      // tokens to generate at most
  bool json = false;        // one JSON object at the end instead of streaming
  bool quiet = false;       // no progress bar while compressing --doc
  bool no_chat = false;     // the seed's raw layout even when the decoder has a chat template
  std::string chat_format;  // chatml, llama3, ...; default: recognised from the template
  std::string system;       // a system message (chat only)
  SamplingOptions sampling;
  DeviceArgs device;
};

int run_ask(const AskArgs& a) {
  COENC_CHECK(a.doc.empty() != a.ctx.empty(),
              "give exactly one of --doc (a document) and --ctx (a .coctx file)");
  COENC_CHECK(!a.question.empty(), "the question is empty");
  COENC_CHECK(a.n_predict >= 0, "-n must be non-negative, got {}", a.n_predict);
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  // A chat template we cannot follow is reported before the document is compressed.
  if (!a.no_chat && (!tok.text->chat_template().empty() || !a.chat_format.empty()))
    resolve_chat_format(*tok.text, a.chat_format);
  COENC_CHECK(
      a.system.empty() || (!a.no_chat && !tok.text->chat_template().empty()) || !a.chat_format.empty(),
      "--system needs a chat template, and {} has none (or --no-chat was given)",
      (std::filesystem::path(a.model) / "text_tokenizer").string());
  // The question and at least one answer token must fit beside the compressed block.
  const int64_t reserve = static_cast<int64_t>(tok.text->encode(a.question).size()) + 1;
  TokenIds ids;
  if (!a.doc.empty()) ids = read_document(a.doc, *tok.context, config, reserve);

  CoEncoder model = load_co_encoder(a.model, parse_device_options(a.device.device, a.device.dtype));
  CompressedDocument doc = a.doc.empty()
                               ? read_coctx(a.ctx, *model)
                               : compress_with_progress(*model, ids, a.doc, a.quiet || a.json, reserve);
  AskOptions ao;
  ao.chat = !a.no_chat;
  ao.chat_format = a.chat_format;
  ao.system = a.system;
  AskPrompt prompt = ask_prompt(*model, *tok.text, doc.chunks, a.question, ao);
  Session session(model->language_model);
  if (prompt.n_positions >= session.n_ctx())
    fail(ErrorCode::ExceedsContext,
         "{}: the compressed document ({} vectors) and the question need {} positions, but the decoder holds "
         "{}",
         a.doc.empty() ? a.ctx : a.doc, doc.n_vectors(), prompt.n_positions, session.n_ctx());

  GenerationOptions go;
  go.max_new_tokens = a.n_predict;
  go.sampling = a.sampling;
  go.stop_tokens = prompt.stop_tokens;
  go.detokenize = [&](const TokenIds& out) { return tok.text->decode(out, /*skip_special=*/true); };
  GenerationResult r =
      generate(session, prompt.segments, go, a.json ? TokenCallback() : stream_to_stdout(tok.text.get()));
  if (a.json) {
    nlohmann::json j = {{"ids", r.ids},
                        {"text", r.text},
                        {"stop_reason", r.stop_reason},
                        {"n_context_tokens", doc.n_tokens()},
                        {"n_vectors", doc.n_vectors()},
                        {"n_prompt", r.n_prompt}};
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
      app.add_subcommand("ask", "Answer a question about a compressed document, streaming the answer.");
  cmd->footer(
      "The decoder reads the document as compressed vectors: from a .coctx file made by `coenc compress`\n"
      "(--ctx; refused if another model made it or it was changed), or compressed now (--doc, with a "
      "progress\n"
      "bar on stderr for long documents). When the decoder's tokenizer (text_tokenizer/) has a chat "
      "template, the\n"
      "user turn holds the compressed block and then the question; otherwise (or with --no-chat) the decoder "
      "reads\n"
      "exactly [BOC] vectors [EOC] followed by the question's tokens, as the seed project does.\n\n"
      "Examples:\n"
      "  coenc compress -m CKPT --doc report.txt -o report.coctx\n"
      "  coenc ask -m CKPT --ctx report.coctx \"Who signed the report?\"\n"
      "  coenc ask -m CKPT --doc report.txt -n 32 --temp 0 --json \"When was it written?\"\n"
      "--temp 0 is greedy (deterministic); otherwise --seed fixes the draw. --json prints {\"ids\": [...],\n"
      "\"text\": ..., \"stop_reason\": ..., \"n_context_tokens\": N, \"n_vectors\": K, \"n_prompt\": P} at "
      "the end.");
  cmd->add_option("--model,-m", a->model, "Co-Encoder checkpoint directory")->required();
  cmd->add_option("--doc,-d", a->doc,
                  "a document to compress and ask about, UTF-8 text (- for standard input)");
  cmd->add_option("--ctx", a->ctx, "a .coctx file made by `coenc compress` with the same model");
  cmd->add_option("question", a->question, "the question")->required();
  cmd->add_option("-n,--n-predict", a->n_predict, "maximum number of tokens to generate")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object at the end instead of streaming");
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar while compressing --doc");
  cmd->add_flag("--no-chat", a->no_chat,
                "the raw layout [BOC] vectors [EOC] question, even with a chat template");
  cmd->add_option("--chat-format", a->chat_format,
                  "chatml, llama3, llama2, mistral or gemma (default: recognised from the chat template)");
  cmd->add_option("--system", a->system, "system message (chat template only)");
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a] { return run_ask(*a); };
}

}  // namespace coenc::cli
