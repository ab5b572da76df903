// Model config parsing, weight loading, KV cache, sessions and sampling on tiny random decoders (CPU, fp32).
#include <cstdlib>
#include <limits>
#include <set>

#include <dlfcn.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/decoder.h"
#include "coenc/generate.h"
#include "coenc/safetensors.h"
#include "coenc/sampler.h"
#include "coenc/session.h"
#include "coenc/shapes.h"
#include "coenc/slot_batch.h"
#include "coenc/timing.h"
#include "core/torch_compat.h"
#include "kernels/decode_kernels.h"
#include "model/rope.h"
#include "test_util.h"

namespace coenc {
namespace {

using nlohmann::json;
using test::TempDir;

json tiny_json(const std::string& arch) {
  json j = {{"architectures", {arch}}, {"vocab_size", 97},      {"hidden_size", 32},
            {"intermediate_size", 48},  {"num_hidden_layers", 2}, {"num_attention_heads", 4},
            {"num_key_value_heads", 2}, {"head_dim", 8},          {"max_position_embeddings", 128},
            {"rms_norm_eps", 1e-5},     {"rope_theta", 10000.0},  {"eos_token_id", 2}};
  return j;
}

DecoderLm tiny_model(const std::string& arch, uint64_t seed = 1, json extra = json::object()) {
  json j = tiny_json(arch);
  j.update(extra);
  return random_decoder(ModelConfig::from_json(j, "test"), DeviceOptions{}, seed, 0.2);
}

// ---- config.json --------------------------------------------------------------------------------------------

TEST(ModelConfig, ClassicAndRopeParametersLayoutsAgree) {
  json classic = tiny_json("LlamaForCausalLM");
  classic["rope_theta"] = 500000.0;
  classic["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  json modern = tiny_json("LlamaForCausalLM");
  modern.erase("rope_theta");
  modern["rope_parameters"] = classic["rope_scaling"];
  modern["rope_parameters"]["rope_theta"] = 500000.0;
  for (const json& j : {classic, modern}) {
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    EXPECT_EQ(c.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
    EXPECT_EQ(c.rope.original_max_position, 64);
  }
  // The old "type" key and a null rope_scaling.
  json old = tiny_json("LlamaForCausalLM");
  old["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(ModelConfig::from_json(old, "c").rope.type, "linear");
  old["rope_scaling"] = nullptr;
  EXPECT_EQ(ModelConfig::from_json(old, "c").rope.type, "default");
}

TEST(ModelConfig, ArchitectureTableTraits) {
  EXPECT_TRUE(ModelConfig::from_json(tiny_json("Qwen2ForCausalLM"), "c").attention_bias);
  EXPECT_TRUE(ModelConfig::from_json(tiny_json("Qwen3ForCausalLM"), "c").qk_norm);
  json m = tiny_json("MistralForCausalLM");
  m["sliding_window"] = 16;
  EXPECT_EQ(ModelConfig::from_json(m, "c").sliding_window.value_or(0), 16);
  json t = tiny_json("LlamaForCausalLM");
  t.erase("head_dim");
  EXPECT_EQ(ModelConfig::from_json(t, "c").head_dim, 8);  // hidden_size / num_attention_heads
  t["eos_token_id"] = {2, 5};
  EXPECT_EQ(ModelConfig::from_json(t, "c").eos_token_ids, (TokenIds{2, 5}));
}

TEST(ModelConfig, BadFieldsAreNamed) {
  auto expect_error = [](json j, const std::string& needle) {
    EXPECT_COENC_ERROR(ModelConfig::from_json(j, "dir/config.json"), needle);
  };
  json j = tiny_json("GPTNeoXForCausalLM");
  expect_error(j, "architecture \"GPTNeoXForCausalLM\"");
  j = tiny_json("LlamaForCausalLM");
  j.erase("vocab_size");
  expect_error(j, "missing field \"vocab_size\"");
  j = tiny_json("LlamaForCausalLM");
  j["hidden_size"] = "big";
  expect_error(j, "field \"hidden_size\" must be an integer");
  j = tiny_json("LlamaForCausalLM");
  j["num_key_value_heads"] = 3;
  expect_error(j, "must be a multiple of num_key_value_heads (3)");
  j = tiny_json("LlamaForCausalLM");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_error(j, "rope type \"yarn\" is not supported");
  j = tiny_json("LlamaForCausalLM");
  j["eos_token_id"] = 500;
  expect_error(j, "eos_token_id 500 outside the vocabulary");
  // Ids are range-checked before they are narrowed: 2^32 + 1 must not pass as token 1.
  j = tiny_json("LlamaForCausalLM");
  j["eos_token_id"] = 4294967297LL;
  expect_error(j, "token id 4294967297 is out of range");
  j = tiny_json("LlamaForCausalLM");
  j["eos_token_id"] = json::array({2, -3});
  expect_error(j, "negative token id -3");
  for (const char* key : {"bos_token_id", "pad_token_id"}) {
    j = tiny_json("LlamaForCausalLM");
    j[key] = 97;
    expect_error(j, std::string(key) + " 97 outside the vocabulary [0, 97)");
  }
  j = tiny_json("LlamaForCausalLM");
  j["rope_scaling"] = {{"rope_type", 3}, {"factor", 4.0}};
  expect_error(j, "\"rope_type\" must be a string, got 3");
  // Sizes no model has are refused before anything is computed from them.
  j = tiny_json("LlamaForCausalLM");
  j["vocab_size"] = int64_t{1} << 40;
  expect_error(j, "field \"vocab_size\" is 1099511627776, more than any model");
  j = tiny_json("LlamaForCausalLM");
  j["hidden_size"] = int64_t{1} << 40;
  j["head_dim"] = 8;
  expect_error(j, "field \"hidden_size\" is 1099511627776");
  expect_error(json::array(), "expected a JSON object");
}

TEST(ModelConfig, GenerationConfigSuppliesEos) {
  TempDir dir;
  test::write_file(dir / "config.json", tiny_json("LlamaForCausalLM").dump());
  test::write_file(dir / "generation_config.json", R"({"eos_token_id": [2, 7]})");
  EXPECT_EQ(ModelConfig::load(dir.path()).eos_token_ids, (TokenIds{2, 7}));
  test::write_file(dir / "config.json", "{\"vocab_size\": ");
  EXPECT_COENC_ERROR(ModelConfig::load(dir.path()), "config.json: malformed JSON");
  EXPECT_COENC_ERROR(ModelConfig::load(dir / "absent"), "model directory not found");
}

// A number no double holds is malformed JSON like any other error, not an escaped nlohmann::json out_of_range
// (found by fuzzing: tests/fuzz/corpus/model_config/regress_number_overflow).
TEST(ModelConfig, NumberBeyondADoubleIsMalformedJson) {
  TempDir dir;
  test::write_file(dir / "config.json", R"({"vocab_size": 1e999})");
  EXPECT_COENC_ERROR(ModelConfig::load(dir.path()), "config.json: malformed JSON");
  test::write_file(dir / "config.json", tiny_json("LlamaForCausalLM").dump());
  test::write_file(dir / "generation_config.json", R"({"eos_token_id": [1e999]})");
  EXPECT_COENC_ERROR(ModelConfig::load(dir.path()), "generation_config.json: malformed JSON");
}

// ---- loading weights ------------------------------------------------------------------------------------------

TEST(LoadDecoder, SaveLoadRoundTripIsExact) {
  for (const char* arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    SCOPED_TRACE(arch);
    TempDir dir;
    DecoderLm lm = tiny_model(arch);
    save_decoder(lm, dir.path());
    DecoderLm back = load_decoder(dir.path(), DeviceOptions{});
    auto ids = torch::tensor({{5, 9, 13, 40}}, torch::kInt64);
    auto a = lm->logits(lm->forward_hidden(lm->embed(ids), {}));
    auto b = back->logits(back->forward_hidden(back->embed(ids), {}));
    EXPECT_TRUE(torch::equal(a, b));
  }
}

TEST(LoadDecoder, TiedEmbeddingsHaveNoHead) {
  TempDir dir;
  DecoderLm lm = tiny_model("Qwen3ForCausalLM", 3, {{"tie_word_embeddings", true}});
  EXPECT_TRUE(lm->lm_head.is_empty());
  save_decoder(lm, dir.path());
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_FALSE(file->contains("lm_head.weight"));
  EXPECT_NO_THROW(load_decoder(dir.path(), DeviceOptions{}));
}

TEST(LoadDecoder, StrictLoadingNamesEveryBadTensor) {
  TempDir dir;
  DecoderLm lm = tiny_model("LlamaForCausalLM");
  save_decoder(lm, dir.path());
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& e : file->entries()) {
    if (e.name == "model.layers.1.mlp.up_proj.weight") continue;                      // missing
    auto t = file->tensor(e.name).clone();
    if (e.name == "model.norm.weight") t = torch::ones({31});                         // mis-shaped
    tensors.emplace_back(e.name, t);
  }
  tensors.emplace_back("model.layers.0.self_attn.extra.weight", torch::ones({2}));  // unexpected
  file.reset();
  write_safetensors(dir / "model.safetensors", tensors);
  try {
    load_decoder(dir.path(), DeviceOptions{});
    ADD_FAILURE() << "loaded a broken checkpoint";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.norm.weight [31] (expected [32])"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.self_attn.extra.weight"), std::string::npos) << msg;
  }
}

TEST(LoadDecoder, ShardedCheckpointsAndTheirIndex) {
  TempDir dir;
  DecoderLm lm = tiny_model("Qwen2ForCausalLM");
  save_decoder(lm, dir.path());
  // Re-split model.safetensors into two shards with an index, as save_pretrained does for big models.
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> a, b;
  json map;
  size_t i = 0;
  for (const auto& e : file->entries()) {
    const bool first = i++ % 2 == 0;
    (first ? a : b).emplace_back(e.name, file->tensor(e.name).clone());
    map[e.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  file.reset();
  std::filesystem::remove(dir / "model.safetensors");
  write_safetensors(dir / "model-00001-of-00002.safetensors", a);
  write_safetensors(dir / "model-00002-of-00002.safetensors", b);
  test::write_file(dir / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", map}}.dump());
  DecoderLm back = load_decoder(dir.path(), DeviceOptions{});
  auto ids = torch::tensor({{1, 2, 3}}, torch::kInt64);
  EXPECT_TRUE(torch::equal(lm->logits(lm->forward_hidden(lm->embed(ids), {})),
                           back->logits(back->forward_hidden(back->embed(ids), {}))));
  // An index that points at a file that is not there, or one that escapes the folder.
  map[a[0].first] = "model-00009-of-00002.safetensors";
  test::write_file(dir / "model.safetensors.index.json", json{{"weight_map", map}}.dump());
  EXPECT_COENC_ERROR(load_decoder(dir.path(), DeviceOptions{}), "model-00009-of-00002.safetensors");
  map[a[0].first] = "../x.safetensors";
  test::write_file(dir / "model.safetensors.index.json", json{{"weight_map", map}}.dump());
  EXPECT_COENC_ERROR(load_decoder(dir.path(), DeviceOptions{}), "../x.safetensors");
}

// save_decoder with a shard limit writes Hugging Face shards and their index, each within the limit, that load
// back exactly; saving again unsharded leaves no stale shard or index behind (and the other way round).
TEST(LoadDecoder, SavesShardsWithinTheLimit) {
  TempDir dir;
  DecoderLm lm = tiny_model("LlamaForCausalLM");
  save_decoder(lm, dir.path(), torch::kFloat32, 8000);
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors"));
  const json index = json::parse(test::read_file(dir / "model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [name, f] : index["weight_map"].items()) files.insert(f.get<std::string>());
  EXPECT_GT(files.size(), 2u);
  int64_t total = 0;
  for (const auto& f : files) {
    auto file = SafetensorsFile::open(dir / f);
    int64_t bytes = 0;
    for (const auto& e : file->entries()) bytes += static_cast<int64_t>(e.end - e.begin);
    // Within the limit, unless the shard holds one tensor that alone is larger.
    EXPECT_TRUE(bytes <= 8000 || file->entries().size() == 1) << f << ": " << bytes;
    total += bytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), total);
  DecoderLm back = load_decoder(dir.path(), DeviceOptions{});
  auto ids = torch::tensor({{1, 2, 3}}, torch::kInt64);
  auto logits = [&](DecoderLm& m) { return m->logits(m->forward_hidden(m->embed(ids), {})); };
  EXPECT_TRUE(torch::equal(logits(lm), logits(back)));
  save_decoder(lm, dir.path());
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_TRUE(e.path().filename() == "model.safetensors" || e.path().filename() == "config.json") << e.path();
  save_decoder(lm, dir.path(), torch::kFloat32, 8000);
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors"));
  EXPECT_TRUE(torch::equal(logits(lm), [&] {
    DecoderLm again = load_decoder(dir.path(), DeviceOptions{});
    return logits(again);
  }()));
}

TEST(LoadDecoder, NoWeightsIsNotFound) {
  TempDir dir;
  test::write_file(dir / "config.json", tiny_json("LlamaForCausalLM").dump());
  EXPECT_COENC_ERROR(load_decoder(dir.path(), DeviceOptions{}), "model.safetensors");
}

TEST(LoadDecoder, StorageDtypesConvertToComputeDtype) {
  for (auto storage : {torch::kFloat16, torch::kBFloat16}) {
    TempDir dir;
    DecoderLm lm = tiny_model("LlamaForCausalLM");
    save_decoder(lm, dir.path(), storage);
    DecoderLm back = load_decoder(dir.path(), DeviceOptions{});
    EXPECT_EQ(back->model->norm->weight.scalar_type(), torch::kFloat32);
    const auto& w = back->model->embed_tokens->weight;
    EXPECT_TRUE(torch::equal(w, lm->model->embed_tokens->weight.to(storage).to(torch::kFloat32)));
  }
}

// ---- sessions -------------------------------------------------------------------------------------------------

TEST(Session, KvCachedDecodeEqualsFullRecompute) {
  for (const char* arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    SCOPED_TRACE(arch);
    DecoderLm lm = tiny_model(arch, 7, {{"sliding_window", 6}});  // only Mistral reads sliding_window
    TokenIds seq = {3, 17, 42, 8, 66, 1, 90, 23, 5, 11, 70, 4, 33};
    Session s(lm, SessionOptions{0, 4});  // n_batch 4: the 5-token prompt is prefilled in two passes
    TokenIds prompt(seq.begin(), seq.begin() + 5);
    std::vector<torch::Tensor> incremental = {s.prefill({Segment::tokens(prompt)})};
    for (size_t i = 5; i < seq.size(); ++i) incremental.push_back(s.decode(seq[i]));
    Session full(lm);
    torch::Tensor all = full.prefill_all_logits({Segment::tokens(seq)});
    for (size_t i = 0; i < incremental.size(); ++i)
      EXPECT_TRUE(torch::allclose(incremental[i], all[4 + i], 1e-4, 1e-4)) << "position " << 4 + i;
  }
}

// CUDA graph decoding (attention lengths in buckets of 256, the cache written in place) gives the logits of the
// eager path for prompts on every side of a bucket edge, prompts that start with embedding rows (a compressed
// block) included; in f32 and in bf16.
TEST(Session, CudaGraphDecodeEqualsEagerAcrossBucketEdges) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    json j = tiny_json("LlamaForCausalLM");
    j["max_position_embeddings"] = 1024;
    DecoderLm lm = random_decoder(ModelConfig::from_json(j, "test"), DeviceOptions{torch::kCUDA, dtype}, 3, 0.2);
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 3e-2;
    for (int64_t length : {200, 249, 250, 255, 256, 257, 258, 300, 511, 512, 513}) {
      SCOPED_TRACE("prompt of " + std::to_string(length) + (dtype == torch::kFloat32 ? " f32" : " bf16"));
      torch::manual_seed(length);
      const torch::Tensor rows = 0.5 * torch::randn({length - 7, 32});
      const std::vector<Segment> prompt = {Segment::embeddings(rows), Segment::tokens({5, 9, 11, 13, 17, 19, 23})};
      std::vector<torch::Tensor> logits[2];
      for (bool graphs : {false, true}) {
        SessionOptions so;
        so.cuda_graphs = graphs;
        Session s(lm, so);
        logits[graphs].push_back(s.prefill(prompt).to(torch::kFloat32));
        for (TokenId t : {3, 44, 71, 8, 2, 60, 33, 90}) logits[graphs].push_back(s.decode(t).to(torch::kFloat32));
      }
      for (size_t i = 0; i < logits[0].size(); ++i)
        EXPECT_TRUE(torch::allclose(logits[0][i], logits[1][i], tol, tol))
            << "step " << i << ": max difference " << (logits[0][i] - logits[1][i]).abs().max().item<double>();
    }
  }
}

// CUDA attention (fused SDPA kernels) against the eager formula on the CPU, with grouped key / value heads in every
// form the engine asks for: causal without a mask (prefill), bidirectional without one (a tower's full chunks), a
// padding mask over a batch (a tower's short chunks), one query with an additive mask (CUDA graph decoding) and one
// query with a boolean [Tq, Tk] mask (eager decoding); f32 and bf16.
TEST(Attention, CudaKernelsMatchTheEagerFormula) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(5);
  const int64_t b = 3, h = 8, hkv = 2, hd = 64, t = 37;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(dtype == torch::kFloat32 ? "f32" : "bf16");
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 2e-2;
    const auto check = [&](const std::string& what, int64_t tq, const std::optional<torch::Tensor>& mask,
                           bool causal) {
      SCOPED_TRACE(what);
      // Inputs rounded to the dtype first: the reference sees exactly what the kernels see.
      const auto input = [&](std::vector<int64_t> shape) { return torch::randn(shape).to(dtype).to(torch::kFloat32); };
      const torch::Tensor q = input({b, h, tq, hd}), k = input({b, hkv, t, hd}), v = input({b, hkv, t, hd});
      const torch::Tensor want = compat::attention(q, k, v, mask, causal, 0.125);
      std::optional<torch::Tensor> m;
      if (mask) m = mask->scalar_type() == torch::kBool ? mask->cuda() : mask->to(torch::kCUDA, dtype);
      const torch::Tensor got = compat::attention(q.to(torch::kCUDA, dtype), k.to(torch::kCUDA, dtype),
                                                  v.to(torch::kCUDA, dtype), m, causal, 0.125);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(torch::allclose(got.cpu().to(torch::kFloat32), want, tol, tol))
          << "max difference " << (got.cpu().to(torch::kFloat32) - want).abs().max().item<double>();
    };
    check("causal, no mask", t, std::nullopt, true);
    check("bidirectional, no mask", t, std::nullopt, false);
    const torch::Tensor lengths = torch::tensor({37, 20, 1}, torch::kInt64);
    const torch::Tensor padding = (torch::arange(t).unsqueeze(0) < lengths.unsqueeze(1)).view({b, 1, 1, t});
    check("padding mask over a batch", t, padding.expand({b, 1, t, t}), false);
    torch::Tensor additive = torch::zeros({1, 1, 1, t});
    additive.narrow(3, 30, 7).fill_(-std::numeric_limits<float>::infinity());
    check("one query, additive mask", 1, additive, false);
    check("one query, boolean [Tq, Tk] mask", 1, torch::arange(t).lt(25).view({1, t}), false);
  }
}

// The fused residual add + RMSNorm of CUDA decoding against Hugging Face's formula, on rows that take each of its
// paths: one to four 16-byte vectors a thread held in registers, and the strided loop (a row that is not a whole
// number of vectors, one too long for registers, one not 16-byte aligned); one row and several, f32 and bf16.
TEST(DecodeKernels, AddRmsNormMatchesTheHuggingFaceFormula) {
  if (!torch::cuda::is_available() || !kernels::available()) GTEST_SKIP() << "no CUDA device";
  const double eps = 1e-5;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
    for (int64_t d : {32, 100, 896, 4096, 8200, 20000, 40000}) {
      for (int64_t rows : {1, 3}) {
        for (int variant = 0; variant < 3; ++variant) {  // no delta, delta, delta with h misaligned
          SCOPED_TRACE("d " + std::to_string(d) + ", rows " + std::to_string(rows) + ", variant " +
                       std::to_string(variant) + (dtype == torch::kFloat32 ? ", f32" : ", bf16"));
          torch::manual_seed(d * 10 + rows);
          torch::Tensor h = variant == 2 ? torch::randn({rows * d + 1}, opts).narrow(0, 1, rows * d).view({rows, d})
                                         : torch::randn({rows, d}, opts);
          torch::Tensor delta = variant == 0 ? torch::Tensor() : torch::randn({rows, d}, opts);
          torch::Tensor weight = 1 + 0.1 * torch::randn({d}, opts);
          torch::Tensor h_out, normed;
          kernels::add_rms_norm(h, delta, weight, eps, h_out, normed);
          // LlamaRMSNorm after the residual add in the dtype: float32 statistics, rounded before the weight.
          torch::Tensor x = delta.defined() ? h + delta : h;
          torch::Tensor xf = x.to(torch::kFloat32);
          torch::Tensor ref = (weight * (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(dtype))
                                  .to(torch::kFloat32);
          if (delta.defined()) EXPECT_TRUE(torch::equal(h_out, x));
          // The sum of squares is added up in another order: a unit or two in the last place apart at most.
          const double ulp = dtype == torch::kFloat32 ? 4e-6 : 1.0 / 64;
          torch::Tensor err = (normed.to(torch::kFloat32) - ref).abs() - ref.abs() * ulp;
          EXPECT_LE(err.max().item<double>(), 1e-6)
              << "largest difference " << (normed.to(torch::kFloat32) - ref).abs().max().item<double>();
        }
      }
    }
  }
}

// The one-row product of CUDA decoding against a float64 reference: rows shorter than the vectors a lane loads
// before waiting for its input, as long as a Llama-3-8B down projection's, with and without a bias; f32 and bf16.
TEST(DecodeKernels, GemvMatchesTheMatrixProduct) {
  if (!torch::cuda::is_available() || !kernels::available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard inference;  // the kernel serves inference only (gemv_applies is false under autograd)
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {7, 40}, {300, 2048}, {6144, 4096},
                                                                {4096, 14336}}) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + (with_bias ? " + bias" : "") +
                     (dtype == torch::kFloat32 ? ", f32" : ", bf16"));
        torch::manual_seed(n + k);
        torch::Tensor x = torch::randn({1, 1, k}, opts), w = torch::randn({n, k}, opts) / std::sqrt(k);
        torch::Tensor bias = with_bias ? torch::randn({n}, opts) : torch::Tensor();
        ASSERT_TRUE(kernels::gemv_applies(x, w));
        torch::Tensor y = kernels::gemv(x, w, bias);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, n}));
        torch::Tensor xd = x.reshape({k}).to(torch::kFloat64), wd = w.to(torch::kFloat64);
        torch::Tensor ref = wd.matmul(xd) + (with_bias ? bias.to(torch::kFloat64) : torch::zeros({n}, xd.options()));
        // float accumulation in another order, then one rounding to the dtype
        const double ulp = dtype == torch::kFloat32 ? 1e-6 : 1.0 / 128;
        torch::Tensor bound = ref.abs() * ulp + 1e-5 * wd.abs().matmul(xd.abs()) + 1e-30;
        torch::Tensor excess = (y.reshape({n}).to(torch::kFloat64) - ref).abs() - bound;
        EXPECT_LE(excess.max().item<double>(), 0.0) << "beyond the bound by " << excess.max().item<double>();
      }
    }
  }
}

