// The training loop on CPU: a tiny decoder learns a small text, the result loads as a model, configs are checked.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/decoder.h"
#include "coenc/train.h"
#include "test_util.h"

namespace coenc {
namespace {

using nlohmann::json;
using test::TempDir;

json tiny_train_config(const TempDir& dir) {
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += "The quick brown fox jumps over the lazy dog number " + std::to_string(i % 7) + ".\n\n<|doc|>\n";
  test::write_file(dir / "train.txt", text);
  return json{{"tokenizer", (test::test_dir() / "golden/tokenizer/trained").string()},
              {"model_config",
               {{"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 1200}, {"hidden_size", 32},
                {"intermediate_size", 64}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
                {"max_position_embeddings", 64}, {"tie_word_embeddings", true}, {"eos_token_id", 0}}},
              {"train_files", {(dir / "train.txt").string()}},
              {"out", (dir / "out").string()},
              {"seq_len", 32},
              {"batch_size", 8},
              {"grad_accum", 2},
              {"steps", 60},
              {"lr", 1e-2},
              {"warmup_steps", 5},
              {"eval_every", 30},
              {"eval_batches", 2},
              {"eval_fraction", 0.1},
              {"progress", false}};
}

TEST(Train, TinyDecoderLearnsRepeatedText) {
  TempDir dir;
  TrainResult r = train(TrainConfig::from_json(tiny_train_config(dir), "test"));
  EXPECT_GT(r.initial_eval_loss, 6.0);  // about ln(1200) before training
  EXPECT_LT(r.final_eval_loss, 2.0);    // the text is almost entirely predictable
  EXPECT_EQ(r.tokens_seen, 60 * 8 * 32);
  // The output is a model directory with the tokenizer beside it, and metrics every 30 steps.
  DecoderLm lm = load_decoder(dir / "out", DeviceOptions{});
  EXPECT_EQ(lm->config().vocab_size, 1200);
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "tokenizer.json"));
  const std::string metrics = test::read_file(dir / "out" / "metrics.jsonl");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 2);
}

// time_budget_s: plans from the latest steps' speed, so a run whose steps speed up gets the longer plan; the
// plan is fixed once a quarter of it is done; a spent budget stops the run at the next check.
TEST(Train, StepBudgetPlansFromTheLatestSpeed) {
  static_assert(StepBudget::kCheckSteps == 5 && StepBudget::kWarmSteps == 10 && StepBudget::kWindowSteps == 50,
                "the figures below assume these");
  StepBudget b{true, 1000.0};
  double t = 0;
  std::optional<int64_t> plan;
  int64_t done = 0;
  auto step = [&](double seconds) {
    t += seconds;
    ++done;
    return b.observe(done, t, 0, 100, done, 100000);
  };
  // Slow warm-up steps are not timed; every check still returns the plan (unchanged), so that data-parallel
  // processes all reach the point where they agree on it.
  for (int i = 1; i <= 10; ++i) {
    plan = step(5.0);
    if (i % 5 != 0) EXPECT_FALSE(plan) << i;
    else EXPECT_EQ(plan.value_or(-1), 100000) << i;
  }
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(step(2.0));
  plan = step(2.0);  // step 15, 60 s: 2 s a step since step 10, 940 s left: 470 more steps
  ASSERT_TRUE(plan);
  EXPECT_EQ(*plan, 15 + 470);
  EXPECT_FALSE(b.fixed);
  for (int i = 16; i <= 60; ++i) plan = step(1.0);  // faster: steps 10-60 took 55 s (1.1 s a step), 895 s left
  EXPECT_EQ(*plan, 60 + 813);
  for (int i = 0; i < 5; ++i) plan = step(1.0);  // the window restarted at step 60: 1 s a step, 890 s left
  EXPECT_EQ(*plan, 65 + 890);
  // Evaluations count too: 10 s every 10 steps adds 1 s a step.
  StepBudget e{true, 1000.0};
  for (int64_t d = 1; d <= 15; ++d) plan = e.observe(d, d * 1.0, 10, 10, d, 100000);
  EXPECT_EQ(*plan, 15 + 985 / 2);
  // Fixed once done >= a quarter of the plan: 200 s at 1 s a step plans 200 steps, a quarter done at step 50.
  StepBudget f{true, 200.0};
  for (int64_t d = 1; d <= 50; ++d) plan = f.observe(d, d * 1.0, 0, 100, d, 100000);
  EXPECT_EQ(*plan, 200);
  EXPECT_TRUE(f.fixed);
  EXPECT_FALSE(f.observe(55, 55, 0, 100, 55, 200));
  // Slow steps (4 s, a 230-s budget): planned and fixed at step 15 to a run that fits (57 steps, 228 s).
  StepBudget slow{true, 230.0};
  for (int64_t d = 1; d <= 15; ++d) plan = slow.observe(d, d * 4.0, 0, 100, d, 100000);
  EXPECT_EQ(*plan, 57);
  EXPECT_TRUE(slow.fixed);
  // Spent before the first plan (a resumed run whose earlier parts used the budget): stop at the first check.
  StepBudget spent{true, -5.0};
  plan = std::nullopt;
  for (int64_t d = 1; d <= StepBudget::kWarmSteps && !plan; ++d)
    plan = spent.observe(d, d * 1.0, 0, 100, 300 + d, 1000);
  EXPECT_EQ(plan.value_or(-1), 300 + StepBudget::kCheckSteps);
  // Spent during the warm-up steps: 4-s steps with 12 s left stop at step 5.
  StepBudget little{true, 12.0};
  for (int64_t d = 1; d <= 5; ++d) plan = little.observe(d, d * 4.0, 0, 100, 60 + d, 100000);
  EXPECT_EQ(plan.value_or(-1), 65);
  EXPECT_FALSE(StepBudget{}.observe(70, 70, 0, 100, 70, 1000));  // no budget: never plans
}

