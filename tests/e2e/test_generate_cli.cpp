// `coenc generate` run as a user runs it: text, chat and id prompts, streaming and --json, and every kind of bad
// input ending in one clear line and a non-zero exit.
#include <algorithm>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/decoder.h"
#include "coenc/safetensors.h"
#include "coenc/session.h"
#include "coenc/tokenizer.h"
#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTokenizerDir = test_dir() / "golden/tokenizer/trained";  // byte-level BPE, 1200 ids, ChatML

// A random tiny Qwen2 model with the trained tokenizer beside it (created once for the whole suite).
class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ModelConfig c = ModelConfig::from_json(
        json{{"architectures", {"Qwen2ForCausalLM"}}, {"vocab_size", 1200}, {"hidden_size", 64},
             {"intermediate_size", 96}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
             {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"eos_token_id", 0}},
        "test");
    save_decoder(random_decoder(c, DeviceOptions{}, 5, 0.3), model());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(kTokenizerDir / f, model() / f);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path model() { return dir_->path() / "model"; }
  static std::string m() { return "generate -m '" + model().string() + "' "; }

  // Greedy continuation computed in this process, to check what the binary printed.
  static TokenIds greedy(const TokenIds& prompt, int n) {
    Session s(load_decoder(model(), DeviceOptions{}));
    TokenIds out;
    torch::Tensor logits = s.prefill({Segment::tokens(prompt)});
    for (int i = 0; i < n; ++i) {
      out.push_back(static_cast<TokenId>(logits.argmax().item<int64_t>()));
      if (out.back() == 0) {  // eos
        out.pop_back();
        break;
      }
      logits = s.decode(out.back());
    }
    return out;
  }

  static TempDir* dir_;
};
TempDir* GenerateCli::dir_ = nullptr;

TEST_F(GenerateCli, TextPromptJsonMatchesInProcessGreedy) {
  RunResult r = run_coenc(m() + "-p 'Once upon a time' --temp 0 -n 10 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  auto tok = Tokenizer::load(model().string());
  EncodeOptions eo;
  eo.add_special = true;
  const TokenIds prompt = tok->encode("Once upon a time", eo);
  EXPECT_EQ(j["n_prompt"], prompt.size());
  const TokenIds expected = greedy(prompt, 10);
  EXPECT_EQ(j["ids"].get<TokenIds>(), expected);
  EXPECT_EQ(j["text"], tok->decode(expected, true));
  EXPECT_EQ(j["stop_reason"], expected.size() == 10 ? "length" : "stop_token");
}

TEST_F(GenerateCli, StreamedTextEqualsJsonText) {
  RunResult streamed = run_coenc(m() + "-p 'The end' --temp 0 -n 12 --ignore-eos");
  RunResult js = run_coenc(m() + "-p 'The end' --temp 0 -n 12 --ignore-eos --json");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  ASSERT_EQ(js.exit_code, 0) << js.err;
  EXPECT_EQ(streamed.out, json::parse(js.out)["text"].get<std::string>() + "\n");
  EXPECT_NE(streamed.err.find("12 tokens generated"), std::string::npos) << streamed.err;
}

TEST_F(GenerateCli, SeededSamplingIsRepeatable) {
  const std::string args = m() + "-p 'abc' --temp 1.2 --seed 7 -n 16 --ignore-eos --json";
  RunResult a = run_coenc(args), b = run_coenc(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["ids"], json::parse(b.out)["ids"]);
}

TEST_F(GenerateCli, ChatUsesTheTemplate) {
  auto tok = Tokenizer::load(model().string());
  const TokenIds prompt = encode_chat(*tok, {{"system", "Be brief."}, {"user", "Hi!"}}, ChatFormat::ChatML);
  RunResult r = run_coenc(m() + "--system 'Be brief.' -p 'Hi!' --temp 0 -n 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["n_prompt"], prompt.size());
  // The same turns from a messages file (an OpenAI request body).
  TempDir d;
  write_file(d / "chat.json",
             R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]})");
  RunResult f = run_coenc(m() + "--messages '" + (d / "chat.json").string() + "' --temp 0 -n 4 --json");
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(json::parse(f.out)["ids"], json::parse(r.out)["ids"]);
  // <|im_end|> ends the assistant's turn.
  const TokenId im_end = *tok->token_to_id("<|im_end|>");
  for (TokenId id : json::parse(r.out)["ids"].get<TokenIds>()) EXPECT_NE(id, im_end);
}

