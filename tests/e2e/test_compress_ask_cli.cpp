// `coenc compress` and `coenc ask` run as a user runs them, on a tiny random Co-Encoder checkpoint with the
// trained test tokenizer in context_tokenizer/ and text_tokenizer/: compress -> .coctx -> ask gives what `ask
// --doc` and an in-process computation give, with the chat template and with the seed's raw layout; several
// documents in one prompt (--ctx / --doc repeated, mixed); learned BOC/EOC rows; damaged and foreign .coctx
// files and bad input end in one clear line and a non-zero exit.
#include <cstdlib>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/session.h"
#include "coenc/tokenizer.h"
#include "serve/api.h"
#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class CompressAskCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    make_tiny_co_encoder(chat(), 5, true);
    make_tiny_co_encoder(raw(), 5, false);  // the same weights, no chat template
    make_tiny_co_encoder(foreign(), 6, true);
    make_tiny_co_encoder(learned(), 5, true, /*learned=*/true);  // the same tower and connector as chat()
    write_file(doc(), sample_document_text(120));
    write_file(doc2(), sample_document_text(45).substr(40));
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path chat() { return dir_->path() / "chat"; }
  static fs::path raw() { return dir_->path() / "raw"; }
  static fs::path foreign() { return dir_->path() / "foreign"; }
  static fs::path learned() { return dir_->path() / "learned"; }
  static fs::path doc() { return dir_->path() / "doc.txt"; }
  static fs::path doc2() { return dir_->path() / "doc2.txt"; }
  static std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

  // What `ask --temp 0` must answer, computed in this process: compress each of `docs`, lay out, greedy
  // decoding. `n_prompt` receives the prompt's positions.
  static TokenIds greedy_answer(const fs::path& ckpt, const std::string& question, int n, int64_t* n_prompt,
                                const std::vector<fs::path>& docs = {doc()}) {
    CoEncoder m = load_co_encoder(ckpt, DeviceOptions{});
    CoEncoderTokenizers tok = load_co_encoder_tokenizers(ckpt, m->config());
    EncodeOptions eo;
    eo.parse_special = false;
    std::vector<std::vector<torch::Tensor>> documents;
    for (const auto& d : docs) documents.push_back(m->compress(tok.context->encode(read_file(d), eo)));
    AskPrompt p = ask_prompt(*m, *tok.text, documents, question);
    *n_prompt = p.n_positions;
    Session s(m->language_model);
    torch::Tensor logits = s.prefill(p.segments);
    TokenIds out;
    for (int i = 0; i < n; ++i) {
      const TokenId next = static_cast<TokenId>(logits.argmax().item<int64_t>());
      if (std::find(p.stop_tokens.begin(), p.stop_tokens.end(), next) != p.stop_tokens.end()) break;
      out.push_back(next);
      logits = s.decode(next);
    }
    return out;
  }

  static TempDir* dir_;
};
TempDir* CompressAskCli::dir_ = nullptr;

TEST_F(CompressAskCli, CompressThenAskEqualsAskDocEqualsInProcess) {
  for (const fs::path& ckpt : {chat(), raw()}) {
    SCOPED_TRACE(ckpt.string());
    TempDir d;
    RunResult c = run_coenc("compress -m " + q(ckpt) + " --doc " + q(doc()) + " -o " + q(d / "doc.coctx"));
    ASSERT_EQ(c.exit_code, 0) << c.err;
    const CompressedDocument file = read_coctx(d / "doc.coctx");
    const int64_t n_chunks = static_cast<int64_t>(file.chunks.size());
    ASSERT_GE(n_chunks, 3);  // long enough for the progress bar
    EXPECT_NE(c.err.find(format("{}/{} chunks", n_chunks, n_chunks)), std::string::npos) << c.err;
    EXPECT_NE(c.err.find("tok/s"), std::string::npos) << c.err;
    EXPECT_NE(c.err.find(format("{} tokens in {} chunks -> {} vectors", file.n_tokens(), n_chunks,
                                file.n_vectors())),
              std::string::npos)
        << c.err;
    EXPECT_EQ(file.source, "doc.txt");

    const std::string question = "Where was the bridge built?";
    RunResult by_ctx = run_coenc("ask -m " + q(ckpt) + " --ctx " + q(d / "doc.coctx") +
                                 " --temp 0 -n 12 --json '" + question + "'");
    ASSERT_EQ(by_ctx.exit_code, 0) << by_ctx.err;
    RunResult by_doc =
        run_coenc("ask -m " + q(ckpt) + " --doc " + q(doc()) + " --temp 0 -n 12 --json '" + question + "'");
    ASSERT_EQ(by_doc.exit_code, 0) << by_doc.err;
    json a = json::parse(by_ctx.out), b = json::parse(by_doc.out);
    EXPECT_EQ(a["ids"], b["ids"]);
    EXPECT_EQ(a["text"], b["text"]);
    EXPECT_EQ(a["n_context_tokens"], file.n_tokens());
    EXPECT_EQ(a["n_vectors"], file.n_vectors());
    EXPECT_EQ(b["n_vectors"], file.n_vectors());
    int64_t n_prompt = 0;
    const TokenIds expected = greedy_answer(ckpt, question, 12, &n_prompt);
    EXPECT_EQ(a["ids"].get<TokenIds>(), expected);
    EXPECT_EQ(a["n_prompt"], n_prompt);
    EXPECT_EQ(a["stop_reason"], expected.size() == 12 ? "length" : "stop_token");
  }
}