// RoPE of a prefill's fused projection in one kernel against apply_rope over the transposed view (what it
// replaces): the same values, rounded the same way, in attention's layout; tables for one row or for each.
TEST(DecodeKernels, RopeQkMatchesApplyRope) {
  if (!torch::cuda::is_available() || !kernels::available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard inference;  // the kernel serves inference only (rope_qk_applies is false under autograd)
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
    for (int64_t table_rows : {1, 3}) {
      const int64_t b = 3, t = 37, n_heads = 8, n_kv = 2, hd = 64;
      torch::manual_seed(table_rows);
      torch::Tensor qkv = torch::randn({b, t, n_heads + 2 * n_kv, hd}, opts);
      torch::Tensor angle = torch::rand({table_rows, t, hd}, opts.dtype(torch::kFloat32)) * 6.3;
      torch::Tensor cos = angle.cos().to(dtype), sin = angle.sin().to(dtype);
      ASSERT_TRUE(kernels::rope_qk_applies(qkv, cos));
      auto [q, k] = kernels::rope_qk(qkv, cos, sin, n_heads, n_kv);
      torch::Tensor ref = apply_rope(qkv.narrow(2, 0, n_heads + n_kv).transpose(1, 2), cos, sin);
      EXPECT_TRUE(q.is_contiguous() && k.is_contiguous());
      EXPECT_TRUE(torch::equal(q, ref.narrow(1, 0, n_heads))) << (dtype == torch::kFloat32 ? "f32" : "bf16");
      EXPECT_TRUE(torch::equal(k, ref.narrow(1, n_heads, n_kv))) << (dtype == torch::kFloat32 ? "f32" : "bf16");
    }
  }
}