TEST_F(GenerateCli, StopStringCutsTheText) {
  RunResult full = run_coenc(m() + "-p 'x' --temp 0 -n 12 --ignore-eos --json");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const std::string text = json::parse(full.out)["text"];
  ASSERT_GE(text.size(), 4u);
  const std::string stop = text.substr(text.size() / 2, 2);
  RunResult cut = run_coenc(m() + "-p 'x' --temp 0 -n 12 --ignore-eos --json --stop '" + stop + "'");
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  json j = json::parse(cut.out);
  EXPECT_EQ(j["stop_reason"], "stop_string");
  EXPECT_EQ(j["text"], text.substr(0, text.find(stop)));
}

// coenc convert on a decoder: bf16 shards of a size limit, the tokenizer copied along, and the same greedy text as
// the source read in bf16.
TEST_F(GenerateCli, ConvertWritesShardsThatGenerateTheSame) {
  TempDir d;
  RunResult c = run_coenc("convert '" + model().string() + "' '" + (d / "m").string() + "' --max-shard-mb 0.05");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_TRUE(fs::exists(d / "m" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(d / "m" / "tokenizer.json"));
  for (const auto& e : fs::directory_iterator(d / "m"))
    if (e.path().extension() == ".safetensors" && fs::file_size(e.path()) > 50000u + 8192u)
      EXPECT_EQ(SafetensorsFile::open(e.path())->entries().size(), 1u)
          << e.path() << ": over the limit, so it must hold one tensor larger than the limit alone";
  const std::string args = "-p 'The river' -n 8 --temp 0 --json";
  RunResult a = run_coenc(m() + args + " --dtype bf16"),
            b = run_coenc("generate -m '" + (d / "m").string() + "' " + args + " --dtype bf16");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["ids"], json::parse(b.out)["ids"]);
}

