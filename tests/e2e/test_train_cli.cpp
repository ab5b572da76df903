// `coenc train` for a Co-Encoder run as a user runs it: a config file, the trained checkpoint answering through
// `coenc ask`, data parallel over two processes (Gloo on the CPU) giving the one-process run, and bad configs
// ending in one clear line.
#include <random>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/generate.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/shapes.h"
#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Documents of random words that the test tokenizer keeps whole, in the corpus format.
std::string random_docs(int n, int len, uint64_t seed) {
  static const char* words[] = {"the", "over", "one", "two", "three", "four", "and", "of", "to", "in", "is", "was"};
  std::mt19937_64 rng(seed);
  std::string out;
  for (int d = 0; d < n; ++d) {
    for (int i = 0; i < len; ++i) out += std::string(" ") + words[rng() % 12];
    out += "\n\n<|doc|>\n";
  }
  return out;
}

// A run config with relative paths (resolved against the config's folder, as a user writes them).
json run_config() {
  json tower = {{"model_type", "llama"}, {"vocab_size", 1200}, {"hidden_size", 48}, {"intermediate_size", 96},
                {"num_hidden_layers", 1}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                {"max_position_embeddings", 64}};
  json decoder = tower;
  decoder["num_hidden_layers"] = 2;
  decoder["tie_word_embeddings"] = true;
  return {{"co_encoder_config",
           {{"model_type", "co_encoder"}, {"context_config", tower}, {"text_config", decoder},
            {"context_feature_layer", -1}, {"projector_hidden_act", "gelu"}, {"begin_of_context_token_id", 1198},
            {"end_of_context_token_id", 1199}, {"pooling", "mean"}, {"compression_ratio", 2}, {"chunk_size", 16},
            {"min_output_size", 1}, {"max_output_size", 8}}},
          {"tokenizer", (test_dir() / "golden/tokenizer/trained").string()},
          {"train_files", {"docs.txt"}},
          {"objectives", {{"reconstruction", 1.0}, {"continuation", 1.0}}},
          {"train", {{"tower", "lora"}}},
          {"out", "out"},
          {"batch_size", 8},
          {"grad_accum", 2},
          {"steps", 6},
          {"warmup_steps", 2},
          {"eval_every", 3},
          {"log_every", 1},
          {"eval_batches", 2},
          {"eval_fraction", 0.1}};
}