TEST(Session, EmbeddingRowsEqualTheirTokens) {
  DecoderLm lm = tiny_model("Qwen2ForCausalLM", 5);
  TokenIds a = {4, 8, 15}, b = {16, 23, 42, 7};
  torch::Tensor rows = lm->embed(torch::tensor(std::vector<int64_t>(b.begin(), b.end())).unsqueeze(0))[0];
  Session by_tokens(lm), by_rows(lm);
  TokenIds ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  ab.push_back(9);
  auto x = by_tokens.prefill_all_logits({Segment::tokens(ab)});
  auto y = by_rows.prefill_all_logits({Segment::tokens(a), Segment::embeddings(rows), Segment::tokens({9})});
  EXPECT_TRUE(torch::allclose(x, y, 1e-5, 1e-5));
  // Rows are not tokens: the history (for repetition penalties) lists only real tokens.
  EXPECT_EQ(by_rows.history(), (TokenIds{4, 8, 15, 9}));
  EXPECT_EQ(by_rows.n_past(), 8);
}

TEST(Session, SessionsOfOneModelAreIndependent) {
  DecoderLm lm = tiny_model("LlamaForCausalLM", 9);
  Session s1(lm), s2(lm), ref(lm);
  s1.prefill({Segment::tokens({1, 2, 3})});
  s2.prefill({Segment::tokens({50, 60})});
  auto l1 = s1.decode(4);
  ref.prefill({Segment::tokens({1, 2, 3})});
  EXPECT_TRUE(torch::allclose(l1, ref.decode(4), 1e-5, 1e-5));
  EXPECT_EQ(s2.n_past(), 2);
}