TEST_F(GenerateCli, PromptIdsWithoutTokenizer) {
  // The llama golden fixture has no tokenizer: ids in, ids out, no "text".
  const fs::path fx = test_dir() / "golden/decoders/llama";
  auto ref = SafetensorsFile::open(fx / "reference.safetensors");
  auto in = ref->tensor("input_ids"), greedy_ref = ref->tensor("greedy");
  std::string ids;
  for (int64_t i = 0; i < in.numel(); ++i) ids += (i ? "," : "") + std::to_string(in[i].item<int64_t>());
  RunResult r = run_coenc("generate -m '" + fx.string() + "' --prompt-ids " + ids + " --temp 0 -n 32 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_FALSE(j.contains("text"));
  ASSERT_EQ(j["ids"].size(), 32u);
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(j["ids"][i], greedy_ref[i].item<int64_t>());
}

// ---- bad input --------------------------------------------------------------------------------------------------

TEST_F(GenerateCli, MissingModel) {
  expect_one_line_error(run_coenc("generate -m /nonexistent/model -p hi"), "/nonexistent/model: model directory not found");
}

// Each kind of failure has its exit status (docs/cli.md), and with --json the error is a JSON envelope on stderr.
TEST_F(GenerateCli, ExitStatusSaysWhatWentWrong) {
  EXPECT_EQ(run_coenc("generate -m /nonexistent/model -p hi").exit_code, 4);  // not found
  EXPECT_EQ(run_coenc(m() + "-p hi --top-k x").exit_code, 2);                 // bad usage
  RunResult usage = run_coenc(m() + "-p hi --ctx-size 0");
  expect_one_line_error(usage, "--ctx-size: must be positive, got 0 (see coenc generate --help)");
  EXPECT_EQ(usage.exit_code, 2);
  TempDir d;
  write_file(d / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
  EXPECT_EQ(run_coenc("generate -m '" + d.path().string() + "' --prompt-ids 1").exit_code, 3);  // bad input
  write_file(d / "config.json", R"({"architectures": ["FalconForCausalLM"], "vocab_size": 10})");
  EXPECT_EQ(run_coenc("generate -m '" + d.path().string() + "' --prompt-ids 1").exit_code, 5);  // unsupported
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "word" + std::to_string(i) + " ";
  EXPECT_EQ(run_coenc(m() + "-p '" + long_text + "'").exit_code, 6);  // exceeds the context
  RunResult js = run_coenc("generate -m /nonexistent/model -p hi --json");
  EXPECT_EQ(js.exit_code, 4);
  const json e = json::parse(js.err);
  EXPECT_EQ(e["error"]["type"], "not_found");
  EXPECT_NE(e["error"]["message"].get<std::string>().find("/nonexistent/model"), std::string::npos);
  const json u = json::parse(run_coenc(m() + "-p hi --json --ctx-size 0").err);
  EXPECT_EQ(u["error"]["type"], "usage");
}

TEST_F(GenerateCli, MalformedConfig) {
  TempDir d;
  write_file(d / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
  expect_one_line_error(run_coenc("generate -m '" + d.path().string() + "' --prompt-ids 1"),
                        "config.json: malformed JSON");
}

TEST_F(GenerateCli, UnknownArchitecture) {
  TempDir d;
  write_file(d / "config.json", R"({"architectures": ["FalconForCausalLM"], "vocab_size": 10})");
  expect_one_line_error(run_coenc("generate -m '" + d.path().string() + "' --prompt-ids 1"),
                        "architecture \"FalconForCausalLM\"");
}

TEST_F(GenerateCli, TruncatedWeights) {
  TempDir d;
  copy_tree(model(), d / "m");
  const auto st = d / "m" / "model.safetensors";
  fs::resize_file(st, fs::file_size(st) - 100);
  expect_one_line_error(run_coenc("generate -m '" + (d / "m").string() + "' -p hi"), "model.safetensors");
}

TEST_F(GenerateCli, ShapeMismatch) {
  TempDir d;
  copy_tree(model(), d / "m");
  json c = json::parse(read_file(d / "m" / "config.json"));
  c["intermediate_size"] = 100;
  write_file(d / "m" / "config.json", c.dump());
  expect_one_line_error(run_coenc("generate -m '" + (d / "m").string() + "' -p hi"),
                        "model.layers.0.mlp.gate_proj.weight [96, 64] (expected [100, 64])");
}

TEST_F(GenerateCli, PromptLongerThanContext) {
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "word" + std::to_string(i) + " ";
  expect_one_line_error(run_coenc(m() + "-p '" + long_text + "'"), "but the context holds 64");
}

TEST_F(GenerateCli, BadIdsAndOptions) {
  expect_one_line_error(run_coenc(m() + "--prompt-ids 1,x,3"), "--prompt-ids: expected comma-separated");
  expect_one_line_error(run_coenc(m() + "--prompt-ids 5000"), "token id 5000 outside the vocabulary [0, 1200)");
  expect_one_line_error(run_coenc(m()), "give exactly one of --prompt");
  expect_one_line_error(run_coenc(m() + "-p hi --chat-format vicuna"), "unknown chat format \"vicuna\"");
  expect_one_line_error(run_coenc(m() + "-p hi --dtype f8"), "--dtype \"f8\"");
  // Numeric flags are checked before they are used.
  expect_one_line_error(run_coenc(m() + "-p hi --ctx-size 100000"), "a context of 100000 positions is more than the decoder's window");
  expect_one_line_error(run_coenc(m() + "-p hi --ctx-size 0"), "--ctx-size");
  expect_one_line_error(run_coenc("bench --shape tiny --reps 0"), "--reps");
  expect_one_line_error(run_coenc("bench --shape tiny --ttft 512 --ratios 4,0"), "--ratios");
  expect_one_line_error(run_coenc("bench --shape tiny --train-examples 2 --target-tokens 0"), "--target");
  expect_one_line_error(run_coenc("bench --shape tiny --train-examples 2 --dtype bf16"),
                        "--dtype bf16 has no effect with --train-examples");
  TempDir d;
  write_file(d / "chat.json", R"([{"role": "user", "content": "hi"}, {"role": "user"}])");
  expect_one_line_error(run_coenc(m() + "--messages '" + (d / "chat.json").string() + "'"), "chat.json: message 1");
}

}  // namespace
}  // namespace coenc::test

namespace coenc::test {
namespace {

// bench --ttft times the full document, each ratio compressed on the fly, and each ratio again with the document
// compressed beforehand ("cached": the decoder's prefill of [BOC] vectors [EOC] question alone), and the tower and
// connector alone ("tower_seconds"). Figures are printed, not asserted; the shape of the report and the positions
// are.
TEST(BenchCli, TimeToFirstTokenWithAndWithoutTheTower) {
  const RunResult r =
      run_coenc("bench --shape tiny --tower-shape tiny --ttft 600 --ratios 4,8 --reps 1 --prompt 16 --gen 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json t = json::parse(r.out).at("ttft");
  EXPECT_EQ(t.at("full").at("decoder_positions"), 632);  // 600 document + 32 question tokens
  ASSERT_EQ(t.at("compressed").size(), 2u);
  for (const json& c : t.at("compressed")) {
    const int64_t ratio = c.at("ratio");
    // 600 tokens in chunks of 512: ceil(512 / r) + ceil(88 / r) vectors, the two markers and the question
    const int64_t positions = (512 + ratio - 1) / ratio + (88 + ratio - 1) / ratio + 2 + 32;
    EXPECT_EQ(c.at("decoder_positions"), positions) << "ratio " << ratio;
    EXPECT_EQ(c.at("cached").at("decoder_positions"), positions) << "ratio " << ratio;
    EXPECT_GT(c.at("cached").at("seconds").get<double>(), 0.0);
    EXPECT_GT(c.at("tower_seconds").get<double>(), 0.0);  // the tower and connector alone, timed apart
    EXPECT_NEAR(c.at("cached").at("speedup").get<double>(),
                t.at("full").at("seconds").get<double>() / c.at("cached").at("seconds").get<double>(), 1e-9);
  }
}

// `coenc inspect` and the embedded default model, as the README uses them.
TEST(InspectCli, DescribesTheDefaultModel) {
  const std::string dir = (test_dir().parent_path() / "models/default").string();
  RunResult r = run_coenc("inspect --json '" + dir + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["config"]["architectures"][0], "LlamaForCausalLM");
  EXPECT_TRUE(j["tensors"].contains("model.layers.5.mlp.down_proj.weight"));
  RunResult missing = run_coenc("inspect /nonexistent/thing");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("/nonexistent/thing: no such file or directory"), std::string::npos) << missing.err;
}

// Characters split across tokens stream whole: the issue's own case (the English default model writes
// Japanese byte by byte), sampled, and the streamed bytes equal --json's text exactly, with no U+FFFD the
// text does not have.
TEST(GenerateStreaming, JapaneseStreamsExactlyAsJsonText) {
  const std::string dir = (test_dir().parent_path() / "models/default").string();
  for (const char* seed : {"1", "2", "3"}) {
    const std::string args =
        "generate -m '" + dir + "' -p '東京は日本の首都です。大阪は' -n 30 --temp 0.8 --seed " + seed;
    RunResult streamed = run_coenc(args), js = run_coenc(args + " --json");
    ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
    ASSERT_EQ(js.exit_code, 0) << js.err;
    const std::string text = nlohmann::json::parse(js.out)["text"];
    EXPECT_EQ(streamed.out, text + "\n") << "seed " << seed;
    // The model does write multi-byte characters here (the test would prove nothing otherwise).
    EXPECT_TRUE(std::any_of(text.begin(), text.end(), [](char c) {
      return static_cast<unsigned char>(c) >= 0xE0;
    })) << text;
  }
}

TEST(DefaultModel, IsATrainedEnglishModel) {
  const std::string dir = (test_dir().parent_path() / "models/default").string();
  RunResult r = run_coenc("generate -m '" + dir + "' -p 'The history of the city' -n 24 --temp 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(nlohmann::json::parse(r.out)["text"].get<std::string>().empty());
  // Trained, not random: English text it never saw costs far fewer nats per token than a uniform guess
  // (ln 8192 = 9.0; training ended at a held-out loss of 3.9).
  auto tok = Tokenizer::load(dir);
  const TokenIds ids = tok->encode(
      "The president said that the government would present a new plan for the schools of the country next year, "
      "and that the people of the state had a right to know what it would cost.");
  Session s(load_decoder(dir, DeviceOptions{}));
  torch::Tensor logits = s.prefill_all_logits({Segment::tokens(ids)});  // [T, V]
  torch::Tensor targets = torch::tensor(std::vector<int64_t>(ids.begin() + 1, ids.end()));
  const double nll = torch::nn::functional::cross_entropy(logits.narrow(0, 0, targets.size(0)), targets).item<double>();
  EXPECT_LT(nll, 5.0);
}

}  // namespace
}  // namespace coenc::test
