// `coenc compress` and `coenc ask` run as a user runs them, on a tiny random Co-Encoder checkpoint with the
// trained test tokenizer in context_tokenizer/ and text_tokenizer/: compress -> .coctx -> ask gives what `ask
// --doc` and an in-process computation give, with the chat template and with the seed's raw layout; damaged
// and foreign .coctx files and bad input end in one clear line and a non-zero exit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/session.h"
#include "coenc/tokenizer.h"
#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokenizerDir = test_dir() / "golden/tokenizer/trained";  // byte-level BPE, 1200 ids, ChatML

json co_config() {
  json tower = {{"model_type", "qwen2"},    {"vocab_size", 1200},           {"hidden_size", 32},
                {"intermediate_size", 48},  {"num_hidden_layers", 2},       {"num_attention_heads", 4},
                {"num_key_value_heads", 2}, {"max_position_embeddings", 64}};
  json decoder = {{"model_type", "llama"},    {"vocab_size", 1200},
                  {"hidden_size", 32},        {"intermediate_size", 48},
                  {"num_hidden_layers", 2},   {"num_attention_heads", 4},
                  {"num_key_value_heads", 2}, {"max_position_embeddings", 256},
                  {"eos_token_id", 0}};
  return {{"model_type", "co_encoder"},   {"context_config", tower},
          {"text_config", decoder},       {"begin_of_context_token_id", 1},
          {"end_of_context_token_id", 2}, {"pooling", "mean"},
          {"compression_ratio", 4},       {"chunk_size", 32}};
}

// Saves a random checkpoint with both tokenizers; `chat` false leaves the chat template out of
// text_tokenizer/.
void make_checkpoint(const fs::path& dir, uint64_t seed, bool chat) {
  save_co_encoder(
      *random_co_encoder(CoEncoderConfig::from_json(co_config(), "test"), DeviceOptions{}, seed, 0.3), dir);
  for (const char* sub : {"context_tokenizer", "text_tokenizer"}) {
    fs::create_directories(dir / sub);
    fs::copy_file(kTokenizerDir / "tokenizer.json", dir / sub / "tokenizer.json");
    json tc = json::parse(read_file(kTokenizerDir / "tokenizer_config.json"));
    if (!chat && std::string(sub) == "text_tokenizer") tc.erase("chat_template");
    write_file(dir / sub / "tokenizer_config.json", tc.dump(1));
  }
}

std::string document_text(int words) {
  static const char* kWords[] = {"the",    "river",  "city",   "council", "bridge",  "north",
                                 "market", "winter", "report", "stone",   "harbour", "year",
                                 "people", "built",  "old",    "long"};
  std::string s;
  for (int i = 0; i < words; ++i)
    s += std::string(kWords[(i * 7 + i / 3) % 16]) + (i % 11 == 10 ? ". " : " ");
  return s;
}

class CompressAskCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    make_checkpoint(chat(), 5, true);
    make_checkpoint(raw(), 5, false);  // the same weights, no chat template
    make_checkpoint(foreign(), 6, true);
    write_file(doc(), document_text(120));
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path chat() { return dir_->path() / "chat"; }
  static fs::path raw() { return dir_->path() / "raw"; }
  static fs::path foreign() { return dir_->path() / "foreign"; }
  static fs::path doc() { return dir_->path() / "doc.txt"; }
  static std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

  // What `ask --temp 0` must answer, computed in this process: compress, lay out, greedy decoding.
  static TokenIds greedy_answer(const fs::path& ckpt, const std::string& question, int n,
                                int64_t* n_vectors) {
    CoEncoder m = load_co_encoder(ckpt, DeviceOptions{});
    CoEncoderTokenizers tok = load_co_encoder_tokenizers(ckpt, m->config());
    EncodeOptions eo;
    eo.parse_special = false;
    const std::vector<torch::Tensor> chunks = m->compress(tok.context->encode(read_file(doc()), eo));
    AskPrompt p = ask_prompt(*m, *tok.text, chunks, question);
    *n_vectors = p.n_positions;
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
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --ctx " + q(d / "f.coctx") + " hi"),
                        "f.coctx: compressed by another model");
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
  // Far more text than the decoder's 256 positions hold, compressed 4:1.
  write_file(d / "long.txt", document_text(3000));
  expect_one_line_error(
      run_coenc("compress -m " + q(chat()) + " --doc " + q(d / "long.txt") + " -o " + q(d / "l.coctx")),
      "long.txt: ");
  RunResult r = run_coenc("ask -m " + q(chat()) + " --doc " + q(d / "long.txt") + " hi");
  expect_one_line_error(r,
                        "but the decoder reads at most 256 positions (text_config.max_position_embeddings, ");
}

TEST_F(CompressAskCli, BadArgumentsAndCheckpoints) {
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " hi"),
                        "give exactly one of --doc (a document) and --ctx");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc a --ctx b hi"),
                        "give exactly one of --doc");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " ''"),
                        "the question is empty");
  expect_one_line_error(run_coenc("ask -m " + q(chat()) + " --doc " + q(doc()) + " --chat-format vicuna hi"),
                        "unknown chat format \"vicuna\"");
  expect_one_line_error(run_coenc("ask -m " + q(raw()) + " --doc " + q(doc()) + " --system 'Be brief.' hi"),
                        "--system needs a chat template");
  TempDir d;
  copy_tree(chat(), d / "ckpt");
  ASSERT_TRUE(remove_tree(d / "ckpt" / "text_tokenizer"));
  expect_one_line_error(run_coenc("ask -m " + q(d / "ckpt") + " --doc " + q(doc()) + " hi"),
                        "no text (decoder) tokenizer: expected tokenizer.json or tokenizer.model in");
  expect_one_line_error(run_coenc("compress -m /nonexistent/ckpt --doc " + q(doc()) + " -o x.coctx"),
                        "/nonexistent/ckpt");
  RunResult help = run_coenc("compress --help");
  EXPECT_NE(help.out.find("coenc ask -m CKPT --ctx report.coctx"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace coenc::test