TEST(Session, TruncateRewinds) {
  DecoderLm lm = tiny_model("LlamaForCausalLM", 11);
  Session s(lm);
  auto first = s.prefill({Segment::tokens({5, 6, 7})});
  s.decode(8);
  s.decode(9);
  s.truncate(2);
  EXPECT_EQ(s.n_past(), 2);
  EXPECT_EQ(s.history(), (TokenIds{5, 6}));
  EXPECT_TRUE(torch::allclose(s.decode(7), first, 1e-5, 1e-5));
}

TEST(Session, BadInputIsRefused) {
  DecoderLm lm = tiny_model("LlamaForCausalLM");
  Session s(lm, SessionOptions{16});
  TokenIds long_prompt(17, 3);
  try {
    s.prefill({Segment::tokens(long_prompt)});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ExceedsContext);
    EXPECT_NE(std::string(e.what()).find("exceeds the context of 16 positions"), std::string::npos);
  }
  EXPECT_EQ(s.n_past(), 0);  // nothing half-done
  EXPECT_COENC_ERROR(s.prefill({Segment::tokens({3, 97})}), "token id 97 outside the vocabulary [0, 97)");
  EXPECT_COENC_ERROR(s.prefill({Segment::tokens({-1})}), "token id -1");
  EXPECT_COENC_ERROR(s.prefill({Segment::embeddings(torch::zeros({2, 31}))}), "rows of width 31, the decoder expects 32");
  EXPECT_COENC_ERROR(s.prefill({Segment::embeddings(torch::full({1, 32}, NAN))}), "NaN");
  EXPECT_COENC_ERROR(s.prefill({}), "input is empty");
  s.prefill({Segment::tokens(TokenIds(16, 3))});
  EXPECT_COENC_ERROR(s.decode(3), "decoding past the context of 16 positions");
}