TEST_F(CompressAskCli, ChatTemplateOrTheSeedsRawLayout) {
  // 2 + vectors, then the question's tokens, and nothing else; the chat template adds its turn markup.
  TempDir d;
  ASSERT_EQ(
      run_coenc("compress -q -m " + q(raw()) + " --doc " + q(doc()) + " -o " + q(d / "x.coctx")).exit_code,
      0);
  const CompressedDocument file = read_coctx(d / "x.coctx");
  auto tok = Tokenizer::load((raw() / "text_tokenizer").string());
  const int64_t n_question = static_cast<int64_t>(tok->encode("Why?").size());
  RunResult r = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "x.coctx") + " --temp 0 -n 2 --json Why?");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["n_prompt"], 2 + file.n_vectors() + n_question);
  // The checkpoints share their tower and connector, so the file serves both.
  RunResult c =
      run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "x.coctx") + " --temp 0 -n 2 --json Why?");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const int64_t markup =
      static_cast<int64_t>(tok->encode("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n").size());
  EXPECT_EQ(json::parse(c.out)["n_prompt"], 2 + file.n_vectors() + n_question + markup);
  RunResult forced = run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "x.coctx") +
                               " --no-chat --temp 0 -n 2 --json Why?");
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(json::parse(forced.out)["ids"], json::parse(r.out)["ids"]);
}

TEST_F(CompressAskCli, StreamedTextEqualsJsonText) {
  const std::string args = "ask -m " + q(chat()) + " --doc " + q(doc()) + " --temp 0 -n 10 ";
  RunResult streamed = run_coenc(args + "-q 'What happened?'");
  RunResult js = run_coenc(args + "--json 'What happened?'");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  ASSERT_EQ(js.exit_code, 0) << js.err;
  EXPECT_EQ(streamed.out, json::parse(js.out)["text"].get<std::string>() + "\n");
  EXPECT_NE(streamed.err.find("tokens generated"), std::string::npos) << streamed.err;
  EXPECT_EQ(streamed.err.find("compressing"), std::string::npos) << streamed.err;  // -q: no progress bar
}

TEST_F(CompressAskCli, SeededSamplingIsRepeatable) {
  const std::string args =
      "ask -m " + q(chat()) + " --doc " + q(doc()) + " --temp 1.1 --seed 3 -n 12 --json hello";
  RunResult a = run_coenc(args), b = run_coenc(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["ids"], json::parse(b.out)["ids"]);
}

// ---- several documents, learned markers
// ------------------------------------------------------------------------------

TEST_F(CompressAskCli, SeveralDocumentsInOnePrompt) {
  TempDir d;
  for (const auto& [text, out] : {std::pair{doc(), d / "a.coctx"}, std::pair{doc2(), d / "b.coctx"}})
    ASSERT_EQ(run_coenc("compress -q -m " + q(raw()) + " --doc " + q(text) + " -o " + q(out)).exit_code, 0);
  const CompressedDocument a = read_coctx(d / "a.coctx"), b = read_coctx(d / "b.coctx");
  auto tok = Tokenizer::load((raw() / "text_tokenizer").string());
  const int64_t n_question = static_cast<int64_t>(tok->encode("Why?").size());

  // Raw layout: [BOC] a [EOC] [BOC] b [EOC] question, and the JSON counts add up.
  RunResult r = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "a.coctx") + " --ctx " + q(d / "b.coctx") +
                          " --temp 0 -n 6 --json Why?");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["n_prompt"], (2 + a.n_vectors()) + (2 + b.n_vectors()) + n_question);
  EXPECT_EQ(j["n_vectors"], a.n_vectors() + b.n_vectors());
  EXPECT_EQ(j["n_context_tokens"], a.n_tokens() + b.n_tokens());
  ASSERT_EQ(j["documents"].size(), 2u);
  EXPECT_EQ(j["documents"][0]["source"], (d / "a.coctx").string());
  EXPECT_EQ(j["documents"][0]["from"], "ctx");
  EXPECT_EQ(j["documents"][0]["n_vectors"], a.n_vectors());
  EXPECT_EQ(j["documents"][0]["n_chunks"], a.chunks.size());
  EXPECT_EQ(j["documents"][1]["n_context_tokens"], b.n_tokens());
  EXPECT_EQ(j["documents"][1]["n_vectors"], b.n_vectors());
  int64_t n_prompt = 0;
  EXPECT_EQ(j["ids"].get<TokenIds>(), greedy_answer(raw(), "Why?", 6, &n_prompt, {doc(), doc2()}));
  EXPECT_EQ(j["n_prompt"], n_prompt);

  // Mixed, in the order given: --doc b, --ctx a, with the chat template; equals compressing both here.
  RunResult mixed = run_coenc("ask -m " + q(chat()) + " --doc " + q(doc2()) + " --ctx " + q(d / "a.coctx") +
                              " --temp 0 -n 8 --json 'What was built?'");
  ASSERT_EQ(mixed.exit_code, 0) << mixed.err;
  json m = json::parse(mixed.out);
  ASSERT_EQ(m["documents"].size(), 2u);
  EXPECT_EQ(m["documents"][0]["from"], "doc");
  EXPECT_EQ(m["documents"][0]["source"], doc2().string());
  EXPECT_EQ(m["documents"][0]["n_vectors"], b.n_vectors());
  EXPECT_EQ(m["documents"][1]["from"], "ctx");
  EXPECT_EQ(m["ids"].get<TokenIds>(), greedy_answer(chat(), "What was built?", 8, &n_prompt, {doc2(), doc()}));
  EXPECT_EQ(m["n_prompt"], n_prompt);

  // One file twice, a document between: three blocks, in that order.
  RunResult three = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "b.coctx") + " --doc " + q(doc()) +
                              " --ctx " + q(d / "b.coctx") + " --temp 0 -n 2 --json Why?");
  ASSERT_EQ(three.exit_code, 0) << three.err;
  json t = json::parse(three.out);
  ASSERT_EQ(t["documents"].size(), 3u);
  EXPECT_EQ(t["documents"][0]["from"], "ctx");
  EXPECT_EQ(t["documents"][1]["from"], "doc");
  EXPECT_EQ(t["documents"][2]["from"], "ctx");
  EXPECT_EQ(t["n_prompt"], (2 + b.n_vectors()) * 2 + (2 + a.n_vectors()) + n_question);
}