std::vector<json> metrics(const fs::path& out) {
  std::vector<json> lines;
  std::istringstream in(read_file(out / "metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) lines.push_back(json::parse(line));
  return lines;
}

TEST(TrainCli, TrainsACheckpointThatAnswers) {
  TempDir dir;
  write_file(dir / "docs.txt", random_docs(200, 30, 1));
  write_file(dir / "run.json", run_config().dump(2));
  RunResult r = run_coenc("train '" + (dir / "run.json").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json summary = json::parse(r.out);
  EXPECT_EQ(summary.at("steps"), 6);
  EXPECT_NE(r.err.find("training"), std::string::npos) << "a progress bar on stderr";
  EXPECT_EQ(metrics(dir / "out").size(), 7u);  // step 0 and every step
  EXPECT_TRUE(fs::exists(dir / "out" / "loss_curve.svg"));

  write_file(dir / "doc.txt", random_docs(1, 40, 2));
  RunResult a = run_coenc("ask -m '" + (dir / "out").string() + "' --doc '" + (dir / "doc.txt").string() +
                          "' -n 4 --temp 0 --json 'what came first?'");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  json answer = json::parse(a.out);
  EXPECT_GT(answer.at("n_vectors").get<int64_t>(), 0);
  // The binary answered from the checkpoint it wrote: the same greedy answer, computed here from that directory.
  CoEncoder model = load_co_encoder(dir / "out", DeviceOptions{});
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(dir / "out", model->config());
  const auto chunks = model->compress(tok.context->encode(read_file(dir / "doc.txt"), EncodeOptions{false, false}));
  AskPrompt prompt = ask_prompt(*model, *tok.text, chunks, "what came first?");
  Session session(model->language_model);
  GenerationOptions go;
  go.max_new_tokens = 4;
  go.sampling.temperature = 0;
  go.stop_tokens = prompt.stop_tokens;
  go.detokenize = [&](const TokenIds& ids) { return tok.text->decode_bytes(ids, true); };
  const GenerationResult expected = generate(session, prompt.segments, go);
  EXPECT_EQ(answer.at("ids").get<TokenIds>(), expected.ids);
  EXPECT_EQ(answer.at("text").get<std::string>(), expected.text);
  int64_t n_vectors = 0;
  for (const auto& c : chunks) n_vectors += c.size(0);
  EXPECT_EQ(answer.at("n_vectors").get<int64_t>(), n_vectors);
}

// A run killed (SIGKILL) at random moments, checkpoint writes included, 20 times, and resumed each time: every
// resume finds a complete checkpoint (in place or the previous one kept aside), and the final weights equal an
// uninterrupted run's, bit for bit.
TEST(TrainCli, KilledAtAnyMomentLosesNothing) {
  TempDir dir;
  write_file(dir / "docs.txt", random_docs(200, 30, 1));
  json c = run_config();
  c["steps"] = 200;
  c["save_every"] = 1;  // a checkpoint after every step: many kills land inside a write
  c["eval_every"] = 200;
  c["progress"] = false;
  write_file(dir / "run.json", c.dump(2));
  c["out"] = "whole";
  write_file(dir / "whole.json", c.dump(2));
  ASSERT_EQ(run_coenc("train '" + (dir / "whole.json").string() + "'").exit_code, 0);

  const fs::path ckpt = dir / "out" / "checkpoint";
  auto has_checkpoint = [&] {
    return fs::exists(ckpt / "state.json") || fs::exists(dir / "out" / "checkpoint.old" / "state.json");
  };
  auto same_as_whole = [&](const std::string& when) {
    auto a = SafetensorsFile::open(dir / "whole" / "model.safetensors"),
         b = SafetensorsFile::open(dir / "out" / "model.safetensors");
    ASSERT_EQ(a->entries().size(), b->entries().size()) << when;
    for (const auto& e : a->entries())
      EXPECT_TRUE(torch::equal(a->tensor(e.name), b->tensor(e.name))) << e.name << " " << when;
  };
  // Kill times are wall-clock, so how far a run gets between kills depends on the machine: a run that reaches its
  // end between two kills is compared with the whole run and started over, until 20 kills have landed.
  std::mt19937_64 rng(7);
  int killed = 0, finished = 0;
  for (int attempt = 0; killed < 20; ++attempt) {
    ASSERT_LT(attempt, 100) << "the kills keep missing the run";
    const double after = std::uniform_real_distribution<double>(0.4, 1.6)(rng);
    const std::string resume = has_checkpoint() ? " --set resume=true" : "";
    const std::string cmd = "timeout -s KILL " + std::to_string(after) + " '" + COENC_BINARY + "' train '" +
                            (dir / "run.json").string() + "'" + resume + " >/dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {  // it finished before the kill
      same_as_whole("after " + std::to_string(killed) + " kills");
      fs::remove_all(dir / "out");
      ++finished;
      continue;
    }
    ++killed;
    // Whatever the moment of the kill, a complete checkpoint is there to resume from (once one was written).
    if (has_checkpoint()) {
      const fs::path found = fs::exists(ckpt / "state.json") ? ckpt : dir / "out" / "checkpoint.old";
      EXPECT_NO_THROW(SafetensorsFile::open(found / "trainable.safetensors")) << "kill " << killed;
      EXPECT_TRUE(json::accept(read_file(found / "state.json"))) << "kill " << killed;
    }
  }
  RunResult last = run_coenc("train '" + (dir / "run.json").string() + "'" +
                             (has_checkpoint() ? " --set resume=true" : ""));
  ASSERT_EQ(last.exit_code, 0) << last.err;
  same_as_whole("at the end");
}

TEST(TrainCli, TwoProcessesTrainAsOne) {
  TempDir dir;
  write_file(dir / "docs.txt", random_docs(200, 30, 3));
  write_file(dir / "run.json", run_config().dump(2));
  const std::string cfg = "train '" + (dir / "run.json").string() + "' --quiet ";
  RunResult one = run_coenc(cfg + "--set out=one");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  RunResult two = run_coenc(cfg + "--set out=two --nproc 2");
  // PyTorch's own libtorch (the GPU build) ships no Gloo headers: there, CPU data parallel is refused by design
  // and the GPU run (NCCL) is checked by docs/benchmarks.md's two-GPU comparison instead.
  if (two.exit_code != 0 && two.err.find("found no gloo headers") != std::string::npos)
    GTEST_SKIP() << "this build has no Gloo: " << two.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'), 1) << "one summary, from the first process: " << two.out;
  const std::vector<json> a = metrics(dir / "one"), b = metrics(dir / "two");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* k : {"train_loss", "eval_loss"})
      if (a[i].contains(k)) {
        ASSERT_TRUE(b[i].contains(k));
        EXPECT_NEAR(a[i][k].get<double>(), b[i][k].get<double>(), 1e-6 * std::abs(a[i][k].get<double>()))
            << k << " at step " << a[i]["step"];
      }
  EXPECT_EQ(read_file(dir / "one" / "model.safetensors"), read_file(dir / "two" / "model.safetensors"));
  // A step's micro-batches must split evenly over the processes.
  expect_one_line_error(run_coenc(cfg + "--set out=three --nproc 3"), "must be a multiple of the number of processes");
}

// `coenc bench --train-examples` runs real training steps (tiny shapes here) and reports what it measured.
TEST(TrainCli, BenchTrainStepReportsThroughput) {
  RunResult r = run_coenc("bench --shape tiny --tower-shape tiny --train-examples 2 --chunk 32 --target-tokens 8 "
                          "--ratios 4 --reps 1 --train-tower lora --checkpointing --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json t = json::parse(r.out).at("train_step");
  EXPECT_EQ(t.at("examples"), 2);
  EXPECT_EQ(t.at("train_tower"), "lora");
  EXPECT_EQ(t.at("activation_checkpointing"), true);
  EXPECT_GT(t.at("seconds_per_step").get<double>(), 0);
  // Each example: 32 context tokens compressed 4:1 into 8 vectors, [BOC] [EOC], 8 target tokens.
  EXPECT_EQ(t.at("decoder_positions").get<int64_t>(), 2 * (8 + 2 + 8));
  EXPECT_NEAR(t.at("context_tokens_per_s").get<double>() * t.at("seconds_per_step").get<double>(), 64, 1e-6);
  expect_one_line_error(run_coenc("bench --shape tiny --tower-shape tiny --train-examples 2 --train-tower half"),
                        "--train-tower must be full, lora or frozen");
}

// Decode is reported against what a step reads and the bandwidth measured in the same run
// (docs/benchmarks.md).
TEST(BenchCli, DecodeReportsItsBandwidthBound) {
  RunResult r = run_coenc("bench --shape tiny --prompt 16 --gen 8 --decode-ctx 24 --reps 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json d = json::parse(r.out).at("decode");
  EXPECT_EQ(d.at("card"), "cpu");
  EXPECT_GT(d.at("measured_copy_gbs").get<double>(), 0);
  EXPECT_FALSE(d.contains("spec_gbs"));  // no data sheet for a CPU
  const ModelConfig tiny = named_shape("tiny");
  EXPECT_DOUBLE_EQ(d.at("bytes_per_token").get<double>(), decode_traffic(tiny, 4, 24 + 8 / 2.0).total());
  const double achieved =
      d.at("bytes_per_token").get<double>() / d.at("seconds_per_token").get<double>() / 1e9;
  EXPECT_NEAR(d.at("achieved_gbs").get<double>(), achieved, 1e-9 * achieved);
  EXPECT_NEAR(d.at("fraction_of_measured").get<double>(), achieved / d.at("measured_copy_gbs").get<double>(),
              1e-9);
  // --bandwidth stands in for the data sheet.
  r = run_coenc("bench --shape tiny --prompt 16 --gen 8 --reps 1 --bandwidth 100 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json g = json::parse(r.out).at("decode");
  EXPECT_EQ(g.at("spec_gbs"), 100);
  EXPECT_EQ(g.at("spec_source"), "--bandwidth");
  EXPECT_NEAR(g.at("fraction_of_spec").get<double>(), g.at("achieved_gbs").get<double>() / 100, 1e-9);
  r = run_coenc("bench --shape tiny --prompt 16 --gen 8 --reps 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("measured copy"), std::string::npos) << r.out;
}

TEST(TrainCli, BadConfigsEndInOneLine) {
  TempDir dir;
  write_file(dir / "docs.txt", random_docs(20, 30, 4));
  auto with = [&](const std::string& key, const json& value) {
    json c = run_config();
    c[key] = value;
    write_file(dir / "bad.json", c.dump());
    return run_coenc("train '" + (dir / "bad.json").string() + "' --quiet");
  };
  expect_one_line_error(with("lora_rank", 4), "unknown field \"lora_rank\"");
  expect_one_line_error(with("train", json{{"tower", "half"}}), "field \"train.tower\" must be");
  expect_one_line_error(with("lora", json{{"rank", -1}}), "lora.rank and lora.alpha must be positive");
  expect_one_line_error(with("train_files", json{"missing.txt"}), "missing.txt");
  write_file(dir / "broken.json", "{\"steps\": ");
  expect_one_line_error(run_coenc("train '" + (dir / "broken.json").string() + "'"), "malformed JSON");
  expect_one_line_error(run_coenc("train --config '" + (dir / "broken.json").string() + "'"), "malformed JSON");
  // -c is --ctx-size wherever it exists (generate, ask): train takes its config as an argument or --config.
  RunResult c = run_coenc("train -c '" + (dir / "broken.json").string() + "'");
  EXPECT_EQ(c.exit_code, 2) << c.err;
  EXPECT_NE(c.err.find("-c"), std::string::npos) << c.err;
}

}  // namespace
}  // namespace coenc::test