TEST(KvCache, GrowsKeepsContentsAndStopsAtMax) {
  ModelConfig c = ModelConfig::from_json(tiny_json("LlamaForCausalLM"), "c");
  KvCache cache(c, 1, 2, 8, torch::kCPU, torch::kFloat32);
  auto k = torch::randn({1, 2, 3, 8}), v = torch::randn({1, 2, 3, 8});
  cache.reserve(3);
  for (int64_t l = 0; l < c.n_layers; ++l) cache.write(l, k, v);
  cache.advance(3);
  EXPECT_GE(cache.capacity(), 3);
  auto k2 = torch::randn({1, 2, 4, 8});
  std::pair<torch::Tensor, torch::Tensor> kv;
  cache.reserve(4);
  for (int64_t l = 0; l < c.n_layers; ++l) kv = cache.write(l, k2, k2);
  cache.advance(4);
  EXPECT_EQ(kv.first.size(2), 7);
  EXPECT_TRUE(torch::equal(kv.first.narrow(2, 0, 3), k));
  EXPECT_TRUE(torch::equal(kv.first.narrow(2, 3, 4), k2));
  EXPECT_COENC_ERROR(cache.reserve(2), "");
  cache.truncate(1);
  EXPECT_EQ(cache.length(), 1);
}

// ---- sampling and generation ----------------------------------------------------------------------------------

TEST(Sampler, GreedyAndFilters) {
  torch::Tensor logits = torch::tensor({1.0f, 3.0f, 2.0f, -1.0f});
  SamplingOptions greedy;
  greedy.temperature = 0;
  EXPECT_EQ(Sampler(greedy).sample(logits, {}), 1);
  // Repetition penalty pushes a repeated best token below the runner-up.
  greedy.repetition_penalty = 2.0f;
  EXPECT_EQ(Sampler(greedy).sample(logits, {1}), 2);
  // top_k = 1 is greedy whatever the temperature.
  SamplingOptions k1;
  k1.top_k = 1;
  k1.temperature = 5;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    k1.seed = seed;
    EXPECT_EQ(Sampler(k1).sample(logits, {}), 1);
  }
  // min_p removes unlikely tokens: p = (0.09, 0.66, 0.24, 0.01); min_p = 0.1 drops token 3 only.
  SamplingOptions mp;
  mp.temperature = 1;
  mp.top_k = 0;
  mp.top_p = 1;
  mp.min_p = 0.1f;
  Sampler s(mp);
  std::vector<int> counts(4);
  for (int i = 0; i < 2000; ++i) counts[s.sample(logits, {})]++;
  EXPECT_EQ(counts[3], 0);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], counts[2]);
  // top_p = 0.5 keeps only the most likely token here (p(1) ~ 0.66).
  mp.min_p = 0;
  mp.top_p = 0.5f;
  Sampler tp(mp);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(tp.sample(logits, {}), 1);
}

