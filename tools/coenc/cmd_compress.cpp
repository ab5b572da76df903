// coenc compress: a document -> a .coctx file of compressed vectors, to ask questions about later (coenc ask
// --ctx); or a library of documents (several --doc, folders, --corpus files) -> one .coctx each, batched across
// documents, resumable, on one or several GPUs (--nproc).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/train.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct CompressArgs {
  std::string model;              // Co-Encoder checkpoint directory
  std::vector<std::string> docs;  // documents, plain text ("-": standard input), or folders of them
  std::vector<std::string> corpora;  // --corpus: files of many documents
  std::string output;  // the .coctx file to write (bulk: the folder)
  int64_t batch = 0;   // chunks a forward pass (0: 8 on the CPU, 64 on CUDA)
  int nproc = 1;       // bulk: processes, one a GPU with --device cuda
  int threads = 0;     // bulk: tokenizer / writer threads (0: half the cores, at most 8)
  bool force = false;  // bulk: compress up-to-date documents too
  bool json = false;   // bulk: the summary as one JSON object on stdout
  bool quiet = false;  // no progress bar, no summary
  int64_t ratio = 0;   // > 0: compress at this many tokens per vector instead of the checkpoint's ratio
  std::string format;    // --export: npy, hf or vllm instead of .coctx
  std::string question;  // --question: export the whole decoder input of this question, not the block alone
  int n_predict = 64;    // max_tokens of the vLLM request
  DeviceArgs device;
};

bool is_bulk(const CompressArgs& a) {
  std::error_code ec;
  return a.docs.size() != 1 || !a.corpora.empty() || std::filesystem::is_directory(a.docs[0], ec);
}

// Many documents, one .coctx each in the folder a.output. With --nproc each process (RANK of WORLD_SIZE, from
// launch_data_parallel) takes every WORLD_SIZE-th document, on GPU LOCAL_RANK when the device is CUDA.
int run_bulk(const CompressArgs& a) {
  COENC_CHECK(a.format.empty() && a.question.empty(), "--export and --question take one document, not a library");
  COENC_CHECK(std::find(a.docs.begin(), a.docs.end(), "-") == a.docs.end(),
              "--doc - (standard input) takes one document, not a library");
  std::error_code ec;
  COENC_CHECK(!std::filesystem::exists(a.output, ec) || std::filesystem::is_directory(a.output, ec),
              "{}: several documents are written into a folder, and this is a file", a.output);
  if (a.nproc > 1) return launch_data_parallel(a.nproc, command_line_without_nproc());
  const char* rank_env = std::getenv("RANK");
  const char* world_env = std::getenv("WORLD_SIZE");
  const int64_t rank = rank_env ? std::atoll(rank_env) : 0, world = world_env ? std::atoll(world_env) : 1;

  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  std::vector<BulkDocument> all = bulk_documents(a.docs, a.corpora, a.output), mine;
  for (size_t i = 0; i < all.size(); ++i)
    if (static_cast<int64_t>(i) % world == rank) mine.push_back(std::move(all[i]));

  DeviceArgs device = a.device;
  const char* local_rank = std::getenv("LOCAL_RANK");
  if (world > 1 && device.device == "cuda")
    device.device = "cuda:" + (local_rank ? std::string(local_rank) : std::to_string(rank));
  DeviceOptions options = device_options(device);
  CoEncoder model = load_co_encoder(a.model, options);
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  BulkOptions bo;
  bo.n_batch = a.batch > 0 ? a.batch : (options.device.is_cuda() ? 64 : 8);
  bo.force = a.force;
  bo.threads = a.threads;
  bo.progress = !a.quiet && !a.json && rank == 0;
  const BulkResult r = compress_bulk(*model, *tok.context, mine, bo);
  const double tps = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0;
  if (a.json) {
    std::cout << nlohmann::json{{"rank", rank},          {"world_size", world},     {"documents", r.documents},
                                {"skipped", r.skipped},  {"tokens", r.tokens},      {"chunks", r.chunks},
                                {"vectors", r.vectors},  {"seconds", r.seconds},    {"tokens_per_s", tps},
                                {"model_seconds", r.model_seconds},
                                {"tokenize_wait_seconds", r.tokenize_wait_seconds},
                                {"write_wait_seconds", r.write_wait_seconds},
                                {"batch", bo.n_batch},   {"threads", r.threads},    {"output", a.output}}
                     .dump()
              << "\n";
  } else if (!a.quiet) {
    std::cerr << format("coenc: {}{} documents compressed ({} up to date, skipped): {} tokens -> {} vectors in {} s "
                        "({} tokens/s); wrote {}\n",
                        world > 1 ? format("[rank {} of {}] ", rank, world) : std::string(), r.documents, r.skipped,
                        r.tokens, r.vectors, static_cast<int64_t>(r.seconds * 100) / 100.0,
                        static_cast<int64_t>(tps), a.output);
  }
  return 0;
}

