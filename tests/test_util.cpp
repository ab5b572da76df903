#include "test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "coenc/co_encoder.h"

namespace coenc::test {

using nlohmann::json;

json tiny_co_encoder_config() {
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

void make_tiny_co_encoder(const std::filesystem::path& dir, uint64_t seed, bool chat, bool learned) {
  const std::filesystem::path tokenizer = test_dir() / "golden/tokenizer/trained";
  json config = tiny_co_encoder_config();
  if (learned) config["context_markers"] = "learned";
  CoEncoder m = random_co_encoder(CoEncoderConfig::from_json(config, "test"), DeviceOptions{}, seed, 0.3);
  if (learned) {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(seed + 100);
    m->named_parameters()["connector.begin_of_context"].copy_(torch::randn({32}, gen));
    m->named_parameters()["connector.end_of_context"].copy_(torch::randn({32}, gen));
  }
  save_co_encoder(*m, dir);
  for (const char* sub : {"context_tokenizer", "text_tokenizer"}) {
    std::filesystem::create_directories(dir / sub);
    std::filesystem::copy_file(tokenizer / "tokenizer.json", dir / sub / "tokenizer.json");
    json tc = json::parse(read_file(tokenizer / "tokenizer_config.json"));
    if (!chat && std::string(sub) == "text_tokenizer") tc.erase("chat_template");
    write_file(dir / sub / "tokenizer_config.json", tc.dump(1));
  }
}

std::string sample_document_text(int words) {
  static const char* kWords[] = {"the",    "river",  "city",   "council", "bridge",  "north",
                                 "market", "winter", "report", "stone",   "harbour", "year",
                                 "people", "built",  "old",    "long"};
  std::string s;
  for (int i = 0; i < words; ++i)
    s += std::string(kWords[(i * 7 + i / 3) % 16]) + (i % 11 == 10 ? ". " : " ");
  return s;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  for (const auto& entry : std::filesystem::directory_iterator(from)) {
    const auto target = to / entry.path().filename();
    if (entry.is_directory()) copy_tree(entry.path(), target);
    else std::filesystem::copy_file(entry.path(), target);
  }
}

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("coenc: error: ", 0), 0u) << r.err;
}

RunResult run_coenc(const std::string& args, const std::string& input) {
  TempDir tmp;
  write_file(tmp / "stdin", input);
  std::string cmd = std::string("'") + COENC_BINARY + "' " + args + " <'" + (tmp / "stdin").string() + "' >'" +
                    (tmp / "stdout").string() + "' 2>'" + (tmp / "stderr").string() + "'";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(tmp / "stdout");
  r.err = read_file(tmp / "stderr");
  return r;
}

}  // namespace coenc::test
