// coenc ask: answer a question about one or more documents that the decoder reads compressed (each from a
// .coctx file, or compressed on the fly), streaming the answer as it is produced.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/generate.h"
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
  int n_predict = 128;      // tokens to generate at most
  bool json = false;        // one JSON object at the end instead of streaming
  bool quiet = false;       // no progress bar while compressing --doc
  bool no_chat = false;     // the seed's raw layout even when the decoder has a chat template
  bool chat = false;        // the chat template even for a connector trained on the raw layout
  int64_t ratio = 0;        // > 0: compress --doc at this ratio (and expect it of --ctx files)
  std::string chat_format;  // chatml, llama3, ...; default: recognised from the template
  std::string system;       // a system message (chat only)
  SamplingOptions sampling;
  DeviceArgs device;
};

// A document on its way into the prompt: read (and for --doc tokenized) before the model loads, compressed or
// checked against the model after.
struct AskDocument {
  AskSource source;
  TokenIds ids;            // --doc: the context tokenizer's ids
  CompressedDocument doc;  // --ctx: read from the file; --doc: once compressed
  int64_t n_tokens = 0;
  int64_t n_vectors = 0;  // exact once compressed; before, for --doc, the fewest it can compress into
  bool exact = false;
};

std::string document_names(const std::vector<AskDocument>& docs) {
  std::string names;
  for (const auto& d : docs) names += (names.empty() ? "" : ", ") + d.source.path;
  return names;
}

// Several documents must fit the decoder together: 2 + k_d positions each, then the question and one answer
// token (`reserve`). One document alone was already checked on its own (with the advice to split it).
void check_documents_fit(const std::vector<AskDocument>& docs, const CoEncoderConfig& c, int64_t reserve) {
  if (docs.size() < 2) return;
  int64_t total = reserve;
  bool exact = true;
  std::string counts;
  for (const auto& d : docs) {
    total += 2 + d.n_vectors;
    exact = exact && d.exact;
    counts += (counts.empty() ? "" : " + ") + std::to_string(d.n_vectors);
  }
  const int64_t limit = c.text.max_position_embeddings;
  if (total > limit)
    fail(ErrorCode::ExceedsContext,
         "{}: the {} documents compress into {}{} vectors; with a [BOC] and an [EOC] row each and "
         "{} positions for the question and one answer token, they need {}{} positions, but the decoder "
         "reads at most {} (text_config.max_position_embeddings): ask about fewer or shorter documents",
         document_names(docs), docs.size(), exact ? "" : "at least ", counts, reserve,
         exact ? "" : "at least ", total, limit);
}

