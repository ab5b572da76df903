// `coenc eval` run as a user runs it, on a tiny random Co-Encoder: every task prints the documented JSON with
// every condition, the cost accounting adds up (positions and KV bytes follow from the layout), the same seed
// gives the same numbers, the needle heatmap is written, and bad input ends in one clear line.
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class EvalCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    make_tiny_co_encoder(model(), 5, /*chat=*/false);
    std::string docs;
    for (int d = 0; d < 6; ++d) docs += (d ? "\n\n<|doc|>\n" : "") + sample_document_text(300 + 40 * d);
    write_file(text(), docs);
    std::string qa;
    for (int i = 0; i < 4; ++i)
      qa += json{{"id", "q" + std::to_string(i)},
                 {"context", sample_document_text(60 + 10 * i)},
                 {"question", "Which river?"},
                 {"answers", {"the river", "river"}},
                 {"options", nullptr}}
                .dump() +
            "\n";
    write_file(dir_->path() / "qa.jsonl", qa);
    write_file(dir_->path() / "choice.jsonl", json{{"context", sample_document_text(50)},
                                                   {"question", "Which one?"},
                                                   {"answers", {"bridge"}},
                                                   {"options", {"river", "bridge", "stone"}}}
                                                      .dump() +
                                                  "\n");
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path model() { return dir_->path() / "ckpt"; }
  static fs::path text() { return dir_->path() / "docs.txt"; }
  static std::string m() { return "eval -m '" + model().string() + "' -q "; }
  static json run_json(const std::string& args) {
    RunResult r = run_coenc(m() + args + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }
  // Decoder KV bytes per position of the tiny model: 2 layers x (K, V) x 2 kv heads x head_dim 8 x 4 bytes
  // (f32).
  static constexpr double kKvPerPosition = 2 * 2 * 2 * 8 * 4;
  static TempDir* dir_;
};
TempDir* EvalCli::dir_ = nullptr;

