// Co-Encoder training on CPU with tiny random models: reconstruction is learned, compressed context beats no
// context, an interrupted and resumed run equals an uninterrupted one, Ctrl-C saves, and bad configs and JSONL
// lines are reported with the field / file and line.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/co_encoder.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/train.h"
#include "core/torch_compat.h"
#include "test_util.h"
#include "train/co_encoder_data.h"

namespace coenc {
namespace {

using nlohmann::json;
using test::TempDir;
namespace fs = std::filesystem;

// Words that the test tokenizer keeps as one token each (with their leading space).
const std::vector<std::string> kWords = {"the", "over", "one", "two", "three", "four",
                                         "and", "of",   "to",  "in",  "is",    "was"};

// `n` documents of `len` random words each (so text is not predictable without its context).
std::string random_docs(int n, int len, uint64_t seed, int repeat = 1) {
  std::mt19937_64 rng(seed);
  std::string out;
  for (int d = 0; d < n; ++d) {
    std::string doc;
    for (int i = 0; i < len; ++i) doc += " " + kWords[rng() % kWords.size()];
    for (int r = 0; r < repeat; ++r) out += doc;
    out += "\n\n<|doc|>\n";
  }
  return out;
}

// Four documents of `words` words of the sample text, in corpus format, written as DIR/t.txt; its path.
std::string sample_corpus(const TempDir& dir, int words) {
  std::string text;
  for (int i = 0; i < 4; ++i) text += (i ? "\n\n<|doc|>\n" : "") + test::sample_document_text(words);
  test::write_file(dir / "t.txt", text);
  return (dir / "t.txt").string();
}

// `n` documents of `sentences` sentences of prose with a name and a number in each (what cloze questions are made
// of): "the over London of 1532 to was." — random, so a name or number is not predictable without its context.
std::string cloze_docs(int n, int sentences, uint64_t seed) {
  static const std::vector<std::string> kNames = {"Hastings", "London", "Mary", "York", "Paris", "Anna"};
  std::mt19937_64 rng(seed);
  std::string out;
  for (int d = 0; d < n; ++d) {
    for (int i = 0; i < sentences; ++i)
      out += kWords[rng() % kWords.size()] + " " + kWords[rng() % kWords.size()] + " " + kNames[rng() % kNames.size()] +
             " " + kWords[rng() % kWords.size()] + " " + std::to_string(rng() % 2000) + " " +
             kWords[rng() % kWords.size()] + " " + kWords[rng() % kWords.size()] + ". ";
    out += "\n\n<|doc|>\n";
  }
  return out;
}

std::unique_ptr<Tokenizer> trained_tokenizer() {
  return Tokenizer::load((test::test_dir() / "golden/tokenizer/trained").string());
}

json tiny_co_encoder_config(const std::string& pooling, int64_t width = 48) {
  json tower = {{"model_type", "llama"}, {"vocab_size", 1200}, {"hidden_size", width}, {"intermediate_size", 2 * width},
                {"num_hidden_layers", 1}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                {"max_position_embeddings", 64}};
  json decoder = {{"model_type", "llama"}, {"vocab_size", 1200}, {"hidden_size", width}, {"intermediate_size", 2 * width},
                  {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                  {"max_position_embeddings", 64}, {"tie_word_embeddings", true}};
  return {{"model_type", "co_encoder"}, {"context_config", tower}, {"text_config", decoder},
          {"context_feature_layer", -1}, {"projector_hidden_act", "gelu"},
          {"begin_of_context_token_id", 1198}, {"end_of_context_token_id", 1199},
          {"pooling", pooling}, {"compression_ratio", 2}, {"chunk_size", 16},
          {"min_output_size", 1}, {"max_output_size", 8}};
}

json base_config(const TempDir& dir, const std::string& pooling = "mean") {
  return json{{"co_encoder_config", tiny_co_encoder_config(pooling)},
              {"tokenizer", (test::test_dir() / "golden/tokenizer/trained").string()},
              {"out", (dir / "out").string()},
              {"batch_size", 16},
              {"grad_accum", 1},
              {"eval_batches", 2},
              {"eval_fraction", 0.1},
              {"warmup_steps", 10},
              {"progress", false}};
}

// Metrics lines without the timing fields, for exact comparison.
std::vector<json> metrics_of(const fs::path& out) {
  std::vector<json> lines;
  std::ifstream in(out / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    j.erase("tokens_per_s");
    lines.push_back(j);
  }
  return lines;
}

// (a) Every part trains here (tower, connector and decoder): with random frozen towers and decoders the connector
// alone cannot make a random decoder copy text in a few hundred CPU steps. 8 random words (8 tokens) pooled into 4
// vectors, regenerated from them; evaluated on held-out texts, so it is reading the vectors, not memorising (with
// a few hundred distinct texts it memorises them and held-out accuracy stalls). "attn" pooling: its pooled queries
// see where each token sits in the span, which mean pooling of a one-layer causal tower has to learn first (mean
// reached 0.66-0.98 depending on the data seed in 600 steps; attn with these settings 0.97 after 1000 on two other
// data seeds).
TEST(CoEncoderTrain, TinyModelLearnsReconstruction) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(4000, 8, 1));
  json c = base_config(dir);
  c["co_encoder_config"] = tiny_co_encoder_config("attn", 64);
  c["eval_fraction"] = 0.02;
  c["eval_batches"] = 4;
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}};
  c["train"] = {{"tower", "full"}, {"decoder", "full"}};
  c["context_tokens"] = 8;
  c["steps"] = 1000;
  c["lr"] = 4e-3;
  c["weight_decay"] = 0.0;
  c["eval_every"] = 500;
  TrainResult r = train(TrainConfig::from_json(c, "run.json"));
  EXPECT_GT(r.final_eval.at("eval_reconstruction_accuracy").get<double>(), 0.9) << r.final_eval.dump();
  // The result is a Co-Encoder checkpoint with its tokenizers, a metrics file and a loss curve.
  CoEncoder m = load_co_encoder(dir / "out", DeviceOptions{});
  EXPECT_EQ(m->config().pooling, PoolingMode::Attn);
  EXPECT_EQ(m->config().prompt_layout, "raw");  // what every objective trained it on; ask follows it
  EXPECT_TRUE(fs::exists(dir / "out" / "context_tokenizer" / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir / "out" / "text_tokenizer" / "tokenizer.json"));
  EXPECT_NE(test::read_file(dir / "out" / "loss_curve.svg").find("<polyline"), std::string::npos);
  EXPECT_EQ(metrics_of(dir / "out").size(), 3u);  // step 0 and every 500 steps
}