TEST_F(CompressAskCli, SeveralDocumentsTooLongTogether) {
  // Each fits the decoder's 256 positions alone; two do not (one file twice neither).
  TempDir d;
  write_file(d / "x.txt", sample_document_text(240));  // 633 tokens: 159 vectors
  write_file(d / "y.txt", sample_document_text(230));  // 606 tokens: 152 vectors
  ASSERT_EQ(
      run_coenc("compress -q -m " + q(raw()) + " --doc " + q(d / "x.txt") + " -o " + q(d / "x.coctx")).exit_code,
      0);
  const int64_t k = read_coctx(d / "x.coctx").n_vectors();
  ASSERT_GT(2 * k + 4, 256);
  ASSERT_EQ(run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "x.coctx") + " -n 1 hi").exit_code, 0);
  RunResult files = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "x.coctx") + " --ctx " + q(d / "x.coctx") +
                              " hi");
  expect_one_line_error(files, (d / "x.coctx").string() + ", " + (d / "x.coctx").string() +
                                   format(": the 2 documents compress into {} + {} vectors", k, k));
  EXPECT_NE(files.err.find("but the decoder reads at most 256 (text_config.max_position_embeddings): ask about "
                           "fewer or shorter documents"),
            std::string::npos)
      << files.err;
  // Text documents are refused before anything is compressed (mean pooling: the count is known).
  RunResult docs = run_coenc("ask -m " + q(raw()) + " --doc " + q(d / "x.txt") + " --doc " + q(d / "y.txt") + " hi");
  expect_one_line_error(docs, (d / "x.txt").string() + ", " + (d / "y.txt").string() + ": the 2 documents");
  EXPECT_EQ(docs.err.find("compressing"), std::string::npos) << docs.err;
  // Mixed.
  expect_one_line_error(
      run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "x.coctx") + " --doc " + q(d / "y.txt") + " hi"),
      "x.coctx, " + (d / "y.txt").string() + ": the 2 documents");
}

TEST_F(CompressAskCli, LearnedMarkersReadTheSameFiles) {
  // learned() has chat()'s tower and connector: the same fingerprint, so the .coctx file serves both; the
  // answer is the in-process one with the learned rows.
  TempDir d;
  ASSERT_EQ(
      run_coenc("compress -q -m " + q(chat()) + " --doc " + q(doc()) + " -o " + q(d / "a.coctx")).exit_code, 0);
  RunResult r = run_coenc("ask -m " + q(learned()) + " --ctx " + q(d / "a.coctx") + " --temp 0 -n 10 --json Why?");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int64_t n_prompt = 0;
  const TokenIds expected = greedy_answer(learned(), "Why?", 10, &n_prompt);
  EXPECT_EQ(json::parse(r.out)["ids"].get<TokenIds>(), expected);
  EXPECT_EQ(json::parse(r.out)["n_prompt"], n_prompt);
  RunResult by_doc = run_coenc("ask -m " + q(learned()) + " --doc " + q(doc()) + " --temp 0 -n 10 --json Why?");
  ASSERT_EQ(by_doc.exit_code, 0) << by_doc.err;
  EXPECT_EQ(json::parse(by_doc.out)["ids"], json::parse(r.out)["ids"]);
}

// ---- refused files and bad input
// --------------------------------------------------------------------------------

TEST_F(CompressAskCli, TamperedAndForeignFilesAreRefused) {
  TempDir d;
  ASSERT_EQ(
      run_coenc("compress -q -m " + q(chat()) + " --doc " + q(doc()) + " -o " + q(d / "a.coctx")).exit_code,
      0);
  std::string bytes = read_file(d / "a.coctx");
  bytes[bytes.size() - 6] ^= 0x01;
  write_file(d / "tampered.coctx", bytes);
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "tampered.coctx") + " hi"),
                        "tampered.coctx: damaged .coctx file: checksum mismatch");
  // Made by another checkpoint: refused by this one, accepted by its own.
  ASSERT_EQ(run_coenc("compress -q -m " + q(foreign()) + " --doc " + q(doc()) + " -o " + q(d / "f.coctx"))
                .exit_code,
            0);
  RunResult foreign_file = run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "f.coctx") + " hi");
  expect_one_line_error(foreign_file, "f.coctx: compressed by another model");
  EXPECT_EQ(foreign_file.exit_code, 7);  // model mismatch (docs/cli.md, exit codes)
  EXPECT_EQ(run_coenc("ask -m " + q(foreign()) + " --ctx " + q(d / "f.coctx") + " -n 2 hi").exit_code, 0);
  write_file(d / "notes.coctx", "just some text");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "notes.coctx") + " hi"),
                        "notes.coctx");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "nope.coctx") + " hi"),
                        "nope.coctx");
}