TEST(Sampler, SeedMakesDrawsRepeatable) {
  torch::Tensor logits = torch::randn({500});
  SamplingOptions o;
  o.temperature = 1.5f;
  o.top_k = 0;
  o.top_p = 1;
  o.min_p = 0;
  o.seed = 42;
  Sampler a(o), b(o);
  TokenIds da, db;
  for (int i = 0; i < 50; ++i) {
    da.push_back(a.sample(logits, {}));
    db.push_back(b.sample(logits, {}));
  }
  EXPECT_EQ(da, db);
  EXPECT_GT(std::set<TokenId>(da.begin(), da.end()).size(), 5u);
}

TEST(Generate, StopsAtTokensStringsAndLength) {
  DecoderLm lm = tiny_model("LlamaForCausalLM", 13);
  GenerationOptions go;
  go.max_new_tokens = 12;
  go.sampling.temperature = 0;
  Session s0(lm);
  GenerationResult free_run = generate(s0, {Segment::tokens({1, 2, 3})}, go);
  ASSERT_EQ(free_run.ids.size(), 12u);
  EXPECT_EQ(free_run.stop_reason, "length");
  // Greedy generation equals argmax over a full recompute at every step.
  TokenIds seq = {1, 2, 3};
  for (TokenId id : free_run.ids) {
    Session full(lm);
    EXPECT_EQ(full.prefill({Segment::tokens(seq)}).argmax().item<int64_t>(), id);
    seq.push_back(id);
  }
  // Stop token: generation ends before it.
  go.stop_tokens = {free_run.ids[4]};
  Session s1(lm);
  GenerationResult stopped = generate(s1, {Segment::tokens({1, 2, 3})}, go);
  EXPECT_EQ(stopped.stop_reason, "stop_token");
  size_t first = std::find(free_run.ids.begin(), free_run.ids.end(), free_run.ids[4]) - free_run.ids.begin();
  EXPECT_EQ(stopped.ids, TokenIds(free_run.ids.begin(), free_run.ids.begin() + first));
  // Stop strings work on text: ids spelled as "<id>" so the text is known.
  go.stop_tokens.clear();
  go.detokenize = [](const TokenIds& ids) {
    std::string s;
    for (TokenId id : ids) s += "<" + std::to_string(id) + ">";
    return s;
  };
  go.stop_strings = {"<" + std::to_string(free_run.ids[2]) + ">"};
  Session s2(lm);
  std::string streamed;
  GenerationResult by_string = generate(s2, {Segment::tokens({1, 2, 3})}, go, [&](TokenId, const std::string& d) {
    streamed += d;
    return true;
  });
  EXPECT_EQ(by_string.stop_reason, "stop_string");
  EXPECT_EQ(by_string.text.find(go.stop_strings[0]), std::string::npos);
  EXPECT_EQ(streamed, by_string.text);
  // The callback can cancel.
  go.stop_strings.clear();
  Session s3(lm);
  int calls = 0;
  GenerationResult cancelled = generate(s3, {Segment::tokens({1, 2, 3})}, go, [&](TokenId, const std::string&) {
    return ++calls < 3;
  });
  EXPECT_EQ(cancelled.stop_reason, "cancelled");
  EXPECT_EQ(calls, 3);
}

// Continuous batching: sequences of different lengths that join and leave at different steps, one forward
// pass a step over all of them, get the logits each would get alone in its own session (every architecture, a
// sliding window that bites included; a slot reused after a longer sequence left it).
TEST(SlotBatch, BatchedStepsEqualSeparateSessions) {
  for (const char* arch :
       {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    SCOPED_TRACE(arch);
    DecoderLm lm = tiny_model(arch, 5, {{"sliding_window", 6}});
    SlotBatch batch(lm, 3);
    struct Seq {
      TokenIds prompt, feed;
      int join_at;
      std::unique_ptr<Session> alone;
      int64_t slot = -1;
      size_t fed = 0;
    };
    std::vector<Seq> seqs;
    seqs.push_back({{3, 17, 42, 8, 66, 1, 90}, {23, 5, 11, 70, 4, 33, 9, 12}, 0});
    seqs.push_back({{7, 7}, {1, 2, 3, 4}, 1});  // leaves after 4 steps
    seqs.push_back({{60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70}, {5, 6}, 2});
    seqs.push_back({{11, 12, 13}, {14, 15, 16}, 6});  // takes the slot the second one left
    for (auto& q : seqs) q.alone = std::make_unique<Session>(lm);
    for (int step = 0; step < 10; ++step) {
      for (auto& q : seqs)
        if (q.join_at == step) {
          torch::Tensor first;
          q.slot = batch.join({Segment::tokens(q.prompt)}, &first);
          EXPECT_TRUE(torch::allclose(first, q.alone->prefill({Segment::tokens(q.prompt)}), 1e-4, 1e-4));
        }
      std::vector<int64_t> slots;
      TokenIds tokens;
      std::vector<Seq*> stepped;
      for (auto& q : seqs)
        if (q.slot >= 0 && q.fed < q.feed.size()) {
          slots.push_back(q.slot), tokens.push_back(q.feed[q.fed]), stepped.push_back(&q);
        }
      if (slots.empty()) continue;
      torch::Tensor logits = batch.step(slots, tokens);
      ASSERT_EQ(logits.size(0), static_cast<int64_t>(slots.size()));
      for (size_t i = 0; i < stepped.size(); ++i) {
        Seq& q = *stepped[i];
        torch::Tensor expected = q.alone->decode(q.feed[q.fed]);
        EXPECT_TRUE(torch::allclose(logits[static_cast<int64_t>(i)], expected, 1e-4, 1e-4))
            << "step " << step << ", slot " << q.slot;
        ++q.fed;
        EXPECT_EQ(batch.n_past(q.slot), q.alone->n_past());
        if (q.fed == q.feed.size()) {
          EXPECT_EQ(batch.history(q.slot), q.alone->history());
          batch.leave(q.slot);
          q.slot = -1;
        }
      }
    }
    EXPECT_EQ(batch.n_free(), 3);
    EXPECT_EQ(seqs[3].fed, seqs[3].feed.size());
  }
}

// On CUDA the batched step replays captured graphs (one per power-of-two row count and attention length bucket,
// dropped when the cache grows): its logits equal the eager step's while slots join, leave and cross the bucket
// edge at 256 positions, with 1, 2, 3 and 5 slots busy; in f32 and in bf16.
TEST(SlotBatch, CudaGraphStepsEqualEagerSteps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(dtype == torch::kFloat32 ? "f32" : "bf16");
    json j = tiny_json("LlamaForCausalLM");
    j["max_position_embeddings"] = 1024;
    DecoderLm lm = random_decoder(ModelConfig::from_json(j, "test"), DeviceOptions{torch::kCUDA, dtype}, 7, 0.2);
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 3e-2;
    SlotBatch eager(lm, 6, 600, false), graphs(lm, 6, 600, true);
    const std::vector<int64_t> prompt_lengths = {250, 3, 120, 252, 9, 40};
    std::vector<int64_t> slots;
    for (size_t q = 0; q < prompt_lengths.size(); ++q) {
      const TokenIds prompt = random_token_ids(prompt_lengths[q], 97, 31 + q);
      if (q == 3) {  // the second sequence leaves; the fourth takes its slot
        eager.leave(slots[1]), graphs.leave(slots[1]);
        slots.erase(slots.begin() + 1);
      }
      const int64_t a = eager.join({Segment::tokens(prompt)}, nullptr);
      ASSERT_EQ(graphs.join({Segment::tokens(prompt)}, nullptr), a);
      slots.push_back(a);
      for (int step = 0; step < 4; ++step) {
        TokenIds tokens;
        for (size_t i = 0; i < slots.size(); ++i) tokens.push_back(static_cast<TokenId>((7 * step + 13 * i) % 97));
        const torch::Tensor e = eager.step(slots, tokens).to(torch::kFloat32);
        const torch::Tensor g = graphs.step(slots, tokens).to(torch::kFloat32);
        ASSERT_EQ(g.sizes(), e.sizes());
        EXPECT_TRUE(torch::allclose(e, g, tol, tol)) << "sequence " << q << ", step " << step
                                                     << ": max difference " << (e - g).abs().max().item<double>();
      }
    }
    EXPECT_GT(eager.n_past(slots[0]), 256);  // the first sequence crossed a bucket edge
  }
}