// "compression_ratios": the steps draw their ratio from the list (4 or 8 here), but evaluation and the written
// checkpoint use the config's own ratio (2). With a learning rate too small to move the weights, the held-out
// losses after training steps at 4 and 8 equal those before them, which they would not at another ratio.
TEST(CoEncoderTrain, SeveralRatiosEvaluateAndSaveAtTheConfigsRatio) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(400, 8, 3));
  json c = base_config(dir);
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}};
  c["train"] = {{"tower", "full"}, {"decoder", "full"}};
  c["context_tokens"] = 16;
  c["compression_ratios"] = {4, 8};
  c["steps"] = 4;
  c["eval_every"] = 2;
  c["lr"] = 1e-12;
  c["weight_decay"] = 0.0;
  train(TrainConfig::from_json(c, "run.json"));
  const std::vector<json> m = metrics_of(dir / "out");
  ASSERT_EQ(m.size(), 3u);  // steps 0, 2 and 4
  for (size_t i = 1; i < m.size(); ++i)
    EXPECT_NEAR(m[i].at("eval_reconstruction_loss").get<double>(), m[0].at("eval_reconstruction_loss").get<double>(),
                1e-6)
        << m[i].dump();
  CoEncoder saved = load_co_encoder(dir / "out", DeviceOptions{});
  EXPECT_EQ(saved->config().ratio, 2);
  // The same held-out loss at ratio 4 differs: the check above can tell the ratios apart.
  c["compression_ratios"] = json::array();
  c["co_encoder_config"]["compression_ratio"] = 4;
  c["out"] = (dir / "at4").string();
  c["steps"] = 1;
  c["eval_every"] = 1;
  train(TrainConfig::from_json(c, "run.json"));
  EXPECT_GT(std::abs(metrics_of(dir / "at4")[0].at("eval_reconstruction_loss").get<double>() -
                     m[0].at("eval_reconstruction_loss").get<double>()),
            1e-3);
}

// (b) Each document is 8 random words said twice: the second half is predictable only from the first. Continuation
// (the first half compressed) and the decoder alone ("lm", the same targets without context) train together, so
// the no-context loss is that of a decoder trained for it, not of one that never saw text without a block.
TEST(CoEncoderTrain, ContinuationWithContextBeatsNoContext) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(400, 8, 2, 2));
  json c = base_config(dir);
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"continuation", 1.0}, {"lm", 1.0}};
  c["train"] = {{"tower", "full"}, {"decoder", "full"}};
  c["context_tokens"] = 8;
  c["continuation_tokens"] = 8;
  c["steps"] = 500;
  c["lr"] = 3e-3;
  c["eval_every"] = 500;
  TrainResult r = train(TrainConfig::from_json(c, "run.json"));
  const double with = r.final_eval.at("eval_continuation_loss"), without = r.final_eval.at("eval_continuation_no_context_loss");
  EXPECT_LT(with, without - 0.5) << r.final_eval.dump();
}

// Distillation pulls the compressed reading towards the full one: two runs from the same start and data, tower
// and connector trained on continuation alone and with "distill" as well; the held-out KL divergence between the
// decoder's readings (eval_distill_loss, logged either way) ends lower with it (3.72 -> 3.17 nats a token when
// written; 8 tokens read as 4 vectors cannot say all that a random, sharp decoder reads in them). The teacher is
// the frozen decoder reading the context as text.
TEST(CoEncoderTrain, DistillationBringsTheCompressedReadingCloserToTheFullOne) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(200, 12, 6));
  auto run = [&](double distill) {
    json c = base_config(dir);
    c["out"] = (dir / ("out" + std::to_string(distill))).string();
    c["train_files"] = {(dir / "train.txt").string()};
    c["objectives"] = {{"continuation", 1.0}};
    c["distill"] = distill;
    c["init_std"] = 0.3;  // a random decoder whose next-token distributions depend on what it read
    c["context_tokens"] = 8;
    c["continuation_tokens"] = 4;
    c["train"] = {{"tower", "full"}};  // the decoder stays as it is: a fixed teacher
    c["steps"] = 150;
    c["lr"] = 1e-2;
    c["eval_every"] = 150;
    return train(TrainConfig::from_json(c, "run.json")).final_eval;
  };
  const json plain = run(0), distilled = run(4.0);
  ASSERT_TRUE(plain.contains("eval_distill_loss")) << plain.dump();
  EXPECT_LT(distilled.at("eval_distill_loss").get<double>(), 0.9 * plain.at("eval_distill_loss").get<double>())
      << plain.dump() << "\n" << distilled.dump();
  const std::vector<json> lines = metrics_of(dir / "out4.000000");
  EXPECT_TRUE(lines.back().contains("train_distill_loss")) << lines.back().dump();
}

json resumable_config(const TempDir& dir) {
  test::write_file(dir / "train.txt", random_docs(60, 12, 3));
  json c = base_config(dir, "dynamic");
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 0.2}, {"continuation", 0.8}};  // connector only (the default)
  c["context_tokens"] = 8;
  c["continuation_tokens"] = 4;
  c["batch_size"] = 4;
  c["grad_accum"] = 2;
  c["steps"] = 8;
  c["warmup_steps"] = 2;
  c["lr"] = 1e-2;
  c["log_every"] = 1;
  c["eval_every"] = 3;
  c["save_every"] = 2;
  return c;
}

std::map<std::string, torch::Tensor> weights_of(const fs::path& dir) {
  auto f = SafetensorsFile::open(dir / "model.safetensors");
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : f->entries()) out[e.name] = f->tensor(e.name).clone();
  return out;
}

// (c) 8 steps in one go, and 8 steps as 5 + (killed while swapping checkpoints) + resume: same metrics (every
// step's losses, the evaluations), same final weights, bit for bit.
TEST(CoEncoderTrain, ResumeEqualsUninterruptedRun) {
  TempDir a, b;
  TrainResult ra = train(TrainConfig::from_json(resumable_config(a), "a.json"));
  EXPECT_FALSE(ra.stopped);

  json cb = resumable_config(b);
  cb["stop_after"] = 5;
  TrainResult rb = train(TrainConfig::from_json(cb, "b.json"));
  EXPECT_TRUE(rb.stopped);
  EXPECT_FALSE(rb.interrupted);
  EXPECT_EQ(rb.steps_done, 5);
  EXPECT_FALSE(fs::exists(b / "out" / "model.safetensors"));  // stopped: only the checkpoint
  // A kill between the two renames of the next save: the complete checkpoint is checkpoint.old, a half-written one
  // lies in checkpoint.tmp. Also a metrics line written after the checkpoint, which the resumed run must drop.
  fs::rename(b / "out" / "checkpoint", b / "out" / "checkpoint.old");
  fs::create_directories(b / "out" / "checkpoint.tmp");
  test::write_file(b / "out" / "checkpoint.tmp" / "trainable.safetensors", "garbage");
  {
    std::ofstream m(b / "out" / "metrics.jsonl", std::ios::app);
    m << R"({"step": 6, "train_loss": 123})" << "\n";
  }
  cb.erase("stop_after");
  cb["resume"] = true;
  TrainResult rb2 = train(TrainConfig::from_json(cb, "b.json"));
  EXPECT_FALSE(rb2.stopped);
  EXPECT_EQ(rb2.steps_done, 8);

  const auto ma = metrics_of(a / "out"), mb = metrics_of(b / "out");
  ASSERT_EQ(ma.size(), mb.size());
  ASSERT_EQ(ma.size(), 9u);  // step 0, then every step
  for (size_t i = 0; i < ma.size(); ++i) EXPECT_EQ(ma[i], mb[i]) << "line " << i;
  EXPECT_DOUBLE_EQ(ra.final_train_loss, rb2.final_train_loss);
  auto wa = weights_of(a / "out"), wb = weights_of(b / "out");
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
  // The size loss of dynamic pooling is part of the objective and reported.
  EXPECT_TRUE(ma[1].contains("train_size_loss"));

  // A resume with another config is refused, naming the field.
  json other = cb;
  other["lr"] = 0.5;
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(other, "b.json")), "field \"lr\" differs");
  // A fresh run over an existing checkpoint is refused rather than overwriting it.
  cb.erase("resume");
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(cb, "b.json")), "set \"resume\": true");
}