TEST_F(CompressAskCli, BadDocuments) {
  TempDir d;
  write_file(d / "empty.txt", "");
  expect_one_line_error(
      run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "empty.txt") + " -o " + q(d / "e.coctx")),
      "empty.txt: the document is empty (expected text to compress)");
  EXPECT_FALSE(fs::exists(d / "e.coctx"));
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(d / "empty.txt") + " hi"),
                        "empty.txt: the document is empty");
  expect_one_line_error(
      run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "missing.txt") + " -o " + q(d / "e.coctx")),
      "missing.txt: document not found");
  write_file(d / "binary.bin", std::string("ELF\x01\x00\x00\xff\xfe", 8));
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(d / "binary.bin") + " hi"),
                        "binary.bin: not a text document (byte 4 is a NUL; expected UTF-8 text to compress)");
  write_file(d / "latin1.txt", "caf\xe9 au lait");
  expect_one_line_error(
      run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "latin1.txt") + " -o " + q(d / "x.coctx")),
      "latin1.txt: not a text document (byte 3 is not valid UTF-8");
  // Far more text than the decoder's 256 positions hold, compressed 4:1.
  write_file(d / "long.txt", sample_document_text(3000));
  expect_one_line_error(
      run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "long.txt") + " -o " + q(d / "l.coctx")),
      "long.txt: ");
  RunResult r = run_coenc("ask -m " + q(chat()) + " --doc " + q(d / "long.txt") + " hi");
  expect_one_line_error(r,
                        "but the decoder reads at most 256 positions (text_config.max_position_embeddings, ");
}

// A library: a folder (with a subfolder), two more --doc and a corpus file, one .coctx each, chunks batched across
// documents (--batch 3 mixes them), every file what compressing its document alone gives; a rerun skips what is up
// to date, recompresses a changed document and a damaged file; --nproc 2 writes the same files; bad libraries end
// in one line.
TEST_F(CompressAskCli, CompressesALibraryResumablyAndAsOneByOne) {
  TempDir d;
  fs::create_directories(d / "lib" / "sub");
  write_file(d / "lib" / "a.txt", sample_document_text(70));
  write_file(d / "lib" / "sub" / "b.md", sample_document_text(15).substr(9));
  write_file(d / "lib" / "skip.bin", "not a document kind that folders give");
  write_file(d / "corpus.txt", sample_document_text(30) + "\n\n<|doc|>\n" + sample_document_text(90).substr(33) +
                                   "\n\n<|doc|>\n" + sample_document_text(5));
  const std::string base = "compress -m " + q(chat()) + " --doc " + q(d / "lib") + " --doc " + q(doc()) +
                           " --corpus " + q(d / "corpus.txt") + " --batch 3 ";
  const std::vector<std::pair<fs::path, fs::path>> expected = {
      {d / "lib" / "a.txt", "a.coctx"},           {d / "lib" / "sub" / "b.md", "sub/b.coctx"},
      {doc(), "doc.coctx"},                       {"", "corpus-000001.coctx"},
      {"", "corpus-000002.coctx"},                {"", "corpus-000003.coctx"}};
  RunResult r = run_coenc(base + "-o " + q(d / "out") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["documents"], 6);
  EXPECT_EQ(j["skipped"], 0);
  EXPECT_EQ(j["batch"], 3);
  EXPECT_GE(j["threads"].get<int>(), 1);  // the default: half the cores, at most 8
  EXPECT_LE(j["threads"].get<int>(), 8);
  EXPECT_FALSE(fs::exists(d / "out" / "skip.coctx"));
  // Where the time went (the model, waiting for tokenizers or writers: parts of the whole), and every file renamed
  // into place, no temporary one left.
  EXPECT_GT(j["model_seconds"].get<double>(), 0.0);
  EXPECT_LE(j["model_seconds"].get<double>() + j["tokenize_wait_seconds"].get<double>() +
                j["write_wait_seconds"].get<double>(),
            j["seconds"].get<double>() + 1e-6);
  for (const auto& e : fs::recursive_directory_iterator(d / "out"))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();

  // Each file equals compressing its document alone (the corpus documents written out one by one).
  const std::vector<std::string> corpus_docs = {sample_document_text(30), sample_document_text(90).substr(33),
                                                sample_document_text(5)};
  int64_t total_tokens = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    fs::path source = expected[i].first;
    if (source.empty()) {
      source = d / ("corpus-doc-" + std::to_string(i) + ".txt");
      write_file(source, corpus_docs[i - 3]);
    }
    RunResult one = run_coenc("compress -q -m " + q(chat()) + " --doc " + q(source) + " -o " + q(d / "one.coctx"));
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const CompressedDocument a = read_coctx(d / "one.coctx"), b = read_coctx(d / "out" / expected[i].second);
    EXPECT_EQ(a.chunk_hashes, b.chunk_hashes) << expected[i].second;
    EXPECT_EQ(a.model_fingerprint, b.model_fingerprint);
    ASSERT_EQ(a.chunks.size(), b.chunks.size()) << expected[i].second;
    for (size_t c = 0; c < a.chunks.size(); ++c)
      EXPECT_TRUE(torch::allclose(a.chunks[c], b.chunks[c], 1e-4, 1e-5)) << expected[i].second << " chunk " << c;
    total_tokens += b.n_tokens();
  }
  EXPECT_EQ(j["tokens"], total_tokens);

  // Resumable: nothing to do; then one document changed and one file damaged are compressed again.
  r = run_coenc(base + "-o " + q(d / "out") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["documents"], 0);
  EXPECT_EQ(json::parse(r.out)["skipped"], 6);
  write_file(d / "lib" / "a.txt", sample_document_text(71));
  const std::string damaged = read_file(d / "out" / "corpus-000002.coctx");
  write_file(d / "out" / "corpus-000002.coctx", damaged.substr(0, damaged.size() / 2));
  r = run_coenc(base + "-o " + q(d / "out") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["documents"], 2);
  EXPECT_EQ(json::parse(r.out)["skipped"], 4);
  EXPECT_NO_THROW(read_coctx(d / "out" / "corpus-000002.coctx"));  // whole again
  r = run_coenc(base + "-o " + q(d / "out") + " --json --force");
  EXPECT_EQ(json::parse(r.out)["documents"], 6);

  // COENC_TRACE_BATCHES=1 (docs/benchmarks.md, "Bulk compression"): one line per group on stderr, which together
  // count every chunk the run compressed, in batches of at most 3.
  ::setenv("COENC_TRACE_BATCHES", "1", 1);
  r = run_coenc(base + "-o " + q(d / "out") + " --json --force -q");
  ::unsetenv("COENC_TRACE_BATCHES");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::regex trace(R"(compress_chunks: (\d+) chunks in (\d+) batches \((\d+) masked, (\d+) rows\) [\d.]+ ms: )"
                         R"(ids [\d.]+, forward [\d.]+, copy [\d.]+, away [\d.]+, wait [\d.]+, gather [\d.]+)");
  int64_t traced_chunks = 0, traced_lines = 0;
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, trace)) << line;
    const int64_t chunks = std::stoll(m[1]), batches = std::stoll(m[2]);
    EXPECT_EQ(batches, (chunks + 2) / 3) << line;
    EXPECT_LE(std::stoll(m[3]), batches) << line;
    EXPECT_EQ(std::stoll(m[4]), chunks) << line;  // the CPU pads no batch
    traced_chunks += chunks, traced_lines += 1;
  }
  EXPECT_GE(traced_lines, 2);  // several groups, so the overlap of one group with the next is exercised
  EXPECT_EQ(traced_chunks, json::parse(r.out)["chunks"].get<int64_t>());

  // COENC_BULK_OVERLAP=0 (each group written before the next is queued, to measure the overlap), on one tokenizer
  // and writer thread: the same files.
  ::setenv("COENC_BULK_OVERLAP", "0", 1);
  r = run_coenc(base + "-o " + q(d / "in-turn") + " --json -q --threads 1");
  ::unsetenv("COENC_BULK_OVERLAP");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["documents"], 6);
  EXPECT_EQ(json::parse(r.out)["threads"], 1);
  expect_one_line_error(run_coenc(base + "-o " + q(d / "none") + " --threads 0"), "--threads: must be positive, got 0");
  for (const auto& [source, name] : expected) {
    const CompressedDocument a = read_coctx(d / "out" / name), b = read_coctx(d / "in-turn" / name);
    EXPECT_EQ(a.chunk_hashes, b.chunk_hashes) << name;
    ASSERT_EQ(a.chunks.size(), b.chunks.size()) << name;
    for (size_t c = 0; c < a.chunks.size(); ++c) EXPECT_TRUE(torch::equal(a.chunks[c], b.chunks[c])) << name;
  }

  // Two processes, each every other document: the same files.
  r = run_coenc(base + "-o " + q(d / "out2") + " --json --nproc 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int64_t documents = 0;
  for (size_t at = 0, end; (end = r.out.find('\n', at)) != std::string::npos; at = end + 1)
    documents += json::parse(r.out.substr(at, end - at))["documents"].get<int64_t>();
  EXPECT_EQ(documents, 6);
  for (const auto& [source, name] : expected) {
    const CompressedDocument a = read_coctx(d / "out" / name), b = read_coctx(d / "out2" / name);
    EXPECT_EQ(a.chunk_hashes, b.chunk_hashes) << name;
    ASSERT_EQ(a.chunks.size(), b.chunks.size());
    for (size_t c = 0; c < a.chunks.size(); ++c) EXPECT_TRUE(torch::allclose(a.chunks[c], b.chunks[c], 1e-4, 1e-5));
  }

  // Bad libraries.
  write_file(d / "file.coctx", "x");
  expect_one_line_error(run_coenc(base + "-o " + q(d / "file.coctx")),
                        "file.coctx: several documents are written into a folder, and this is a file");
  fs::create_directories(d / "other");
  write_file(d / "other" / "doc.txt", "another text with the same name");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " --doc " +
                                  q(d / "other" / "doc.txt") + " -o " + q(d / "out3")),
                        "would both be written to");
  fs::create_directories(d / "nothing");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "nothing") + " -o " + q(d / "o4")),
                        "no .txt or .md documents in this folder");
  write_file(d / "lib" / "empty.txt", "");
  expect_one_line_error(run_coenc(base + "-o " + q(d / "out")), "empty.txt: the document is empty");
  expect_one_line_error(run_coenc(base + "-o " + q(d / "out") + " --export npy"),
                        "--export and --question take one document, not a library");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " -o x.coctx --force"),
                        "--nproc, --threads, --force and --json are for compressing a library");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " -o x.coctx --threads 2"),
                        "--nproc, --threads, --force and --json are for compressing a library");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " -o x.coctx"),
                        "give a document to compress (--doc) or a corpus (--corpus)");
}