// Greedy answers generated side by side in one batch equal generate()'s, one session each; a slot is refused
// when none is free, and a sequence cannot outgrow the context.
TEST(SlotBatch, GenerationsInOneBatchEqualGenerate) {
  DecoderLm lm = tiny_model("LlamaForCausalLM", 13);
  GenerationOptions go;
  go.max_new_tokens = 9;
  go.sampling.temperature = 0;
  const std::vector<TokenIds> prompts = {{1, 2, 3}, {40, 41, 42, 43, 44, 45}, {9}};
  SlotBatch batch(lm, 3);
  std::vector<std::unique_ptr<Generation>> gens;
  std::vector<int64_t> slots;
  TokenIds next;
  for (const auto& p : prompts) {
    torch::Tensor logits;
    slots.push_back(batch.join({Segment::tokens(p)}, &logits));
    gens.push_back(std::make_unique<Generation>(go));
    next.push_back(
        *gens.back()->next(logits, batch.history(slots.back()), batch.n_past(slots.back()), batch.n_ctx()));
  }
  EXPECT_THROW(batch.join({Segment::tokens({5})}, nullptr), Error);  // all three slots are busy
  while (!gens[0]->done()) {
    torch::Tensor logits = batch.step(slots, next);
    for (size_t i = 0; i < slots.size(); ++i) {
      auto t = gens[i]->next(logits[static_cast<int64_t>(i)], batch.history(slots[i]), batch.n_past(slots[i]),
                             batch.n_ctx());
      if (t) next[i] = *t;
    }
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    Session alone(lm);
    GenerationResult expected = generate(alone, {Segment::tokens(prompts[i])}, go);
    EXPECT_EQ(gens[i]->result().ids, expected.ids) << "prompt " << i;
    EXPECT_EQ(gens[i]->result().stop_reason, "length");
  }
  SlotBatch small(lm, 1, 4);
  torch::Tensor logits;
  const int64_t slot = small.join({Segment::tokens({1, 2, 3})}, &logits);
  small.step({slot}, {4});
  try {
    small.step({slot}, {5});
    ADD_FAILURE() << "a fifth position in a context of 4 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ExceedsContext);
  }
}

// Chunked prefill: a prompt of tokens and embedding rows read in pieces of 1, 3 and 4 positions, while another
// answer takes its steps between the pieces, ends with the logits, cache and history of the prompt read whole,
// and then decodes as it would alone. A reserved slot is not stepped, can be left, and a prompt too long for
// the context is refused before any of it is read.
TEST(SlotBatch, ChunkedPrefillEqualsTheWholePrompt) {
  DecoderLm lm = tiny_model("LlamaForCausalLM", 21);
  torch::manual_seed(3);
  const torch::Tensor rows = torch::randn({5, lm->config().hidden_size}) * 0.5;
  const std::vector<Segment> prompt = {Segment::tokens({4, 8, 15}), Segment::embeddings(rows),
                                       Segment::tokens({16, 23, 42})};
  for (int64_t piece : {1, 3, 4}) {
    SCOPED_TRACE("pieces of " + std::to_string(piece));
    SlotBatch batch(lm, 2);
    Session other_alone(lm), alone(lm);
    torch::Tensor first;
    const int64_t other = batch.join({Segment::tokens({7, 9})}, &first);
    other_alone.prefill({Segment::tokens({7, 9})});
    const int64_t slot = batch.reserve(prompt);
    EXPECT_TRUE(batch.busy(slot));
    EXPECT_EQ(batch.pending(slot), 11);
    EXPECT_COENC_ERROR(batch.step({slot}, {1}), "not a decoding slot");
    torch::Tensor last;
    int pieces = 0;
    TokenId fed = 30;
    while (!batch.prefill(slot, piece, &last)) {
      ++pieces;
      torch::Tensor l = batch.step({other}, {fed});  // the answer in progress goes on between the pieces
      EXPECT_TRUE(torch::allclose(l[0], other_alone.decode(fed), 1e-4, 1e-4));
      ++fed;
    }
    EXPECT_EQ(pieces + 1, (11 + piece - 1) / piece);
    EXPECT_EQ(batch.pending(slot), 0);
    EXPECT_TRUE(torch::allclose(last, alone.prefill(prompt), 1e-4, 1e-4));
    EXPECT_EQ(batch.n_past(slot), alone.n_past());
    EXPECT_EQ(batch.history(slot), alone.history());
    for (TokenId t : {3, 5, 7}) {
      torch::Tensor l = batch.step({slot, other}, {t, fed});
      EXPECT_TRUE(torch::allclose(l[0], alone.decode(t), 1e-4, 1e-4)) << "token " << t;
      EXPECT_TRUE(torch::allclose(l[1], other_alone.decode(fed), 1e-4, 1e-4));
      ++fed;
    }
  }
  SlotBatch batch(lm, 1, 8);
  try {
    batch.reserve({Segment::tokens({1, 2, 3, 4, 5, 6, 7, 8, 9})});
    ADD_FAILURE() << "a prompt of 9 positions was reserved in a context of 8";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ExceedsContext);
  }
  EXPECT_EQ(batch.n_free(), 1);
  const int64_t slot = batch.reserve({Segment::tokens({1, 2, 3, 4})});
  EXPECT_COENC_ERROR(batch.reserve({Segment::tokens({1})}), "no free slot");
  EXPECT_FALSE(batch.prefill(slot, 2, nullptr));
  batch.leave(slot);  // a client gone in the middle of its prompt
  EXPECT_EQ(batch.n_free(), 1);
  EXPECT_EQ(batch.pending(slot), 0);
  torch::Tensor logits;
  EXPECT_EQ(batch.join({Segment::tokens({5, 6})}, &logits), slot);
  EXPECT_EQ(batch.n_past(slot), 2);
}