// Ctrl-C: the step in progress finishes, a checkpoint is saved, train returns with `stopped`, and the run resumes.
TEST(CoEncoderTrain, SigintSavesACheckpoint) {
  TempDir dir;
  json c = resumable_config(dir);
  c["steps"] = 1000000;
  c["save_every"] = 0;
  std::thread interrupter([&] {
    for (int i = 0; i < 3000; ++i) {  // up to 30 s
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!fs::exists(dir / "out" / "metrics.jsonl")) continue;
      const std::string m = test::read_file(dir / "out" / "metrics.jsonl");
      if (std::count(m.begin(), m.end(), '\n') >= 3)
        break;
    }
    std::raise(SIGINT);
  });
  TrainResult r = train(TrainConfig::from_json(c, "run.json"));
  interrupter.join();
  EXPECT_TRUE(r.stopped);
  EXPECT_TRUE(r.interrupted);
  EXPECT_GE(r.steps_done, 2);
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoint" / "state.json"));
  json state = json::parse(test::read_file(dir / "out" / "checkpoint" / "state.json"));
  EXPECT_EQ(state["step"].get<int64_t>(), r.steps_done);
}

TEST(CoEncoderTrain, ConfigErrorsNameTheField) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(20, 8, 4));
  json c = base_config(dir);
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 0.2}, {"continuation", 0.8}, {"qa", 0.0}, {"lm", 0}};
  c["steps"] = 2;
  c["context_tokens"] = 4;
  EXPECT_NO_THROW(TrainConfig::from_json(c, "run.json"));
  auto expect_error = [&](json j, const std::string& needle) {
    EXPECT_COENC_ERROR(TrainConfig::from_json(j, "run.json"), needle);
  };
  json bad = c;
  bad["objectives"]["reconstrucion"] = 1;
  expect_error(bad, "unknown objective \"objectives.reconstrucion\"");
  bad = c;
  bad["objectives"]["qa"] = -1;
  expect_error(bad, "field \"objectives.qa\" must be a weight >= 0");
  bad = c;
  bad["objective"] = "lm";
  expect_error(bad, "not both");
  bad = c;
  bad["distill"] = -0.5;
  expect_error(bad, "distill must be a weight >= 0");
  bad = c;
  bad["objectives"] = {{"reconstruction", 1.0}};
  bad["distill"] = 1.0;
  expect_error(bad, "field \"distill\" teaches the continuation and qa examples");
  bad = c;
  bad["train"] = {{"decoder", "lora"}};
  bad["lora"] = {{"rank", "eight"}};
  expect_error(bad, "field \"rank\" must be an integer from");
  bad["lora"] = {{"rank", 8}, {"dropout", 0.1}};
  expect_error(bad, "unknown field \"lora.dropout\"");
  // (the type and range of scalar fields: Train.ConfigErrorsNameTheField)
  bad = c;
  bad["compression_ratios"] = {4, 2.5};
  expect_error(bad, "field \"compression_ratios\" must be an array, each item an integer");
  bad = c;
  bad["lr"] = "fast";
  expect_error(bad, "field \"lr\" must be a number, got \"fast\"");
  bad = c;
  bad["progress"] = 1;
  expect_error(bad, "field \"progress\" must be true or false");
  bad = c;
  bad["train"] = {{"tower", "half"}};
  expect_error(bad, "field \"train.tower\" must be \"frozen\", \"full\" or \"lora\"");
  bad = c;
  bad["train"] = {{"encoder", "full"}};
  expect_error(bad, "unknown field \"train.encoder\"");
  bad = c;
  bad["train"] = {{"connector", false}};
  expect_error(bad, "leaves nothing to train");
  bad = c;
  bad["objectives"] = {{"lm", 1}};
  expect_error(bad, "objective \"lm\" trains the decoder alone");
  bad = c;
  bad["objectives"] = {{"qa", 1}};
  bad.erase("train_files");
  expect_error(bad, "objectives qa / qa_text read \"qa_files\" (JSONL), none given");
  bad = c;
  bad["objectives"]["qa_text"] = 1;
  bad["qa_files"] = {"qa.jsonl"};
  expect_error(bad, "objective \"qa_text\" trains the decoder alone");
  bad = c;
  bad["tower_layers"] = 1;
  expect_error(bad, "\"tower_layers\" keeps the first layers of \"tower_from\", which is not given");
  bad = c;
  bad["context_tokens"] = 16;
  bad["min_context_tokens"] = 32;
  expect_error(bad, "min_context_tokens (32) must be >= 0 and at most context_tokens (16)");
  bad = c;
  bad["compression_ratios"] = {4, 0};
  expect_error(bad, "field \"compression_ratios\" holds 0");
  bad = c;
  bad["time_budget_s"] = -1;
  expect_error(bad, "time_budget_s must be >= 0");
  bad = c;
  bad["co_encoder"] = "ckpt";
  expect_error(bad, "not both");
  bad = c;
  bad["model_config"] = json::object();
  expect_error(bad, "describe a plain decoder");
  bad = c;
  bad["context_tokenizer"] = "x";
  expect_error(bad, "give \"tokenizer\" (both sides) or");
  // Co-Encoder fields without a Co-Encoder.
  json lm = {{"tokenizer", "t"}, {"model_config", json::object()}, {"out", "o"}, {"save_every", 10}};
  expect_error(lm, "field \"save_every\" applies to the Co-Encoder objectives only");
  lm.erase("save_every");
  lm["objectives"] = {{"qa", 1}};
  expect_error(lm, "objective \"qa\" needs a Co-Encoder");
  // A resume with no checkpoint, and examples longer than the decoder.
  bad = c;
  bad["resume"] = true;
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")), "holds no checkpoint");
  bad = c;
  test::write_file(dir / "long.txt", random_docs(20, 80, 5));
  bad["train_files"] = {(dir / "long.txt").string()};
  bad["context_tokens"] = 16;
  bad["continuation_tokens"] = 60;
  bad["co_encoder_config"]["compression_ratio"] = 1;
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")), "decoder positions but the decoder holds 64");
}