TEST(Train, SameSeedSameLoss) {
  TempDir a, b;
  json ca = tiny_train_config(a), cb = tiny_train_config(b);
  ca["steps"] = cb["steps"] = 6;
  TrainResult ra = train(TrainConfig::from_json(ca, "a")), rb = train(TrainConfig::from_json(cb, "b"));
  EXPECT_DOUBLE_EQ(ra.final_train_loss, rb.final_train_loss);
}

TEST(Train, ConfigErrorsNameTheField) {
  TempDir dir;
  json c = tiny_train_config(dir);
  auto expect_error = [](json j, const std::string& needle) {
    EXPECT_COENC_ERROR(TrainConfig::from_json(j, "run.json"), needle);
  };
  json bad = c;
  bad["learning_rate"] = 1;
  expect_error(bad, "run.json: unknown field \"learning_rate\"");
  bad = c;
  bad["steps"] = "many";
  expect_error(bad, "field \"steps\" must be an integer from");
  // Numbers that do not fit the field are refused before any conversion (a float cast to an integer out of range
  // is undefined behaviour: docs/reliability.md, finding 4).
  bad = c;
  bad["eval_every"] = 2.5e111;
  expect_error(bad, "field \"eval_every\" must be an integer from -9223372036854775808 to 9223372036854775807, got");
  bad = c;
  bad["steps"] = 2.5;
  expect_error(bad, "field \"steps\" must be an integer");
  bad = c;
  bad["seed"] = -1;
  expect_error(bad, "field \"seed\" must be an integer from 0 to 18446744073709551615, got -1");
  bad = c;
  bad["grad_accum"] = 3;
  expect_error(bad, "batch_size (8) must be a positive multiple of grad_accum (3)");
  bad = c;
  bad["init_from"] = "somewhere";
  expect_error(bad, "exactly one of \"init_from\"");
  bad = c;
  bad["objective"] = "qa";
  expect_error(bad, "objective \"qa\" is not supported");
  bad = c;
  bad["seq_len"] = 100;  // the model holds 64 positions
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")), "seq_len 100 exceeds");
  bad = c;
  test::write_file(dir / "short.txt", "tiny");
  bad["train_files"] = {(dir / "short.txt").string()};
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")), "training text too short");
  bad["train_files"] = {(dir / "absent.txt").string()};
  EXPECT_COENC_ERROR(train(TrainConfig::from_json(bad, "run.json")), "absent.txt");
}

}  // namespace
}  // namespace coenc
