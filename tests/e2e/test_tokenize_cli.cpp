// `coenc tokenize` and `coenc tokenizer train`, run as a user runs them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace coenc::test {
namespace {

std::string spm_model() {
  return (test_dir() / "golden" / "tokenizer" / "tiny_spm.model").string();
}
std::string trained_dir() {
  return (test_dir() / "golden" / "tokenizer" / "trained").string();
}

TEST(TokenizeCli, PrintsIdsAndPieces) {
  RunResult r = run_coenc("tokenize --model '" + trained_dir() + "'", "the end\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One line per token: ID<TAB>PIECE; the newline's piece is shown as the byte-level 'Ċ'.
  EXPECT_NE(r.out.find("\t"), std::string::npos);
  EXPECT_NE(r.out.find("\xC4\x8A"), std::string::npos) << r.out;
}

TEST(TokenizeCli, JsonIsOneObjectForAllInput) {
  RunResult r = run_coenc("tokenize --model '" + trained_dir() + "' --json --add-special", "Hello\nworld");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["ids"].is_array());
  EXPECT_EQ(j["ids"].size(), j["pieces"].size());
  EXPECT_EQ(j["ids"][0], 0);  // BOS from --add-special
  EXPECT_EQ(j["pieces"][0], "<|endoftext|>");
}

TEST(TokenizeCli, JsonlEncodesEachLine) {
  RunResult r =
      run_coenc("tokenize --model '" + spm_model() + "' --jsonl", "\"first text\"\n\"second\\nline\"\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string a, b, extra;
  ASSERT_TRUE(std::getline(lines, a));
  ASSERT_TRUE(std::getline(lines, b));
  EXPECT_FALSE(std::getline(lines, extra));
  EXPECT_FALSE(nlohmann::json::parse(a)["ids"].empty());
  EXPECT_FALSE(nlohmann::json::parse(b)["ids"].empty());
}

TEST(TokenizeCli, SpecialTokenTextCanBeKeptAsText) {
  RunResult parsed = run_coenc("tokenize --model '" + trained_dir() + "' --json", "a<|im_end|>");
  RunResult plain =
      run_coenc("tokenize --model '" + trained_dir() + "' --json --no-parse-special", "a<|im_end|>");
  ASSERT_EQ(parsed.exit_code, 0) << parsed.err;
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto p = nlohmann::json::parse(parsed.out), q = nlohmann::json::parse(plain.out);
  EXPECT_EQ(p["ids"].back(), 2);
  EXPECT_GT(q["ids"].size(), p["ids"].size());
}

TEST(TokenizeCli, BadInputFailsWithOneLine) {
  RunResult r = run_coenc("tokenize --model '" + trained_dir() + "' --jsonl", "\"ok\"\nnot json\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 2: not valid JSON (expected a JSON string)"), std::string::npos) << r.err;
  r = run_coenc("tokenize --model '" + trained_dir() + "' --jsonl", "[1,2]\n");
  EXPECT_NE(r.err.find("stdin line 1: expected a JSON string, got array"), std::string::npos) << r.err;
  r = run_coenc("tokenize --model /nonexistent/model", "x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("coenc: error: /nonexistent/model: no such file or directory"), std::string::npos)
      << r.err;
  r = run_coenc("tokenize", "x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--model is required"), std::string::npos) << r.err;
}

TEST(TokenizeCli, HelpTeachesTheFormats) {
  RunResult r = run_coenc("tokenize --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--jsonl"), std::string::npos);
  EXPECT_NE(r.out.find("Examples:"), std::string::npos);
  r = run_coenc("tokenizer train --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--vocab-size"), std::string::npos);
}

TEST(TokenizeCli, BenchReportsThroughput) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the quick brown fox jumps over the lazy dog\n";
  write_file(dir / "text.txt", text);
  RunResult r = run_coenc("tokenize --model '" + trained_dir() + "' --repeat 1 --bench '" +
                          (dir / "text.txt").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["lines"], 200);
  EXPECT_GT(j["mb_per_s"].get<double>(), 0.0);
  // Several threads sharing the tokenizer encode the same tokens.
  RunResult r2 = run_coenc("tokenize --model '" + trained_dir() + "' --repeat 1 --threads 3 --bench '" +
                           (dir / "text.txt").string() + "'");
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  auto j2 = nlohmann::json::parse(r2.out);
  EXPECT_EQ(j2["threads"], 3);
  EXPECT_EQ(j2["tokens"], j["tokens"]);
  expect_one_line_error(run_coenc("tokenize --model '" + trained_dir() + "' --threads 0 --bench '" +
                                  (dir / "text.txt").string() + "'"),
                        "--threads must be positive, got 0");
}

TEST(TokenizerTrainCli, TrainsAndTheResultTokenizes) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += "Co-Encoder compresses long documents into a few vectors. " + std::to_string(i) + "\n";
  write_file(dir / "a.txt", text);
  RunResult r = run_coenc("tokenizer train --vocab-size 300 --input '" + (dir / "a.txt").string() +
                              "' - --out '" + (dir / "tok").string() + "'",
                          "more text from standard input\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = nlohmann::json::parse(r.out);
  EXPECT_EQ(report["vocab_size"], 300);
  EXPECT_NE(r.err.find("merging"), std::string::npos);  // the progress bar
  RunResult t =
      run_coenc("tokenize --model '" + (dir / "tok").string() + "' --json", "Co-Encoder compresses");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_LT(nlohmann::json::parse(t.out)["ids"].size(), 10u);
}

TEST(TokenizerTrainCli, ErrorsNameTheProblem) {
  TempDir dir;
  RunResult r = run_coenc("tokenizer train --vocab-size 300 --input /nonexistent.txt --out '" +
                          (dir / "o").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent.txt: cannot open the training text"), std::string::npos) << r.err;
  write_file(dir / "a.txt", "hello");
  r = run_coenc("tokenizer train --vocab-size 10 --quiet --input '" + (dir / "a.txt").string() + "' --out '" +
                (dir / "o").string() + "'");
  EXPECT_NE(r.err.find("vocab_size 10 is too small"), std::string::npos) << r.err;
  r = run_coenc("tokenizer");
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace coenc::test

namespace coenc::test {
namespace {

TEST(TokenizeCli, MissingSentencePieceModuleIsAClearError) {
  TempDir dir;
  std::string cmd = "COENC_SENTENCEPIECE_MODULE=/nonexistent/libcoenc_sentencepiece.so '" +
                    std::string(COENC_BINARY) + "' tokenize --model '" + spm_model() + "' </dev/null 2>'" +
                    (dir / "err").string() + "'";
  int status = std::system(cmd.c_str());
  EXPECT_NE(status, 0);
  EXPECT_NE(read_file(dir / "err")
                .find("cannot load the SentencePiece module /nonexistent/libcoenc_sentencepiece.so"),
            std::string::npos)
      << read_file(dir / "err");
}

}  // namespace
}  // namespace coenc::test