TEST(CoEncoderTrain, QaJsonlErrorsNameFileAndLine) {
  TempDir dir;
  json c = base_config(dir);
  c["objectives"] = {{"qa", 1.0}};
  c["steps"] = 2;
  const std::string good = R"({"context": "one two three", "question": "two?", "answers": ["three"]})";
  auto expect_qa_error = [&](const std::string& text, const std::string& needle) {
    test::write_file(dir / "qa.jsonl", text);
    json j = c;
    j["qa_files"] = {(dir / "qa.jsonl").string()};
    EXPECT_COENC_ERROR(train(TrainConfig::from_json(j, "run.json")), needle);
  };
  expect_qa_error(good + "\n" + good + "\n{\"context\": \n", "qa.jsonl:3: malformed JSON");
  expect_qa_error(good + "\n\n" + R"({"context": "a", "question": "b"})" + "\n", "qa.jsonl:3: missing field \"answers\"");
  expect_qa_error(R"({"context": "a", "question": "b", "answers": []})", "qa.jsonl:1: field \"answers\" must be");
  expect_qa_error(R"({"context": 5, "question": "b", "answers": "c"})", "qa.jsonl:1: field \"context\" must be");
  expect_qa_error(R"([1, 2])", "qa.jsonl:1: expected a JSON object");
  expect_qa_error(good + "\n", "qa_files: 1 example(s)");
  // A well-formed file trains (answers as a string or a list).
  std::string ok;
  for (int i = 0; i < 10; ++i)
    ok += R"({"context": "one two three four", "question": " is two", "answers": )" +
          std::string(i % 2 ? R"(["three"])" : R"("four")") + ", \"id\": " + std::to_string(i) + "}\n";
  test::write_file(dir / "qa.jsonl", ok);
  json j = c;
  j["qa_files"] = {(dir / "qa.jsonl").string()};
  TrainResult r = train(TrainConfig::from_json(j, "run.json"));
  EXPECT_TRUE(r.final_eval.contains("eval_qa_loss"));
  EXPECT_TRUE(r.final_eval.contains("eval_qa_no_context_loss"));
}


// ---- LoRA, activation checkpointing, autocast -------------------------------------------------------------------

ModelConfig tiny_decoder_config() {
  return CoEncoderConfig::from_json(tiny_co_encoder_config("mean"), "tiny").text;
}

torch::Tensor tiny_input(const ModelConfig& c, uint64_t seed) {
  return torch::randint(c.vocab_size, {2, 12}, at::detail::createCPUGenerator(seed), torch::kInt64);
}

TEST(Lora, StartsAsTheBaseModelTrainsOnlyAdaptersAndMergesExactly) {
  const ModelConfig cfg = tiny_decoder_config();
  DecoderLm lm = random_decoder(cfg, DeviceOptions{}, 1);
  const torch::Tensor ids = tiny_input(cfg, 2);
  auto hidden = [&] { return lm->forward_hidden(lm->embed(ids), ForwardArgs{}); };
  torch::Tensor base;
  {
    torch::NoGradGuard no_grad;
    base = hidden();
  }
  LoraOptions o;
  o.rank = 4;
  o.alpha = 8;
  std::vector<torch::Tensor> params = lm->add_lora(o, 3);
  ASSERT_EQ(params.size(), static_cast<size_t>(2 * 7 * cfg.n_layers));
  {
    torch::NoGradGuard no_grad;
    // B = 0: an adapter starts as the identity (up to the rounding of unfused projections).
    EXPECT_TRUE(torch::allclose(hidden(), base, 1e-5, 1e-6));
    for (size_t i = 1; i < params.size(); i += 2) params[i].normal_(0.0, 0.05);  // make every B non-zero
  }
  torch::Tensor adapted_inference;
  {
    torch::NoGradGuard no_grad;  // the fused inference paths must step aside for adapted projections
    adapted_inference = hidden();
  }
  torch::Tensor adapted = hidden();
  EXPECT_TRUE(torch::allclose(adapted_inference, adapted, 1e-5, 1e-6));
  EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3) << "the adapters change the output";
  adapted.square().mean().backward();
  for (const auto& p : params) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0);
  }
  for (const auto& p : lm->named_parameters())
    if (p.key().find(".lora_") == std::string::npos) EXPECT_FALSE(p.value().grad().defined()) << p.key();
  lm->merge_lora();
  for (const auto& p : lm->named_parameters()) EXPECT_EQ(p.key().find("lora"), std::string::npos) << p.key();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(hidden(), adapted_inference, 1e-5, 1e-5)) << "merged weights = base + adapters";
  EXPECT_COENC_ERROR(lm->add_lora(LoraOptions{4, 8, {"qkv"}}, 1), "unknown target \"qkv\"");
}

TEST(ActivationCheckpointing, SameOutputAndGradientsAsKeepingActivations) {
  const ModelConfig cfg = tiny_decoder_config();
  const torch::Tensor ids = tiny_input(cfg, 4);
  std::vector<std::vector<torch::Tensor>> grads;
  std::vector<torch::Tensor> outputs;
  for (bool checkpointing : {false, true}) {
    DecoderLm lm = random_decoder(cfg, DeviceOptions{}, 5);
    std::vector<torch::Tensor> params = lm->add_lora(LoraOptions{}, 6);
    {
      torch::NoGradGuard no_grad;
      auto gen = at::detail::createCPUGenerator(11);  // the same B in both models
      for (size_t i = 1; i < params.size(); i += 2) params[i].copy_(torch::randn(params[i].sizes(), gen) * 0.05);
    }
    lm->set_activation_checkpointing(checkpointing);
    torch::Tensor x = lm->embed(ids).detach().requires_grad_(true);
    torch::Tensor h = lm->forward_hidden(x, ForwardArgs{});
    h.square().mean().backward();
    outputs.push_back(h.detach());
    std::vector<torch::Tensor> g = {x.grad()};
    for (const auto& p : params) g.push_back(p.grad());
    grads.push_back(g);
  }
  EXPECT_TRUE(torch::allclose(outputs[0], outputs[1], 1e-5, 1e-6));
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_TRUE(grads[1][i].defined()) << "gradient " << i << " missing with checkpointing";
    EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-4, 1e-7)) << "gradient " << i;
  }
}