// `coenc bench -m CO_ENCODER --tower-chunks` times the checkpoint's own context tower (the figure bulk compression is
// compared with); a Co-Encoder has no decoder figures to time.
TEST_F(CompressAskCli, BenchTimesACoEncodersTower) {
  RunResult r = run_coenc("bench -m " + q(chat()) + " --tower-chunks 3 --chunk 32 --reps 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["model"], chat().string() + " (context tower)");
  EXPECT_EQ(j["tower"]["chunks"], 3);
  EXPECT_GT(j["tower"]["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["params"], load_co_encoder(chat(), DeviceOptions{})->context_tower->tower->config().n_params());
  // Then what compress does with such batches (the connector, the vectors to the host): 8 batches of 3 chunks of
  // the checkpoint's chunk_size.
  EXPECT_EQ(j["compress"]["batches"], 8);
  EXPECT_EQ(j["compress"]["chunks"], 3);
  EXPECT_EQ(j["compress"]["chunk"], load_co_encoder(chat(), DeviceOptions{})->config().chunk_size);
  EXPECT_GT(j["compress"]["tokens_per_s"].get<double>(), 0);
  // The tower attends as compression runs it: this checkpoint's causally, one whose config says "bidirectional"
  // (as the default's does) both ways.
  EXPECT_EQ(j["tower"]["attention"], "causal");
  const fs::path bidirectional = dir_->path() / "bench-bidirectional";
  fs::copy(chat(), bidirectional, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  json config = json::parse(read_file_bytes(bidirectional / "config.json"));
  config["tower_attention"] = "bidirectional";
  write_file_atomic(bidirectional / "config.json", config.dump());
  RunResult both_ways = run_coenc("bench -m " + q(bidirectional) + " --tower-chunks 3 --chunk 32 --reps 1 --json");
  ASSERT_EQ(both_ways.exit_code, 0) << both_ways.err;
  EXPECT_EQ(json::parse(both_ways.out)["tower"]["attention"], "bidirectional");
  EXPECT_TRUE(j["prefill"].empty());
  EXPECT_FALSE(j.contains("decode"));
  expect_one_line_error(run_coenc("bench -m " + q(chat())), "a Co-Encoder checkpoint: only its context tower is timed");
}

TEST_F(CompressAskCli, BadArgumentsAndCheckpoints) {
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " hi"),
                        "give at least one --doc (a document) or --ctx (a .coctx file); either may be repeated");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc - --doc - hi", "some text"),
                        "--doc - (standard input) may be given only once");
  // A missing file among several is named, whichever place it has.
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --ctx nope.coctx hi"),
                        "nope.coctx");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --doc missing.txt hi"),
                        "missing.txt: document not found");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " ''"),
                        "the question is empty");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " -n -1 hi"),
                        "--n-predict: must be >= 0, got -1");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --chat-format vicuna hi"),
                        "unknown chat format \"vicuna\"");
  expect_one_line_error(run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + " --system 'Be brief.' hi"),
                        "a system message needs the chat layout: the decoder's tokenizer has no chat template");
  expect_one_line_error(
      run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + " --chat-template-kwargs '{\"enable_thinking\": false}' hi"),
      "chat template kwargs need the chat layout: the decoder's tokenizer has no chat template");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --chat-template-kwargs '[1]' hi"),
                        "--chat-template-kwargs: expected a JSON object");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --chat-template-kwargs '{x' hi"),
                        "--chat-template-kwargs: not JSON: {x");
  TempDir d;
  copy_tree(chat(), d / "ckpt");
  ASSERT_TRUE(remove_tree(d / "ckpt" / "text_tokenizer"));
  expect_one_line_error(run_coenc("ask -m " + q(d / "ckpt") + " --doc " + q(doc()) + " hi"),
                        "no text (decoder) tokenizer: expected tokenizer.json or tokenizer.model in");
  expect_one_line_error(run_coenc("compress -m /nonexistent/ckpt --doc " + q(doc()) + " -o x.coctx"),
                        "/nonexistent/ckpt");
  RunResult help = run_coenc("compress --help");
  EXPECT_NE(help.out.find("coenc ask -m CKPT --ctx report.coctx"), std::string::npos) << help.out;
  RunResult ask_help = run_coenc("ask --help");
  EXPECT_NE(ask_help.out.find("--ctx report.coctx --ctx minutes.coctx --doc memo.txt"), std::string::npos)
      << ask_help.out;
  EXPECT_NE(ask_help.out.find("[BOC] v1 [EOC] [BOC] v2 [EOC]"), std::string::npos) << ask_help.out;
}