int run_compress(const CompressArgs& a) {
  if (is_bulk(a)) return run_bulk(a);
  COENC_CHECK(a.nproc == 1 && a.threads == 0 && !a.force && !a.json,
              "--nproc, --threads, --force and --json are for compressing a library "
              "(several --doc, a folder or --corpus)");
  // Everything that can fail on user input is checked before the (slow) model load.
  CoEncoderConfig config = CoEncoderConfig::load(a.model);
  apply_ratio(config, a.ratio);
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(a.model, config);
  COENC_CHECK(!a.format.empty() || a.question.empty(), "--question is for --export (the rows of the whole prompt)");
  const ExportFormat format = a.format.empty() ? ExportFormat::Npy : parse_export_format(a.format);
  const std::string& path = a.docs[0];
  DocumentSource source;
  source.name = path;
  source.text = read_text_input(path, "document");
  std::vector<PreparedDocument> docs = prepare_documents({source}, config, *tok.context, 0);

  const auto start = std::chrono::steady_clock::now();
  CoEncoder model = load_co_encoder(a.model, device_options(a.device));
  if (a.ratio > 0) model->set_compression_ratio(a.ratio);
  compress_documents(*model, docs, 0, !a.quiet, a.batch > 0 ? a.batch : 8);
  const CompressedDocument& doc = docs[0].doc;
  if (!a.format.empty()) {
    // The decoder input: [BOC] v [EOC], or with --question everything `coenc ask` would feed the decoder.
    const std::vector<Segment> segments =
        a.question.empty() ? std::vector<Segment>{Segment::embeddings(model->context_block(doc.chunks))}
                           : ask_prompt(*model, *tok.text, doc.chunks, a.question).segments;
    const torch::Tensor rows = prompt_rows(*model, segments);
    export_rows(rows, format, a.output, std::filesystem::path(a.model).filename().string(), a.n_predict);
    if (!a.quiet)
      std::cerr << "coenc: " << path << ": " << doc.n_tokens() << " tokens -> " << rows.size(0) << " decoder rows of "
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
        path.c_str(), static_cast<long long>(doc.n_tokens()), doc.chunks.size(),
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
      app.add_subcommand("compress", "Compress a document (or a library of them) into .coctx files of vectors.");
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
      "  coenc compress -m CKPT --doc report.txt --export vllm --question \"Who signed it?\" -o request.json\n"
      "  coenc compress -m CKPT --doc library/ --corpus wiki-00.txt.xz -o coctx/ --device cuda --nproc 4\n\n"
      "A library: several --doc, a folder (every .txt and .md file below it) or --corpus FILE (a .txt with\n"
      "\"\\n\\n<|doc|>\\n\" between documents, or .jsonl with a \"text\" field; .xz too) compress into the folder -o,\n"
      "one .coctx a document: OUT/NAME.coctx for a file, OUT/RELATIVE/NAME.coctx below a folder,\n"
      "OUT/CORPUS-000001.coctx ... for a corpus. Chunks of different documents share the tower's batches\n"
      "(--batch), a progress bar counts documents, and a rerun skips every document whose .coctx this model\n"
      "already made from the same text (--force: all again), so an interrupted run resumes. --nproc N starts\n"
      "N processes, each taking every N-th document (on its own GPU with --device cuda). --json prints\n"
      "{\"rank\", \"world_size\", \"documents\", \"skipped\", \"tokens\", \"chunks\", \"vectors\", \"seconds\",\n"
      "\"tokens_per_s\", \"model_seconds\", \"tokenize_wait_seconds\", \"write_wait_seconds\", \"batch\",\n"
      "\"threads\", \"output\"}\n"
      "per process: of \"seconds\", the model step (batching, queueing the tower and the copies of its vectors to\n"
      "the host) and the time spent waiting for the tokenizer and writer threads (which run beside it; a writer\n"
      "waits for its group's vectors, then describes and writes them): what bounds the run.\n\n"
      "--export writes the decoder input for other engines instead of a .coctx: the rows [BOC] v [EOC]\n"
      "(with --question, the whole prompt `coenc ask` would feed the decoder), float32 [n, d_model]:\n"
      "npy (NumPy), hf (safetensors {\"inputs_embeds\": [1, n, d]} for transformers' generate), or vllm\n"
      "(a /v1/completions request body whose prompt_embeds is base64 of torch.save(rows); docs/server.md).");
  cmd->add_option("--model,-m", a->model,
                  "Co-Encoder checkpoint directory (config.json, model.safetensors, "
                  "context_tokenizer/, text_tokenizer/)")
      ->required();
  cmd->add_option("--doc,-d", a->docs,
                  "the document to compress, UTF-8 text (- for standard input); repeatable, or a folder of them")
      ->allow_extra_args(false);
  cmd->add_option("--corpus", a->corpora, "a file of many documents (.txt / .jsonl, optionally .xz); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--output,-o", a->output,
                  "the .coctx file to write (with --export: the exported file; a library: the folder)")
      ->required();
  cmd->add_option("--batch", a->batch, "chunks a forward pass of the tower (default: 8 on the CPU, 64 on CUDA)")
      ->check(positive());
  cmd->add_option("--nproc", a->nproc, "a library: this many processes, each on its own GPU with --device cuda")
      ->check(positive());
  cmd->add_option("--threads", a->threads,
                  "a library: threads tokenizing the next documents, and writing each finished group (default: half "
                  "the cores, at most 8)")
      ->check(positive());
  cmd->add_flag("--force", a->force, "a library: compress documents whose .coctx is up to date too");
  cmd->add_flag("--json", a->json, "a library: the summary as one JSON object (per process) on stdout");
  cmd->add_option("--export", a->format, "npy, hf or vllm: write the decoder input rows instead of a .coctx");
  cmd->add_option("--question", a->question, "with --export: the rows of the whole prompt for this question");
  cmd->add_option("-n,--n-predict", a->n_predict, "with --export vllm: the request's max_tokens")
      ->check(non_negative())
      ->capture_default_str();
  add_ratio_option(*cmd, a->ratio);
  cmd->add_flag("--quiet,-q", a->quiet, "no progress bar and no summary line");
  add_device_options(*cmd, a->device);
  return [a] {
    COENC_CHECK(!a->docs.empty() || !a->corpora.empty(), "give a document to compress (--doc) or a corpus (--corpus)");
    return run_compress(*a);
  };
}

}  // namespace coenc::cli