int run_ask(const AskArgs& a) {
  COENC_CHECK(!a.sources.empty(),
              "give at least one --doc (a document) or --ctx (a .coctx file); either may be repeated");
  COENC_CHECK(std::count_if(a.sources.begin(), a.sources.end(),
                            [](const AskSource& s) { return !s.coctx && s.path == "-"; }) <= 1,
              "--doc - (standard input) may be given only once");
  COENC_CHECK(!a.question.empty(), "the question is empty");
  COENC_CHECK(a.n_predict >= 0, "-n must be non-negative, got {}", a.n_predict);
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  // The layout (as ask_prompt decides it): --chat / --chat-format / --no-chat, else the checkpoint's
  // prompt_layout, else the chat template when there is one. A template we cannot follow is reported before the
  // documents are compressed.
  const bool has_template = !tok.text->chat_template().empty();
  COENC_CHECK(!a.chat || has_template || !a.chat_format.empty(),
              "--chat needs a chat template, and {} has none (give --chat-format)",
              (std::filesystem::path(a.model) / "text_tokenizer").string());
  const bool chat = a.chat || (!a.no_chat && (!a.chat_format.empty() ||
                                              (config.prompt_layout != "raw" && has_template)));
  if (chat) resolve_chat_format(*tok.text, a.chat_format);
  COENC_CHECK(a.system.empty() || chat,
              "--system needs the chat layout: {} (give --chat, or a decoder with a chat template)",
              a.no_chat                        ? "--no-chat was given"
              : config.prompt_layout == "raw" ? "this checkpoint was trained on the raw layout"
                                               : (std::filesystem::path(a.model) / "text_tokenizer").string() +
                                                     " has no chat template");
  // The question and at least one answer token must fit beside the compressed blocks.
  const int64_t reserve = static_cast<int64_t>(tok.text->encode(a.question).size()) + 1;

  // Everything that can be checked without the model is, before the (slow) load.
  std::vector<AskDocument> docs;
  for (const AskSource& s : a.sources) {
    AskDocument d;
    d.source = s;
    if (s.coctx) {
      d.doc = read_coctx(s.path);
      d.n_tokens = d.doc.n_tokens();
      d.n_vectors = d.doc.n_vectors();
      d.exact = true;
    } else {
      d.ids = read_document(s.path, *tok.context, config, reserve);
      d.n_tokens = static_cast<int64_t>(d.ids.size());
      d.n_vectors = min_vectors(config, d.n_tokens);
      d.exact = config.pooling != PoolingMode::Dynamic;
    }
    docs.push_back(std::move(d));
  }
  check_documents_fit(docs, config, reserve);

  CoEncoder model = load_co_encoder(a.model, parse_device_options(a.device.device, a.device.dtype));
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  std::vector<std::vector<torch::Tensor>> documents;
  for (AskDocument& d : docs) {
    if (d.source.coctx) {
      check_coctx_model(d.doc, *model, d.source.path);
    } else {
      d.doc = compress_with_progress(*model, d.ids, d.source.path, a.quiet || a.json, reserve);
      d.n_vectors = d.doc.n_vectors();
      d.exact = true;
    }
    documents.push_back(d.doc.chunks);
  }
  check_documents_fit(docs, config, reserve);

  AskOptions ao;
  ao.chat = !a.no_chat;
  ao.force_chat = a.chat;
  ao.chat_format = a.chat_format;
  ao.system = a.system;
  AskPrompt prompt = ask_prompt(*model, *tok.text, documents, a.question, ao);
  Session session(model->language_model);
  int64_t n_vectors = 0, n_tokens = 0;
  for (const auto& d : docs) {
    n_vectors += d.n_vectors;
    n_tokens += d.n_tokens;
  }
  if (prompt.n_positions >= session.n_ctx())
    fail(ErrorCode::ExceedsContext,
         "{}: the compressed {} ({} vectors) and the question need {} positions, but the decoder holds {}",
         document_names(docs), docs.size() == 1 ? "document" : "documents", n_vectors, prompt.n_positions,
         session.n_ctx());

  GenerationOptions go;
  go.max_new_tokens = a.n_predict;
  go.sampling = a.sampling;
  go.stop_tokens = prompt.stop_tokens;
  go.detokenize = [&](const TokenIds& out) { return tok.text->decode_bytes(out, /*skip_special=*/true); };
  GenerationResult r =
      generate(session, prompt.segments, go, a.json ? TokenCallback() : stream_to_stdout(tok.text.get()));
  if (a.json) {
    nlohmann::json per_doc = nlohmann::json::array();
    for (const auto& d : docs)
      per_doc.push_back({{"source", d.source.path},
                         {"from", d.source.coctx ? "ctx" : "doc"},
                         {"n_context_tokens", d.n_tokens},
                         {"n_chunks", d.doc.chunks.size()},
                         {"n_vectors", d.n_vectors}});
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
  cmd->add_option("-n,--n-predict", a->n_predict, "maximum number of tokens to generate")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object at the end instead of streaming");
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar while compressing --doc");
  auto* no_chat = cmd->add_flag("--no-chat", a->no_chat,
                                "the raw layout [BOC] vectors [EOC] ... question, even with a chat template");
  cmd->add_flag("--chat", a->chat, "the chat template's layout, even for a checkpoint trained on the raw one")
      ->excludes(no_chat);
  cmd->add_option("--chat-format", a->chat_format,
                  "chatml, llama3, llama2, mistral or gemma (default: recognised from the chat template)");
  cmd->add_option("--system", a->system, "system message (chat template only)");
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