TEST(Autocast, Bf16OnTheCpuRoundsButKeepsTheResultAndIsScoped) {
  const ModelConfig cfg = tiny_decoder_config();
  DecoderLm lm = random_decoder(cfg, DeviceOptions{}, 7);
  const torch::Tensor ids = tiny_input(cfg, 8);
  torch::NoGradGuard no_grad;
  torch::Tensor f32 = lm->forward_hidden(lm->embed(ids), ForwardArgs{}), mixed;
  {
    compat::AutocastScope scope(torch::kCPU, {true, torch::kBFloat16});
    EXPECT_TRUE(compat::autocast_state(torch::kCPU).enabled);
    mixed = lm->forward_hidden(lm->embed(ids), ForwardArgs{}).to(torch::kFloat32);
  }
  EXPECT_FALSE(compat::autocast_state(torch::kCPU).enabled);
  const double rel = ((mixed - f32).norm() / f32.norm()).item<double>();
  EXPECT_GT(rel, 0) << "autocast did not take effect";
  EXPECT_LT(rel, 0.05);
}

// A tower trained with LoRA (merged and embedded when saved) and a frozen decoder loaded from a directory
// (referenced by a relative path, so the pair can move together), in bf16 autocast with activation checkpointing.
TEST(CoEncoderTrain, LoraTowerAndReferencedDecoder) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(60, 12, 9));
  const CoEncoderConfig tiny = CoEncoderConfig::from_json(tiny_co_encoder_config("mean"), "tiny");
  save_decoder(random_decoder(tiny.text, DeviceOptions{}, 10), dir / "models" / "decoder");
  json cc = tiny_co_encoder_config("mean");
  cc.erase("text_config");
  json c = base_config(dir);
  c["co_encoder_config"] = cc;
  c["decoder_from"] = (dir / "models" / "decoder").string();
  c["out"] = (dir / "models" / "trained").string();
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}};
  c["train"] = {{"tower", "lora"}};
  c["lora"] = {{"rank", 4}, {"alpha", 8}, {"targets", {"q_proj", "v_proj", "down_proj"}}};
  c["autocast"] = "bf16";
  c["activation_checkpointing"] = true;
  c["save_dtype"] = "bf16";
  c["steps"] = 4;
  c["lr"] = 1e-2;
  train(TrainConfig::from_json(c, "run.json"));

  const json written = json::parse(test::read_file(dir / "models" / "trained" / "config.json"));
  EXPECT_EQ(written.value("language_model_path", ""), "../decoder");
  EXPECT_FALSE(written.contains("context_tower_path"));
  auto weights = SafetensorsFile::open(dir / "models" / "trained" / "model.safetensors");
  bool has_tower = false;
  for (const auto& entry : weights->entries()) {
    const std::string& name = entry.name;
    EXPECT_EQ(name.find("language_model."), std::string::npos) << "the referenced decoder was copied: " << name;
    EXPECT_EQ(name.find("lora"), std::string::npos) << "adapters are merged when saved: " << name;
    has_tower = has_tower || name.rfind("context_tower.", 0) == 0;
    EXPECT_EQ(entry.dtype, "BF16") << name;
  }
  EXPECT_TRUE(has_tower);
  // Moved together, the two directories still load; the tower's adapted projections moved, the others did not.
  test::copy_tree(dir / "models", dir / "moved");
  CoEncoder m = load_co_encoder(dir / "moved" / "trained", DeviceOptions{});
  DecoderLm initial = random_decoder(tiny.context, DeviceOptions{}, 0);  // the run's seed 0 made the tower
  auto* l0 = m->context_tower->tower->model->layers[0]->as<DecoderLayerImpl>();
  auto* i0 = initial->model->layers[0]->as<DecoderLayerImpl>();
  auto bf16 = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat32); };
  EXPECT_GT((l0->self_attn->q_proj->weight - bf16(i0->self_attn->q_proj->weight)).abs().max().item<double>(), 0);
  EXPECT_TRUE(torch::equal(l0->self_attn->k_proj->weight, bf16(i0->self_attn->k_proj->weight)));
  // A bad "lora" field names itself.
  json bad = c;
  bad["lora"] = {{"rank", 4}, {"targets", {"qkv"}}};
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "unknown lora.targets entry \"qkv\"");
  bad = c;
  bad["autocast"] = "fp8";
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "field \"autocast\" must be");
  bad = c;
  bad["train"] = {{"tower", "frozen"}};
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "field \"lora\" is given but");
}

// "lr_scale": each part learns at lr times its scale; a part at 0 stays exactly where it was while the others move
// (its gradients still flow to them). A bad scale names its field.
TEST(CoEncoderTrain, LrScaleSetsEachPartsLearningRate) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(60, 12, 9));
  json c = base_config(dir);
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}};
  c["train"] = {{"tower", "full"}, {"decoder", "full"}};
  c["steps"] = 3;
  c["lr"] = 1e-2;
  c["out"] = (dir / "first").string();
  train(TrainConfig::from_json(c, "run.json"));  // a checkpoint to start from

  json next = c;
  next.erase("co_encoder_config");
  next["co_encoder"] = (dir / "first").string();
  next["out"] = (dir / "second").string();
  next["lr_scale"] = {{"decoder", 0.0}, {"tower", 0.5}};
  train(TrainConfig::from_json(next, "run.json"));

  auto before = SafetensorsFile::open(dir / "first" / "model.safetensors");
  auto after = SafetensorsFile::open(dir / "second" / "model.safetensors");
  std::map<std::string, int> moved, total;
  for (const auto& entry : before->entries()) {
    const std::string part = entry.name.substr(0, entry.name.find('.'));
    ++total[part];
    if (!torch::equal(before->tensor(entry.name), after->tensor(entry.name))) ++moved[part];
  }
  ASSERT_GT(total["language_model"], 0);
  EXPECT_EQ(moved["language_model"], 0) << "the decoder at lr_scale 0 moved";
  EXPECT_GT(moved["context_tower"], 0);
  EXPECT_GT(moved["connector"], 0);

  json bad = next;
  bad["lr_scale"] = {{"decoder", -1}};
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "field \"lr_scale.decoder\" must be a number >= 0");
  bad["lr_scale"] = {{"projector", 0.5}};
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "unknown field \"lr_scale.projector\"");
  bad["lr_scale"] = 0.5;
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "field \"lr_scale\" must be an object");
  bad["lr_scale"] = {{"decoder", 0.3}};
  bad["train"] = {{"tower", "full"}, {"decoder", "frozen"}};
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"),
                     "field \"lr_scale.decoder\" is given but \"train\" leaves the decoder frozen");
}