// The layout a checkpoint was trained with (config "prompt_layout") is the one ask uses: a connector trained raw
// is asked raw even though its decoder has a chat template; --chat overrides it, --no-chat the other way.
TEST_F(CompressAskCli, AskUsesTheCheckpointsPromptLayout) {
  TempDir d;
  copy_tree(chat(), d / "ckpt");
  nlohmann::json config = nlohmann::json::parse(read_file(d / "ckpt" / "config.json"));
  config["prompt_layout"] = "raw";
  write_file(d / "ckpt" / "config.json", config.dump());
  const std::string args = " --doc " + q(doc()) + " --temp 0 -n 8 --json 'What happened?'";
  RunResult trained_raw = run_coenc("ask -m " + q(d / "ckpt") + args);
  RunResult forced_raw = run_coenc("ask -m " + q(chat()) + " --no-chat" + args);
  RunResult template_default = run_coenc("ask -m " + q(chat()) + args);
  RunResult forced_chat = run_coenc("ask -m " + q(d / "ckpt") + " --chat" + args);
  ASSERT_EQ(trained_raw.exit_code, 0) << trained_raw.err;
  EXPECT_EQ(trained_raw.out, forced_raw.out);
  EXPECT_EQ(forced_chat.out, template_default.out);
  EXPECT_NE(trained_raw.out, template_default.out);  // the layouts differ in n_prompt at least
  const std::string plain = " --doc " + q(doc()) + " --temp 0 -n 8 'What happened?'";
  expect_one_line_error(run_coenc("ask -m " + q(d / "ckpt") + " --system 'Be brief.'" + plain),
                        "this checkpoint was trained on the raw layout");
  EXPECT_EQ(run_coenc("ask -m " + q(d / "ckpt") + " --chat --no-chat" + plain).exit_code, 2);  // bad usage
  config["prompt_layout"] = "xml";
  write_file(d / "ckpt" / "config.json", config.dump());
  expect_one_line_error(run_coenc("ask -m " + q(d / "ckpt") + plain), "field \"prompt_layout\" must be");
}