TEST(Shapes, NamedShapesAreConsistent) {
  ModelConfig c = named_shape("llama3-8b");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_NEAR(static_cast<double>(c.n_params()), 8.03e9, 0.01e9);
  EXPECT_NEAR(static_cast<double>(named_shape("qwen2-0.5b").n_params()), 0.494e9, 0.01e9);
  EXPECT_COENC_ERROR(named_shape("gpt5"), "llama3-8b");
}

// A decoding step reads every weight it uses and the cache at its context; the input table is read one row at
// a time, so an untied model (Llama-3-8B) does not count it, and a tied one counts its table once, as the
// head.
TEST(Shapes, DecodeTrafficCountsWhatAStepReads) {
  const ModelConfig llama = named_shape("llama3-8b");
  const double table = 128256.0 * 4096;
  const DecodeTraffic t = decode_traffic(llama, 2, 1000);
  EXPECT_DOUBLE_EQ(t.weight_bytes, 2 * (static_cast<double>(llama.n_params()) - table + 4096));
  EXPECT_DOUBLE_EQ(t.kv_bytes, 2.0 * 32 * 8 * 128 * 1000 * 2);  // K and V, 32 layers, 8 KV heads of 128, bf16
  EXPECT_DOUBLE_EQ(t.total(), t.weight_bytes + t.kv_bytes);
  ModelConfig tied = named_shape("tiny");
  tied.tie_word_embeddings = true;
  EXPECT_DOUBLE_EQ(decode_traffic(tied, 4, 0).weight_bytes, 4.0 * (tied.n_params() + tied.hidden_size));
  EXPECT_DOUBLE_EQ(decode_traffic(tied, 4, 0).kv_bytes, 0);
}

// bf16 on the CPU: one torch thread per usable CPU and OpenBLAS down to one (its pool only competes with
// oneDNN's threads); float32 and CUDA runs leave both as they are.
TEST(Timing, CpuThreadsForBf16) {
  const int blas_before = openblas_threads(), torch_before = torch::get_num_threads();
  if (std::getenv("OPENBLAS_NUM_THREADS") || std::getenv("OMP_NUM_THREADS"))
    GTEST_SKIP() << "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set: the environment chooses the threads";
  auto set_blas = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas) set_blas(2);
  torch::set_num_threads(1);
  EXPECT_FALSE(tune_cpu_threads(torch::kCPU, torch::kFloat32));
  EXPECT_FALSE(tune_cpu_threads(torch::Device(torch::kCUDA, 0), torch::kBFloat16));
  EXPECT_EQ(torch::get_num_threads(), 1);
  if (set_blas) EXPECT_EQ(openblas_threads(), 2);
  // One usable CPU and no OpenBLAS leave nothing to change.
  EXPECT_EQ(tune_cpu_threads(torch::kCPU, torch::kBFloat16), usable_cpus() > 1 || set_blas != nullptr);
  EXPECT_EQ(torch::get_num_threads(), usable_cpus());
  if (set_blas) EXPECT_EQ(openblas_threads(), 1);
  EXPECT_FALSE(tune_cpu_threads(torch::kCPU, torch::kBFloat16));  // already so
  if (set_blas) set_blas(blas_before);
  torch::set_num_threads(torch_before);
}

// The data-sheet bandwidth of a card, recognised from the name its driver reports; whole words only.
TEST(Timing, SpecBandwidthFromTheCardsName) {
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA H200"), 4800);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA GH200 480GB"), 4900);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA H20"), 4000);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA H100 80GB HBM3"), 3350);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA H100 PCIe"), 2000);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA H100 NVL"), 3900);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA A100-SXM4-80GB"), 2039);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA A100 80GB PCIe"), 1935);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA A100-SXM4-40GB"), 1555);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA L40S"), 864);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA L4"), 300);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA A10"), 600);
  EXPECT_EQ(spec_bandwidth_gbs("cpu"), 0);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA B200"), 0);
  EXPECT_EQ(spec_bandwidth_gbs("NVIDIA A1000"), 0);  // not an A100
}

// The copy bandwidth is measured, not assumed: a positive, finite figure on the CPU.
TEST(Timing, CopyBandwidthIsMeasured) {
  const double gbs = measure_copy_bandwidth_gbs(torch::kCPU, int64_t{16} << 20, 2);
  EXPECT_GT(gbs, 0.1);
  EXPECT_LT(gbs, 1e5);
  EXPECT_COENC_ERROR(measure_copy_bandwidth_gbs(torch::kCPU, 0, 1), "bytes and reps must be positive");
}

}  // namespace
}  // namespace coenc