TEST(CoEncoderTrain, ReadsXzCompressedTextAndQa) {
  TempDir d;
  test::write_file(d / "t.txt", test::sample_document_text(300) + "\n\n<|doc|>\n" + test::sample_document_text(300));
  std::string qa;
  for (int i = 0; i < 3; ++i)
    qa += "{\"context\": \"" + test::sample_document_text(20) + "\", \"question\": \"q?\", \"answers\": [\"a\"]}\n";
  test::write_file(d / "qa.jsonl", qa);
  ASSERT_EQ(std::system(("xz -z '" + (d / "t.txt").string() + "' '" + (d / "qa.jsonl").string() + "'").c_str()), 0);
  auto tok = Tokenizer::load((test::test_dir() / "golden/tokenizer/trained").string());
  data::QaExamples q({(d / "qa.jsonl.xz").string()}, *tok, *tok, 0.3, 64, 512);
  EXPECT_EQ(q.n_train() + q.n_eval(), 3);
  data::TextExamples t({(d / "t.txt.xz").string()}, *tok, *tok, true, 0.3, 40, 8, true, false);
  EXPECT_EQ(t.n_train_docs() + t.n_eval_docs(), 2);
  test::write_file(d / "bad.jsonl.xz", "not xz");
  EXPECT_COENC_ERROR(data::QaExamples({(d / "bad.jsonl.xz").string()}, *tok, *tok, 0.3, 64, 512),
                     "bad.jsonl.xz: not a valid .xz file");
}

// min_context_tokens: training examples draw their context length from [min, context_tokens] (every length
// in between turns up); evaluation examples keep context_tokens, so eval losses stay comparable across runs.
TEST(CoEncoderTrain, ContextLengthsVaryBetweenMinAndMax) {
  TempDir d;
  const std::string corpus = sample_corpus(d, 400);
  auto tok = trained_tokenizer();
  data::TextExamples ex({corpus}, *tok, *tok, true, 0.3, 40, 8, true, false, 20);
  std::mt19937_64 rng(1);
  std::set<size_t> lengths;
  for (int i = 0; i < 400; ++i) {
    for (auto o : {data::Objective::Reconstruction, data::Objective::Continuation}) {
      const auto e = ex.sample(o, rng, false);
      EXPECT_GE(e.context.size(), 20u);
      EXPECT_LE(e.context.size(), 40u);
      lengths.insert(e.context.size());
    }
  }
  EXPECT_EQ(lengths.size(), 21u);  // 20..40, all of them
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(ex.sample(data::Objective::Continuation, rng, true).context.size(), 40u);
  EXPECT_COENC_ERROR(
      data::TextExamples({corpus}, *tok, *tok, true, 0.3, 40, 8, true, false, 41),
      "min_context_tokens (41) must be in [0, context_tokens (40)]");
}

// The passkey drill: the context is a haystack of the training text with " The secret number is NNNNN. " inside,
// of a length between 64 and passkey_tokens (running on across documents), and the target is that same number.
TEST(CoEncoderTrain, PasskeyExamplesHideTheirAnswerInTheContext) {
  TempDir d;
  const std::string corpus = sample_corpus(d, 150);
  auto tok = trained_tokenizer();
  data::TextExamples ex({corpus}, *tok, *tok, true, 0.3, 40, 8, false, false, 0, 600);
  std::mt19937_64 rng(3);
  size_t shortest = 1 << 30, longest = 0;
  for (int i = 0; i < 200; ++i) {
    const auto e = ex.sample(data::Objective::Passkey, rng, i % 4 == 0);
    ASSERT_EQ(e.objective, data::Objective::Passkey);
    shortest = std::min(shortest, e.context.size());
    longest = std::max(longest, e.context.size());
    ASSERT_TRUE(tok->eos_id() && e.target.back() == *tok->eos_id());
    const std::string context = tok->decode(e.context),
                      answer = tok->decode(TokenIds(e.target.begin(), e.target.end() - 1));
    ASSERT_EQ(answer.size(), 6u) << answer;  // " NNNNN", then EOS
    EXPECT_NE(context.find("The secret number is" + answer + "."), std::string::npos) << context;
    EXPECT_EQ(tok->decode(e.prompt), "What is the secret number?");
  }
  EXPECT_GE(shortest, 64u);
  EXPECT_LE(longest, 600u);
  EXPECT_GT(longest, 400u);  // longer than any one document: the haystack runs on into the next
  // The trainer's cap (what the decoder holds at the step's ratio) lowers the upper bound, never the lower one.
  size_t capped_longest = 0;
  for (int i = 0; i < 100; ++i) {
    const auto e = ex.sample(data::Objective::Passkey, rng, false, 150);
    EXPECT_GE(e.context.size(), 64u);
    capped_longest = std::max(capped_longest, e.context.size());
  }
  EXPECT_LE(capped_longest, 150u);
  EXPECT_GT(capped_longest, 120u);
}

// A *_text objective is its compressed twin's draw read in full: no context block, the window's text then the
// question (plain_text_prompt), the same target.
void expect_read_in_full(const data::TextExamples& ex, data::Objective compressed_o, data::Objective full_o,
                         const Tokenizer& tok) {
  for (int i = 0; i < 10; ++i) {
    std::mt19937_64 a(100 + i), b(100 + i);
    const auto compressed = ex.sample(compressed_o, a, i % 2 == 0);
    const auto full = ex.sample(full_o, b, i % 2 == 0);
    EXPECT_EQ(full.objective, full_o);
    EXPECT_TRUE(full.context.empty());
    EXPECT_EQ(full.target, compressed.target);
    EXPECT_EQ(full.prompt, plain_text_prompt(tok, compressed.context, compressed.prompt));
    EXPECT_GT(full.prompt.size(), compressed.context.size() + compressed.prompt.size());  // the newline between
  }
}