// --ratio compresses at another ratio than the checkpoint's (mean pooling serves any): fewer vectors, the same
// answer whether compressed on the fly or read from a .coctx made at that ratio; a .coctx of another ratio is a
// model mismatch.
TEST_F(CompressAskCli, RatioFlagCompressesAtAnotherRatio) {
  TempDir d;
  const std::string args = " --temp 0 -n 6 --json 'What happened?'";
  RunResult own = run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + args);
  RunResult half = run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + " --ratio 8" + args);
  ASSERT_EQ(own.exit_code, 0) << own.err;
  ASSERT_EQ(half.exit_code, 0) << half.err;
  const json a = json::parse(own.out), b = json::parse(half.out);
  EXPECT_LT(b["n_vectors"].get<int64_t>(), a["n_vectors"].get<int64_t>());
  ASSERT_EQ(run_coenc("compress -q -m " + q(raw()) + " --doc " + q(doc()) + " --ratio 8 -o " + q(d / "r8.coctx"))
                .exit_code,
            0);
  RunResult from_file = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "r8.coctx") + " --ratio 8" + args);
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  const json c = json::parse(from_file.out);
  EXPECT_EQ(c["ids"], b["ids"]);
  EXPECT_EQ(c["n_vectors"], b["n_vectors"]);
  RunResult mismatch = run_coenc("ask -m " + q(raw()) + " --ctx " + q(d / "r8.coctx") + " 'What happened?'");
  EXPECT_EQ(mismatch.exit_code, 7) << mismatch.err;
  expect_one_line_error(run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + " --ratio 0 hi"),
                        "--ratio: must be positive, got 0");
}

// coenc inspect describes a Co-Encoder checkpoint (its parts and connector) and a .coctx file (which model made
// it, what it holds), as text and as JSON.
// --export writes the decoder input for other engines: the same float32 rows [BOC] v [EOC] (computed here in
// process) as .npy, as safetensors inputs_embeds [1, n, d], and as a vLLM request whose prompt_embeds is base64 of
// a torch.save pickle (read back with libtorch's pickle_load); with --question, the rows of ask's whole prompt.
TEST_F(CompressAskCli, ExportWritesTheDecoderInputForOtherEngines) {
  TempDir out;
  CoEncoder m = load_co_encoder(chat(), DeviceOptions{});
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(chat(), m->config());
  EncodeOptions eo;
  eo.parse_special = false;
  const auto chunks = m->compress(tok.context->encode(read_file(doc()), eo));
  const torch::Tensor want = m->context_block(chunks).to(torch::kFloat32);
  const int64_t n = want.size(0), d = want.size(1);

  for (const char* f : {"npy", "hf", "vllm"}) {
    const RunResult r = run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " --export " + f + " -o " +
                                  q(out / (std::string("rows.") + f)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string npy = read_file(out / "rows.npy");
  ASSERT_EQ(npy.substr(0, 6), "\x93NUMPY");
  const size_t header_len = static_cast<uint8_t>(npy[8]) | (static_cast<uint8_t>(npy[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = npy.substr(10, header_len);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("(" + std::to_string(n) + ", " + std::to_string(d) + ")"), std::string::npos) << header;
  ASSERT_EQ(npy.size(), 10 + header_len + static_cast<size_t>(n * d * 4));
  torch::Tensor from_npy = torch::from_blob(const_cast<char*>(npy.data()) + 10 + header_len, {n, d}, torch::kFloat32).clone();
  EXPECT_TRUE(torch::allclose(from_npy, want, 1e-5, 1e-6));

  auto st = SafetensorsFile::open(out / "rows.hf");
  EXPECT_TRUE(torch::equal(st->tensor("inputs_embeds").squeeze(0), from_npy));

  const json req = json::parse(read_file(out / "rows.vllm"));
  EXPECT_EQ(req["model"], "chat");
  EXPECT_EQ(req["max_tokens"], 64);
  const std::string pickled = serve::decode_base64(req["prompt_embeds"].get<std::string>(), "prompt_embeds");
  const torch::Tensor from_pickle = torch::pickle_load(std::vector<char>(pickled.begin(), pickled.end())).toTensor();
  EXPECT_TRUE(torch::equal(from_pickle, from_npy));

  // With a question: every row `ask` feeds the decoder.
  ASSERT_EQ(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " --export npy --question 'Why?' -o " +
                      q(out / "ask.npy")).exit_code, 0);
  const RunResult asked = run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " -n 1 --json 'Why?'");
  ASSERT_EQ(asked.exit_code, 0) << asked.err;
  const int64_t positions = json::parse(asked.out)["n_prompt"];
  EXPECT_NE(read_file(out / "ask.npy").find("(" + std::to_string(positions) + ", " + std::to_string(d) + ")"),
            std::string::npos);
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " --export pt -o " +
                                  q(out / "x")), "--export must be npy, hf or vllm");
  expect_one_line_error(run_coenc("compress -m " + q(chat()) + " --doc " + q(doc()) + " --question 'Why?' -o " +
                                  q(out / "x")), "--question is for --export");
}

TEST_F(CompressAskCli, InspectDescribesCheckpointsAndCoctxFiles) {
  TempDir d;
  RunResult ck = run_coenc("inspect --json " + q(raw()));
  ASSERT_EQ(ck.exit_code, 0) << ck.err;
  const json c = json::parse(ck.out);
  EXPECT_EQ(c["kind"], "co_encoder");
  EXPECT_EQ(c["config"]["pooling"], "mean");
  EXPECT_GT(c["tower_params"].get<int64_t>(), 0);
  EXPECT_TRUE(c["tensors"].contains("connector.linear_1.weight"));
  RunResult text = run_coenc("inspect " + q(raw()));
  EXPECT_NE(text.out.find("CoEncoderForConditionalGeneration: pooling mean"), std::string::npos) << text.out;
  ASSERT_EQ(run_coenc("compress -q -m " + q(raw()) + " --doc " + q(doc()) + " -o " + q(d / "a.coctx")).exit_code, 0);
  RunResult file = run_coenc("inspect --json " + q(d / "a.coctx"));
  ASSERT_EQ(file.exit_code, 0) << file.err;
  const json f = json::parse(file.out);
  EXPECT_EQ(f["kind"], "coctx");
  const CompressedDocument doc = read_coctx(d / "a.coctx");
  EXPECT_EQ(f["model_fingerprint"], doc.model_fingerprint);
  EXPECT_EQ(f["n_tokens"].get<int64_t>(), doc.n_tokens());
  EXPECT_EQ(f["n_vectors"].get<int64_t>(), doc.n_vectors());
  EXPECT_EQ(f["n_chunks"].get<size_t>(), doc.chunks.size());
  EXPECT_NE(run_coenc("inspect " + q(d / "a.coctx")).out.find("model fingerprint " + doc.model_fingerprint),
            std::string::npos);
  write_file(d / "bad.coctx", "not a coctx");
  EXPECT_EQ(run_coenc("inspect " + q(d / "bad.coctx")).exit_code, 3);
}