TEST_F(EvalCli, PplReportsEveryConditionAndItsCost) {
  json r = run_json("--task ppl --data '" + text().string() +
                    "' --ratio 4,8 --limit 5 --context-tokens 64 "
                    "--target-tokens 16");
  EXPECT_EQ(r["task"], "ppl");
  EXPECT_EQ(r["n"], 5);
  EXPECT_EQ(r["ratios"], json({4, 8}));
  for (const char* c : {"none", "full", "compressed@4", "compressed@8"}) {
    ASSERT_TRUE(r["conditions"].contains(c)) << c;
    const json& k = r["conditions"][c];
    EXPECT_TRUE(std::isfinite(k["nll"].get<double>())) << c;
    EXPECT_NEAR(k["ppl"].get<double>(), std::exp(k["nll"].get<double>()), 1e-6 * k["ppl"].get<double>());
    EXPECT_NEAR(k["kv_bytes"].get<double>(), k["positions"].get<double>() * kKvPerPosition, 1e-6) << c;
  }
  // Positions follow from the layout: BOS + 16 targets; 64 context + 16; two chunks of 32 at r -> 2 x 32 / r
  // vectors, [BOC], [EOC], 16 targets.
  EXPECT_EQ(r["conditions"]["none"]["positions"], 17.0);
  EXPECT_EQ(r["conditions"]["full"]["positions"], 80.0);
  EXPECT_EQ(r["conditions"]["compressed@4"]["positions"], 16.0 + 2 + 16);
  EXPECT_EQ(r["conditions"]["compressed@8"]["positions"], 8.0 + 2 + 16);
  // gain retained is what its definition says of the reported NLLs.
  const double none = r["conditions"]["none"]["nll"], full = r["conditions"]["full"]["nll"],
               c4 = r["conditions"]["compressed@4"]["nll"];
  if (none - full > 0)
    EXPECT_NEAR(r["gain_retained@4"].get<double>(), (none - c4) / (none - full), 1e-9);
  else
    EXPECT_TRUE(r["gain_retained@4"].is_null());
  // The same NLLs by target position: buckets 1, 2, 3-4, 5-8, 9-16 whose token-weighted mean is the NLL (every
  // condition scores all 16 targets), and gain retained by position is its definition on them.
  const std::vector<std::string> buckets = {"1", "2", "3-4", "5-8", "9-16"};
  const std::vector<double> weights = {1, 1, 2, 4, 8};
  std::map<std::string, std::vector<double>> by_position;
  for (const char* c : {"none", "full", "compressed@4"}) {
    const json& a = r["conditions"][c]["nll_by_position"];
    ASSERT_EQ(a.size(), buckets.size()) << c;
    double weighted = 0;
    for (size_t i = 0; i < buckets.size(); ++i) {
      EXPECT_EQ(a[i]["positions"], buckets[i]) << c;
      by_position[c].push_back(a[i]["nll"].get<double>());
      weighted += weights[i] * a[i]["nll"].get<double>() / 16;
    }
    EXPECT_NEAR(weighted, r["conditions"][c]["nll"].get<double>(), 1e-5) << c;
    // the buckets are reported in nll_by_position only: no per-bucket metric or standard error beside it
    for (const auto& [key, value] : r["conditions"][c].items()) EXPECT_EQ(key.find('@'), std::string::npos) << key;
  }
  const json& g = r["gain_retained_by_position@4"];
  ASSERT_EQ(g.size(), buckets.size());
  for (size_t i = 0; i < buckets.size(); ++i) {
    const double n = by_position["none"][i], f = by_position["full"][i], c = by_position["compressed@4"][i];
    if (n - f > 0)
      EXPECT_NEAR(g[i]["gain_retained"].get<double>(), (n - c) / (n - f), 1e-9) << buckets[i];
    else
      EXPECT_TRUE(g[i]["gain_retained"].is_null()) << buckets[i];
  }
  // Every item scores all 16 targets, so the paired difference's mean is the difference of the means; each NLL
  // and the difference carry a standard error over the 5 documents.
  EXPECT_NEAR(r["difference@4"]["nll"].get<double>(), c4 - full, 1e-9);
  EXPECT_GE(r["difference@4"]["nll_stderr"].get<double>(), 0.0);
  EXPECT_GT(r["conditions"]["full"]["nll_stderr"].get<double>(), 0.0);
  // Deterministic: the same seed gives the same numbers; another seed other windows.
  json again = run_json("--task ppl --data '" + text().string() +
                        "' --ratio 4,8 --limit 5 --context-tokens 64 "
                        "--target-tokens 16");
  EXPECT_EQ(again["conditions"]["compressed@4"]["nll"], r["conditions"]["compressed@4"]["nll"]);
  json other = run_json("--task ppl --data '" + text().string() +
                        "' --ratio 4,8 --limit 5 --context-tokens 64 "
                        "--target-tokens 16 --seed 7");
  EXPECT_NE(other["conditions"]["none"]["nll"], r["conditions"]["none"]["nll"]);
  // The table form names the conditions too.
  RunResult table =
      run_coenc(m() + "--task ppl --data '" + text().string() + "' --limit 2 --context-tokens 64");
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("compressed@4"), std::string::npos);
  EXPECT_NE(table.out.find("gain_retained@4"), std::string::npos);
  EXPECT_NE(table.out.find("gain_retained_by_position@4 (target tokens): 1 "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("difference@4 (compressed - full, paired): nll "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(" ±"), std::string::npos) << table.out;
}

// --raw-tail N: the context's last N tokens after [EOC] as text, the rest compressed; reported beside the plain
// compressed condition, with its own gain retained and paired difference.
TEST_F(EvalCli, PplWithARawTail) {
  json r = run_json("--task ppl --data '" + text().string() +
                    "' --ratio 4 --limit 3 --context-tokens 64 --target-tokens 16 --raw-tail 8");
  ASSERT_TRUE(r["conditions"].contains("compressed@4")) << r.dump();
  ASSERT_TRUE(r["conditions"].contains("compressed@4+tail8")) << r.dump();
  // 56 compressed tokens: chunks of 32 and 24 -> 8 + 6 vectors, [BOC], [EOC], the 8 tail tokens, 16 targets.
  EXPECT_EQ(r["conditions"]["compressed@4+tail8"]["positions"], 14.0 + 2 + 8 + 16);
  const double none = r["conditions"]["none"]["nll"], full = r["conditions"]["full"]["nll"],
               tail = r["conditions"]["compressed@4+tail8"]["nll"];
  if (none - full > 0)
    EXPECT_NEAR(r["gain_retained@4+tail8"].get<double>(), (none - tail) / (none - full), 1e-9);
  EXPECT_NEAR(r["difference@4+tail8"]["nll"].get<double>(), tail - full, 1e-9);
  EXPECT_EQ(r["gain_retained_by_position@4+tail8"].size(), 5u);
  expect_one_line_error(run_coenc(m() + "--task ppl --data '" + text().string() +
                                  "' --context-tokens 64 --raw-tail 64"),
                        "--raw-tail 64: expected 0 to 63 (fewer than --context-tokens)");
  expect_one_line_error(run_coenc(m() + "--task recon --data '" + text().string() + "' --raw-tail 8"),
                        "--raw-tail is a condition of --task ppl, not of recon");
}

TEST_F(EvalCli, TruncatedWhenTheContextOutgrowsTheWindow) {
  // 400 context tokens + 16 targets do not fit the 256-position decoder: truncated instead of full.
  json r = run_json("--task ppl --data '" + text().string() +
                    "' --limit 2 --context-tokens 400 --target-tokens 16");
  EXPECT_FALSE(r["conditions"].contains("full"));
  ASSERT_TRUE(r["conditions"].contains("truncated"));
  EXPECT_EQ(r["conditions"]["truncated"]["positions"], 256.0);
  EXPECT_EQ(r["conditions"]["compressed@4"]["positions"], 100.0 + 2 + 16);  // 12 chunks of 32 + one of 16
}

TEST_F(EvalCli, ReconAndQa) {
  json rec = run_json("--task recon --data '" + text().string() + "' --limit 3");
  EXPECT_EQ(rec["n"], 3);
  for (const char* key : {"token_accuracy", "exact_accuracy", "bleu4"}) {
    const double v = rec["conditions"]["compressed@4"][key];
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  EXPECT_TRUE(rec["conditions"]["none"].contains("token_accuracy"));
  EXPECT_EQ(rec["conditions"]["compressed@4"]["positions"],
            8.0 + 2 + 32);  // a chunk: 8 vectors, then its text

  json qa = run_json("--task qa --data '" + (dir_->path() / "qa.jsonl").string() + "' --ratio 4,8");
  EXPECT_EQ(qa["n"], 4);
  for (const char* c : {"none", "full", "compressed@4", "compressed@8"})
    for (const char* key : {"em", "f1"}) {
      const double v = qa["conditions"][c][key];
      EXPECT_GE(v, 0.0) << c;
      EXPECT_LE(v, 1.0) << c;
    }
  EXPECT_TRUE(qa.contains("retention@4"));
  // F1 with its standard error over the questions, and compressed minus full paired over the questions both
  // scored (the items file below checks the pairing's inputs; the ppl test the arithmetic).
  for (const char* r : {"4", "8"}) {
    const json& d = qa[std::string("difference@") + r];
    EXPECT_LE(std::abs(d["f1"].get<double>()), 1.0) << d;
    EXPECT_TRUE(d.contains("em_stderr") && d.contains("f1_stderr")) << d;
  }
  EXPECT_TRUE(qa["conditions"]["full"].contains("f1_stderr"));
  EXPECT_FALSE(qa.contains("items"));  // only with --out, into its own file
  // --out writes every item's scores by condition: each question under none, full (or truncated: one of the 4
  // outgrows the window) and both ratios; a condition's rows average to its reported score.
  const fs::path out = dir_->path() / "qa-out";
  json again = run_json("--task qa --data '" + (dir_->path() / "qa.jsonl").string() + "' --ratio 4,8 --out '" +
                        out.string() + "'");
  EXPECT_FALSE(again.contains("items"));
  std::istringstream lines(read_file(out / "qa-items.jsonl"));
  std::map<std::string, std::vector<double>> f1;
  std::map<int64_t, int> conditions_of_item;
  std::set<std::string> ids;
  for (std::string line; std::getline(lines, line);) {
    const json row = json::parse(line);
    f1[row["condition"].get<std::string>()].push_back(row["f1"].get<double>());
    EXPECT_TRUE(row["answer"].is_string()) << row;  // what the decoder answered, for reading the misses
    ids.insert(row["id"].get<std::string>());
    ++conditions_of_item[row["item"].get<int64_t>()];
  }
  EXPECT_EQ(conditions_of_item, (std::map<int64_t, int>{{0, 4}, {1, 4}, {2, 4}, {3, 4}}));
  EXPECT_EQ(ids, (std::set<std::string>{"q0", "q1", "q2", "q3"}));
  ASSERT_EQ(f1.size(), again["conditions"].size());
  for (const auto& [condition, scores] : f1) {
    ASSERT_EQ(static_cast<int64_t>(scores.size()), again["conditions"][condition]["n"].get<int64_t>()) << condition;
    double sum = 0;
    for (double v : scores) sum += v;
    EXPECT_NEAR(sum / static_cast<double>(scores.size()), again["conditions"][condition]["f1"].get<double>(), 1e-9)
        << condition;
  }
  json choice = run_json("--task qa --data '" + (dir_->path() / "choice.jsonl").string() + "'");
  EXPECT_TRUE(choice["conditions"]["full"].contains("accuracy"));
  EXPECT_FALSE(choice["conditions"]["full"].contains("f1"));
  EXPECT_FALSE(choice.contains("retention_accuracy@4"));  // retention@4 is accuracy's already

  // Open questions and a question with options together: retention@R is F1's and retention_accuracy@R
  // accuracy's, whichever question the seed puts first.
  for (const char* seed : {"0", "1", "2"}) {
    json mixed = run_json("--task qa --data '" + (dir_->path() / "qa.jsonl").string() + "' --data '" +
                          (dir_->path() / "choice.jsonl").string() + "' --seed " + seed);
    ASSERT_EQ(mixed["n"], 5);
    const json& c = mixed["conditions"];
    for (const auto& [metric, key] : {std::pair<std::string, std::string>{"f1", "retention@4"},
                                      std::pair<std::string, std::string>{"accuracy", "retention_accuracy@4"}}) {
      ASSERT_TRUE(mixed.contains(key)) << key;
      const double full = c["full"].contains(metric) ? c["full"][metric].get<double>() : 0.0;
      if (full > 0)
        EXPECT_NEAR(mixed[key].get<double>(), c["compressed@4"][metric].get<double>() / full, 1e-9) << key;
      else
        EXPECT_TRUE(mixed[key].is_null()) << key;
    }
  }
}

// Questions a task made from text (lookup, cloze), scored as qa: `n` of them, EM and F1 in [0, 1] under every
// condition, retention and the paired difference, each question once in TASK-items.jsonl (ids TASK-0 ...).
void expect_questions_scored(const json& r, const fs::path& out, const std::string& task, int n) {
  EXPECT_EQ(r["task"], task);
  EXPECT_EQ(r["n"], n);
  for (const char* c : {"none", "full", "compressed@4"})
    for (const char* key : {"em", "f1"}) {
      const double v = r["conditions"][c][key];
      EXPECT_GE(v, 0.0) << c;
      EXPECT_LE(v, 1.0) << c;
    }
  EXPECT_TRUE(r.contains("retention@4") && r.contains("difference@4"));
  std::istringstream lines(read_file(out / (task + "-items.jsonl")));
  std::set<std::string> ids, expected;
  for (std::string line; std::getline(lines, line);) ids.insert(json::parse(line)["id"].get<std::string>());
  for (int i = 0; i < n; ++i) expected.insert(task + "-" + std::to_string(i));
  EXPECT_EQ(ids, expected);
}

// Lookup questions made from the text documents: a 40-token window as the context, its quoted cue as the
// question; scored as qa under every condition, each question once (ids lookup-0 ...), the compressed window
// a quarter of the full one's positions.
TEST_F(EvalCli, LookupAsksAboutTheDocuments) {
  const fs::path out = dir_->path() / "lookup-out";
  json r = run_json("--task lookup --data '" + text().string() + "' --ratio 4 --limit 5 --context-tokens 40 --out '" +
                    out.string() + "'");
  expect_questions_scored(r, out, "lookup", 5);
  // full: the 40-token window, a newline, the question; compressed: 10 vectors between two markers, the question
  const double full = r["conditions"]["full"]["positions"], none = r["conditions"]["none"]["positions"],
               comp = r["conditions"]["compressed@4"]["positions"];
  EXPECT_NEAR(full - none, 41, 3);
  EXPECT_NEAR(comp - none, 12, 0.01);
  // Documents too short to quote from: one line naming the file, non-zero exit.
  write_file(dir_->path() / "short.txt", "a few words\n\n<|doc|>\nand a few more");
  RunResult bad = run_coenc(m() + "--task lookup --data '" + (dir_->path() / "short.txt").string() + "'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("short.txt: no document of at least 16 tokens to quote from"), std::string::npos) << bad.err;
}

// Cloze questions made from prose: a sentence of a 48-token window asked with what / what year / how many where a
// name or number stood; scored as qa under every condition, ids cloze-0 ...; text without names or numbers (the
// fixture's documents) is one line naming the file.
TEST_F(EvalCli, ClozeAsksAboutNamesAndNumbersOfTheDocuments) {
  std::string prose;
  const std::vector<std::string> names = {"Hastings", "London", "Mary", "York", "Paris", "Anna"};
  for (int d = 0; d < 4; ++d) {
    prose += d ? "\n\n<|doc|>\n" : "";
    for (int i = 0; i < 12; ++i)
      prose += "the river " + names[(d + i) % 6] + " was built in " + std::to_string(1000 + 37 * i + d) +
               " by the old council. ";
  }
  write_file(dir_->path() / "prose.txt", prose);
  const fs::path out = dir_->path() / "cloze-out";
  json r = run_json("--task cloze --data '" + (dir_->path() / "prose.txt").string() +
                    "' --ratio 4 --limit 5 --context-tokens 48 --out '" + out.string() + "'");
  expect_questions_scored(r, out, "cloze", 5);
  RunResult bad = run_coenc(m() + "--task cloze --data '" + text().string() + "' --limit 3");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("docs.txt: no cloze question could be made from its documents"), std::string::npos) << bad.err;
}

TEST_F(EvalCli, NeedleWritesItsHeatmap) {
  const fs::path out = dir_->path() / "needle-out";
  json r = run_json("--task needle --data '" + text().string() + "' --limit 1 --out '" + out.string() + "'");
  EXPECT_EQ(r["n"], 25);  // 5 lengths x 5 depths x 1 trial
  ASSERT_TRUE(r["conditions"].contains("full"));
  ASSERT_TRUE(r["conditions"].contains("truncated"));
  EXPECT_EQ(r["conditions"]["full"]["cells"].size(), 25u);
  // Only the half-window haystacks fit whole; 8 windows at r = 4 (384 vectors) never fit 256 positions.
  for (const auto& cell : r["conditions"]["full"]["cells"])
    EXPECT_EQ(cell["accuracy"].is_null(), cell["length_windows"].get<double>() > 1) << cell.dump();
  for (const auto& cell : r["conditions"]["compressed@4"]["cells"])
    if (cell["length_windows"].get<double>() == 8) EXPECT_TRUE(cell["accuracy"].is_null());
  const std::string svg = read_file(out / "needle.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("compressed@4"), std::string::npos);
  EXPECT_EQ(json::parse(read_file(out / "needle.json"))["n"], 25);
}

TEST_F(EvalCli, BadInputIsOneLine) {
  write_file(dir_->path() / "bad.jsonl",
             "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"]}\n{oops\n");
  expect_one_line_error(run_coenc(m() + "--task qa --data '" + (dir_->path() / "bad.jsonl").string() + "'"),
                        "bad.jsonl:2: malformed JSON");
  expect_one_line_error(run_coenc(m() + "--task ppl --data '" + text().string() + "' --ratio 0"),
                        "--ratio 0");
  expect_one_line_error(run_coenc(m() + "--task ppl --data /nonexistent/x.txt"), "/nonexistent/x.txt");
  expect_one_line_error(
      run_coenc(m() + "--task ppl --data '" + text().string() + "' --context-tokens 100000"),
      "--context-tokens");
  RunResult bad_task = run_coenc(m() + "--task summarize --data '" + text().string() + "'");
  EXPECT_NE(bad_task.exit_code, 0);
}

}  // namespace
}  // namespace coenc::test
