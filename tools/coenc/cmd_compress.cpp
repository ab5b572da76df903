// coenc compress: a document -> a .coctx file of compressed vectors, to ask questions about later (coenc ask
// --ctx).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct CompressArgs {
  std::string model;   // Co-Encoder checkpoint directory
  std::string doc;     // the document, plain text ("-": standard input)
  std::string output;  // the .coctx file to write
  bool quiet = false;  // no progress bar, no summary
  int64_t ratio = 0;   // > 0: compress at this many tokens per vector instead of the checkpoint's ratio
  std::string format;    // --export: npy, hf or vllm instead of .coctx
  std::string question;  // --question: export the whole decoder input of this question, not the block alone
  int n_predict = 64;    // max_tokens of the vLLM request
  DeviceArgs device;
};

int run_compress(const CompressArgs& a) {
  // Everything that can fail on user input is checked before the (slow) model load.
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  COENC_CHECK(!a.format.empty() || a.question.empty(), "--question is for --export (the rows of the whole prompt)");
  const ExportFormat format = a.format.empty() ? ExportFormat::Npy : parse_export_format(a.format);
  DocumentSource source;
  source.name = a.doc;
  source.text = read_text_input(a.doc, "document");
  std::vector<PreparedDocument> docs = prepare_documents({source}, config, *tok.context, 0);

  const auto start = std::chrono::steady_clock::now();
  CoEncoder model = load_co_encoder(a.model, device_options(a.device));
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  compress_documents(*model, docs, 0, !a.quiet);
  const CompressedDocument& doc = docs[0].doc;
  if (!a.format.empty()) {
    // The decoder input: [BOC] v [EOC], or with --question everything `coenc ask` would feed the decoder.
    const std::vector<Segment> segments =
        a.question.empty() ? std::vector<Segment>{Segment::embeddings(model->context_block(doc.chunks))}
                           : ask_prompt(*model, *tok.text, doc.chunks, a.question).segments;
    const torch::Tensor rows = prompt_rows(*model, segments);
    export_rows(rows, format, a.output, std::filesystem::path(a.model).filename().string(), a.n_predict);
    if (!a.quiet)
      std::cerr << "coenc: " << a.doc << ": " << doc.n_tokens() << " tokens -> " << rows.size(0) << " decoder rows of "
                << rows.size(1) << "; wrote " << a.output << " (" << a.format << ")\n";
    return 0;
  }
  write_coctx(a.output, doc);
  if (!a.quiet) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char line[512];
    std::snprintf(
        line, sizeof line,
        "coenc: %s: %lld tokens in %zu chunks -> %lld vectors (%.2f tokens per vector) in %.2f s; wrote %s "
        "(%lld bytes)\n",
        a.doc.c_str(), static_cast<long long>(doc.n_tokens()), doc.chunks.size(),
        static_cast<long long>(doc.n_vectors()),
        static_cast<double>(doc.n_tokens()) / static_cast<double>(doc.n_vectors()), s, a.output.c_str(),
        static_cast<long long>(std::filesystem::file_size(a.output)));
    std::cerr << line;
  }
  return 0;
}

}  // namespace

CommandFn setup_compress(CLI::App& app) {
  auto a = std::make_shared<CompressArgs>();
  auto* cmd =
      app.add_subcommand("compress", "Compress a document into a .coctx file of vectors for `coenc ask`.");
  cmd->footer(
      "The checkpoint's context tower reads the document (plain UTF-8 text) in chunks of chunk_size tokens "
      "and its\n"
      "connector pools each chunk into vectors in the decoder's embedding space. The .coctx file holds "
      "those\n"
      "vectors and what made them (the model's fingerprint, chunk hashes, token counts, ratio): `coenc ask "
      "--ctx`\n"
      "refuses a file made by another model or changed since it was written (docs/co_encoder.md).\n"
      "The document is tokenized with the checkpoint's context_tokenizer/. A progress bar (chunks, tokens/s, "
      "ETA)\n"
      "shows on stderr for documents of several chunks.\n\n"
      "Examples:\n"
      "  coenc compress -m CKPT --doc report.txt -o report.coctx\n"
      "  coenc ask -m CKPT --ctx report.coctx \"Who signed the report?\"\n"
      "  cat notes.txt | coenc compress -m CKPT --doc - -o notes.coctx --quiet --device cuda\n"
      "  coenc compress -m CKPT --doc report.txt --export vllm --question \"Who signed it?\" -o request.json\n\n"
      "--export writes the decoder input for other engines instead of a .coctx: the rows [BOC] v [EOC]\n"
      "(with --question, the whole prompt `coenc ask` would feed the decoder), float32 [n, d_model]:\n"
      "npy (NumPy), hf (safetensors {\"inputs_embeds\": [1, n, d]} for transformers' generate), or vllm\n"
      "(a /v1/completions request body whose prompt_embeds is base64 of torch.save(rows); docs/server.md).");
  cmd->add_option("--model,-m", a->model,
                  "Co-Encoder checkpoint directory (config.json, model.safetensors, "
                  "context_tokenizer/, text_tokenizer/)")
      ->required();
  cmd->add_option("--doc,-d", a->doc, "the document to compress, UTF-8 text (- for standard input)")
      ->required();
  cmd->add_option("--output,-o", a->output, "the .coctx file to write (with --export: the exported file)")->required();
  cmd->add_option("--export", a->format, "npy, hf or vllm: write the decoder input rows instead of a .coctx");
  cmd->add_option("--question", a->question, "with --export: the rows of the whole prompt for this question");
  cmd->add_option("-n,--n-predict", a->n_predict, "with --export vllm: the request's max_tokens")
      ->check(non_negative())
      ->capture_default_str();
  add_ratio_option(*cmd, a->ratio);
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar and no summary line");
  add_device_options(*cmd, a->device);
  return [a] { return run_compress(*a); };
}

}  // namespace coenc::cli