// coenc convert rewrites a checkpoint as shards (and another dtype) without changing what it answers; the other
// files of the folder travel with it.
TEST_F(CompressAskCli, ConvertShardsWithoutChangingAnswers) {
  TempDir d;
  RunResult c = run_coenc("convert " + q(raw()) + " " + q(d / "conv") + " --dtype f32 --max-shard-mb 0.2");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_TRUE(fs::exists(d / "conv" / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d / "conv" / "model.safetensors"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(d / "conv"))
    if (e.path().extension() == ".safetensors") {
      ++shards;
      EXPECT_LE(fs::file_size(e.path()), 200000u + 4096u) << e.path();  // tensors within the limit, plus the header
    }
  EXPECT_GT(shards, 1);
  EXPECT_TRUE(fs::exists(d / "conv" / "text_tokenizer" / "tokenizer.json"));
  const std::string args = " --doc " + q(doc()) + " --temp 0 -n 12 --json 'What happened?'";
  RunResult a = run_coenc("ask -m " + q(raw()) + args), b = run_coenc("ask -m " + q(d / "conv") + args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  // Converted again in place to one bf16 file: the shards and the index are gone, and it still loads.
  ASSERT_EQ(run_coenc("convert " + q(d / "conv") + " " + q(d / "conv") + " --dtype bf16").exit_code, 0);
  EXPECT_TRUE(fs::exists(d / "conv" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(d / "conv" / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d / "conv" / "model-00001-of-00002.safetensors"));
  EXPECT_EQ(run_coenc("ask -m " + q(d / "conv") + args).exit_code, 0);
  expect_one_line_error(run_coenc("convert " + q(d / "missing") + " " + q(d / "x")), "model directory not found");
  expect_one_line_error(run_coenc("convert " + q(raw()) + " " + q(d / "x") + " --max-shard-mb -1"),
                        "--max-shard-mb must be >= 0");
}

// The shipped default Co-Encoder does what the README's first command says: it finds the number stated once in
// the middle of the sample document, from the vectors at every ratio it was trained at; with another number in
// the same document it answers that one (it reads the vectors, it does not recall the sample).
TEST(DefaultCoEncoder, AnswersTheReadmeQuestionAtEveryTrainedRatio) {
  const fs::path root = test_dir().parent_path();
  auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  auto ask = [&](const fs::path& doc, const char* ratio) {
    RunResult r = run_coenc("ask -q -m " + q(root / "models" / "default-coenc") + " --doc " + q(doc) + " --ratio " +
                            ratio + " --temp 0 -n 8 --json 'What is the secret number?'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out)["text"].get<std::string>() : std::string();
  };
  const fs::path sample = root / "examples" / "sample-document.txt";
  for (const char* ratio : {"4", "8", "16"}) EXPECT_EQ(ask(sample, ratio), " 73914") << "ratio " << ratio;
  TempDir d;
  std::string text = read_file(sample);
  const size_t at = text.find("73914");
  ASSERT_NE(at, std::string::npos);
  write_file(d / "other.txt", text.replace(at, 5, "52867"));
  EXPECT_EQ(ask(d / "other.txt", "4"), " 52867");
}

// -n, --stop, --ignore-eos and -c mean in `ask` what they mean in `generate` (tools/coenc/cli_util.h).
TEST(DefaultCoEncoder, AskTakesGeneratesStopAndContextFlags) {
  const fs::path root = test_dir().parent_path();
  const std::string base = "ask -q -m '" + (root / "models" / "default-coenc").string() + "' --doc '" +
                           (root / "examples" / "sample-document.txt").string() + "' --temp 0 --json ";
  const std::string question = " 'What is the secret number?'";
  RunResult plain = run_coenc(base + "-n 12" + question);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const json p = json::parse(plain.out);
  EXPECT_EQ(p["text"], " 73914");
  EXPECT_EQ(p["stop_reason"], "stop_token");
  RunResult on = run_coenc(base + "-n 12 --ignore-eos" + question);
  ASSERT_EQ(on.exit_code, 0) << on.err;
  const json o = json::parse(on.out);
  EXPECT_EQ(o["stop_reason"], "length");
  EXPECT_EQ(o["ids"].size(), 12u);
  EXPECT_EQ(o["text"].get<std::string>().rfind(" 73914", 0), 0u) << o["text"];
  RunResult stop = run_coenc(base + "-n 12 --stop 91" + question);
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(json::parse(stop.out)["text"], " 73");
  EXPECT_EQ(json::parse(stop.out)["stop_reason"], "stop_string");
  RunResult small = run_coenc(base + "-c 100" + question);
  EXPECT_EQ(small.exit_code, 6) << small.err;
  EXPECT_NE(small.err.find("need 358 positions, but the decoder holds 100 (the context size asked for)"),
            std::string::npos)
      << small.err;
  RunResult big = run_coenc(base + "-c 4096" + question);
  EXPECT_EQ(big.exit_code, 6) << big.err;
  EXPECT_NE(big.err.find("a context of 4096 positions is more than the decoder's window of 2048"), std::string::npos)
      << big.err;
}

}  // namespace
}  // namespace coenc::test