// The lookup drill: the context is a window of the text, the prompt quotes kLookupCueTokens of its tokens, and
// the target is the kLookupAnswerTokens tokens that follow them there, then EOS; documents too short for a cue
// and its answer are one clear error.
TEST(CoEncoderTrain, LookupExamplesQuoteACueAndAskForWhatFollows) {
  TempDir d;
  const std::string corpus = sample_corpus(d, 150);
  auto tok = trained_tokenizer();
  data::TextExamples ex({corpus}, *tok, *tok, true, 0.3, 40, 8, false, false);
  std::mt19937_64 rng(5);
  std::set<std::string> answers;
  int whole = 0;
  for (int i = 0; i < 100; ++i) {
    const auto e = ex.sample(data::Objective::Lookup, rng, i % 4 == 0);
    ASSERT_EQ(e.objective, data::Objective::Lookup);
    EXPECT_EQ(e.context.size(), 40u);  // the documents are longer than context_tokens
    ASSERT_GE(e.target.size(), static_cast<size_t>(kLookupAnswerTokens) + 1);
    ASSERT_LE(e.target.size(), static_cast<size_t>(kLookupAnswerTokens + kLookupWordSlack) + 1);
    ASSERT_TRUE(tok->eos_id() && e.target.back() == *tok->eos_id());
    const std::string prompt = tok->decode(e.prompt), lead = "What follows \"", tail = "\" in the text?";
    ASSERT_EQ(prompt.rfind(lead, 0), 0u) << prompt;
    ASSERT_EQ(prompt.substr(prompt.size() - tail.size()), tail) << prompt;
    const std::string quote = prompt.substr(lead.size(), prompt.size() - lead.size() - tail.size());
    const std::string answer = tok->decode(TokenIds(e.target.begin(), e.target.end() - 1));
    std::string context = tok->decode(e.context);
    std::replace(context.begin(), context.end(), '\n', ' ');
    // In the context, the quote is followed by the answer (across the blank the quote was trimmed of).
    const size_t at = context.find(quote);
    ASSERT_NE(at, std::string::npos) << quote << "\n" << context;
    const std::string after = context.substr(at + quote.size());
    const size_t start = after.find_first_not_of(' '), a_start = answer.find_first_not_of(' ');
    ASSERT_NE(a_start, std::string::npos);
    EXPECT_EQ(after.substr(start, answer.size() - a_start), answer.substr(a_start)) << quote << " | " << answer;
    // whole words: the answer begins after the quote's last word and ends where a word ends
    EXPECT_TRUE(answer[0] == ' ' || std::ispunct(static_cast<unsigned char>(answer[0]))) << answer;
    const size_t end = start + answer.size() - a_start;
    whole += end >= after.size() || after[end] == ' ' || std::ispunct(static_cast<unsigned char>(after[end]));
    answers.insert(answer);
  }
  EXPECT_GT(answers.size(), 30u);  // drawn from all over the text
  EXPECT_GE(whole, 95);             // a window of 40 leaves room to reach a word's end (but at the window's end)
  // lookup_text: the same draw read in full, as the full condition of `coenc eval --task lookup` lays it out
  expect_read_in_full(ex, data::Objective::Lookup, data::Objective::LookupText, *tok);
  test::write_file(d / "short.txt", random_docs(20, 5, 1));
  data::TextExamples short_docs({(d / "short.txt").string()}, *tok, *tok, true, 0.3, 40, 8, false, false);
  EXPECT_COENC_ERROR(short_docs.sample(data::Objective::Lookup, rng, false),
                     "objective lookup: no training document of at least 16 tokens");
  EXPECT_COENC_ERROR(short_docs.sample(data::Objective::LookupText, rng, true),
                     "objective lookup_text: no held-out document of at least 16 tokens");
}

// Objectives "lookup" and "lookup_text" in a run: weighted beside reconstruction, they train and are evaluated,
// lookup with its no-context baseline (as passkey and QA are), lookup_text (no context to leave out) without.
TEST(CoEncoderTrain, LookupObjectiveIsTrainedAndEvaluated) {
  TempDir dir;
  test::write_file(dir / "train.txt", random_docs(200, 30, 7));
  json c = base_config(dir);
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}, {"lookup", 1.0}, {"lookup_text", 0.5}};
  c["train"] = {{"connector", true}, {"tower", "full"}, {"decoder", "full"}};
  c["context_tokens"] = 24;
  c["steps"] = 6;
  c["eval_every"] = 6;
  TrainResult r = train(TrainConfig::from_json(c, "run.json"));
  for (const char* key : {"eval_lookup_loss", "eval_lookup_no_context_loss", "eval_lookup_text_loss",
                          "eval_reconstruction_loss"}) {
    ASSERT_TRUE(r.final_eval.contains(key)) << key << ": " << r.final_eval.dump();
    EXPECT_TRUE(std::isfinite(r.final_eval.at(key).get<double>())) << key;
  }
  EXPECT_FALSE(r.final_eval.contains("eval_lookup_text_no_context_loss"));
  const json last = metrics_of(dir / "out").back();
  EXPECT_TRUE(last.contains("eval_lookup_loss") && last.contains("eval_lookup_text_loss")) << last.dump();
  json bad = c;
  bad["train_files"] = json::array();
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"),
                     "objectives reconstruction / continuation / lm / passkey / lookup / lookup_text / cloze / "
                     "cloze_text read \"train_files\"");
  bad = c;
  bad["train"]["decoder"] = "frozen";
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "objective \"lookup_text\" trains the decoder alone");
  bad = c;
  bad["context_tokens"] = 40;  // + 40 > the tiny decoder's 64 positions
  fs::remove_all(dir / "out");
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")),
                     "objective lookup_text reads a window of context_tokens = 40 tokens as text: the decoder holds "
                     "64 positions");
}

// The cloze drill: the context is a window of the text, the prompt one of its sentences with "what", "what year" or
// "how many" where a name or number stood, the target " " + that name or number then EOS; cloze_text is the same
// draw read in full; text without names or numbers is one clear error.
TEST(CoEncoderTrain, ClozeExamplesAskForANameOrNumberOfTheirWindow) {
  TempDir d;
  test::write_file(d / "t.txt", cloze_docs(20, 30, 3));
  auto tok = trained_tokenizer();
  data::TextExamples ex({(d / "t.txt").string()}, *tok, *tok, true, 0.3, 60, 8, false, false);
  std::mt19937_64 rng(5);
  std::set<std::string> answers;
  std::map<std::string, int> wh;
  for (int i = 0; i < 100; ++i) {
    const auto e = ex.sample(data::Objective::Cloze, rng, i % 4 == 0);
    ASSERT_EQ(e.objective, data::Objective::Cloze);
    EXPECT_EQ(e.context.size(), 60u);  // the documents are longer than context_tokens
    ASSERT_TRUE(tok->eos_id() && e.target.size() >= 2 && e.target.back() == *tok->eos_id());
    const std::string answer = tok->decode(TokenIds(e.target.begin(), e.target.end() - 1));
    ASSERT_EQ(answer[0], ' ') << answer;
    std::string question = tok->decode(e.prompt), context = tok->decode(e.context);
    ASSERT_EQ(question.back(), '?') << question;
    question.pop_back();
    const bool number = std::isdigit(static_cast<unsigned char>(answer[1]));
    const std::string phrase = !number ? "what" : std::stoi(answer) >= 1000 ? "what year" : "how many";
    const size_t at = question.find(phrase);
    ASSERT_NE(at, std::string::npos) << question << " | " << answer;
    ++wh[phrase];
    // the sentence the question was made from, with the answer back in its place, stands in the context
    const std::string sentence = question.substr(0, at) + answer.substr(1) + question.substr(at + phrase.size());
    EXPECT_NE(context.find(sentence + "."), std::string::npos) << sentence << "\n" << context;
    answers.insert(answer);
  }
  EXPECT_GT(answers.size(), 30u);  // names and numbers from all over the text
  EXPECT_EQ(wh.size(), 3u);        // names, years and counts
  expect_read_in_full(ex, data::Objective::Cloze, data::Objective::ClozeText, *tok);
  test::write_file(d / "plain.txt", random_docs(20, 60, 1));  // sentences without names or numbers
  data::TextExamples plain({(d / "plain.txt").string()}, *tok, *tok, true, 0.3, 40, 8, false, false);
  EXPECT_COENC_ERROR(plain.sample(data::Objective::Cloze, rng, false),
                     "objective cloze: no training window of the train_files made a cloze question in 64 draws");
  EXPECT_COENC_ERROR(plain.sample(data::Objective::ClozeText, rng, true),
                     "objective cloze_text: no held-out window");
}

// Objectives "cloze" and "cloze_text" in a run: they train and are evaluated, cloze with its no-context baseline;
// cloze_text needs the decoder trained and context_tokens + 128 positions.
TEST(CoEncoderTrain, ClozeObjectiveIsTrainedAndEvaluated) {
  TempDir dir;
  test::write_file(dir / "train.txt", cloze_docs(60, 8, 7));
  json c = base_config(dir);
  c["co_encoder_config"]["text_config"]["max_position_embeddings"] = 192;
  c["train_files"] = {(dir / "train.txt").string()};
  c["objectives"] = {{"reconstruction", 1.0}, {"cloze", 1.0}, {"cloze_text", 0.5}};
  c["train"] = {{"connector", true}, {"tower", "full"}, {"decoder", "full"}};
  c["context_tokens"] = 48;
  c["steps"] = 4;
  c["eval_every"] = 4;
  TrainResult r = train(TrainConfig::from_json(c, "run.json"));
  for (const char* key : {"eval_cloze_loss", "eval_cloze_no_context_loss", "eval_cloze_text_loss"}) {
    ASSERT_TRUE(r.final_eval.contains(key)) << key << ": " << r.final_eval.dump();
    EXPECT_TRUE(std::isfinite(r.final_eval.at(key).get<double>())) << key;
  }
  EXPECT_FALSE(r.final_eval.contains("eval_cloze_text_no_context_loss"));
  json bad = c;
  bad["train"]["decoder"] = "frozen";
  EXPECT_COENC_ERROR(TrainConfig::from_json(bad, "run.json"), "objective \"cloze_text\" trains the decoder alone");
  bad = c;
  bad["context_tokens"] = 80;  // + 128 > 192
  fs::remove_all(dir / "out");
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")),
                     "objective cloze_text reads a window of context_tokens = 80 tokens as text: the decoder holds "
                     "192 positions, and the question and answer need 128 more");
}

// lm_tokens sets the plain-text window of objective lm apart from continuation's target: lm examples have no
// context and a target of lm_tokens tokens (the documents are longer), continuation keeps its own length.
TEST(CoEncoderTrain, LmExamplesTakeTheirOwnWindow) {
  TempDir d;
  const std::string corpus = sample_corpus(d, 150);
  auto tok = trained_tokenizer();
  data::TextExamples ex({corpus}, *tok, *tok, true, 0.3, 40, 8, true, false, 0, 0, 96);
  data::TextExamples plain({corpus}, *tok, *tok, true, 0.3, 40, 8, true, false);
  std::mt19937_64 rng(4);
  for (int i = 0; i < 20; ++i) {
    const auto lm = ex.sample(data::Objective::Lm, rng, i % 2 == 0);
    EXPECT_TRUE(lm.context.empty());
    EXPECT_EQ(lm.target.size(), 96u);
    const auto cont = ex.sample(data::Objective::Continuation, rng, false, 0, true);
    EXPECT_EQ(cont.target.size(), 8u);
    EXPECT_EQ(cont.teacher_prompt, cont.context);  // its full reading: the context as text (one tokenizer here)
    EXPECT_TRUE(ex.sample(data::Objective::Continuation, rng, false).teacher_prompt.empty());  // not asked for
    EXPECT_TRUE(lm.teacher_prompt.empty());
    EXPECT_EQ(plain.sample(data::Objective::Lm, rng, false).target.size(), 8u);  // 0: continuation_tokens
  }
}

// qa_text reads the whole context as plain text, so it draws only the items whose reading fits the window;
// with none that fit it says so.
TEST(CoEncoderTrain, QaTextDrawsOnlyItemsThatFitTheWindow) {
  TempDir d;
  std::string qa;
  for (int i = 0; i < 8; ++i)
    qa += "{\"context\": \"" + test::sample_document_text(i % 2 ? 10 : 200) +
          "\", \"question\": \"q?\", \"answers\": [\"a\"]}\n";
  test::write_file(d / "qa.jsonl", qa);
  auto tok = Tokenizer::load((test::test_dir() / "golden/tokenizer/trained").string());
  data::QaExamples q({(d / "qa.jsonl").string()}, *tok, *tok, 0.3, 1000, 100);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 50; ++i) {
    const auto e = q.sample(data::Objective::QaText, rng, false);
    EXPECT_LE(e.prompt.size() + e.target.size(), 100u);
    EXPECT_TRUE(e.teacher_prompt.empty());
    // A compressed QA example carries its full reading (for distillation) where that fits, as qa_text reads it.
    const auto c = q.sample(data::Objective::Qa, rng, false, true);
    EXPECT_TRUE(q.sample(data::Objective::Qa, rng, false).teacher_prompt.empty());  // not asked for
    if (c.context.size() > 50) {
      EXPECT_TRUE(c.teacher_prompt.empty());
    } else {
      EXPECT_EQ(c.teacher_prompt, plain_text_prompt(*tok, c.context, c.prompt));
    }
  }
  data::QaExamples none({(d / "qa.jsonl").string()}, *tok, *tok, 0.3, 1000, 5);
  EXPECT_COENC_ERROR(none.sample(data::Objective::QaText, rng, false),
                     "fit the decoder's window as plain text");
  EXPECT_EQ(none.sample(data::Objective::Qa, rng, false).objective, data::Objective::Qa);  // qa is unaffected
}

// The training stages of the default model (scripts/default_model/*.json, docs/default-model.md) are configs a
// later session runs on a lent GPU without trying them first: each must parse (objective names, weights, the
// fields' types) and write a folder of its own under .train.
TEST(CoEncoderTrain, EveryDefaultModelStageConfigParses) {
  const fs::path dir = test::test_dir() / "../scripts/default_model";
  std::set<std::string> outs;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++n;
    SCOPED_TRACE(entry.path().filename().string());
    const json j = read_json_file(entry.path(), "training config");
    TrainConfig c;
    ASSERT_NO_THROW(c = TrainConfig::from_json(j, entry.path().string()));
    ASSERT_TRUE(j.contains("out"));
    EXPECT_TRUE(outs.insert(j.at("out").get<std::string>()).second) << "another stage writes " << j.at("out");
  }
  EXPECT_GE(n, 22);
}

}  // namespace
}  // namespace coenc
