// Seed parity: tests/golden/co_encoder/seed_tiny was saved by the seed project's own CoEncoderForConditionalGeneration
// (sudy-super/Co-Encoder, with transformers 5.17; scripts/make_coencoder_fixture.py lists the few adaptations),
// random-initialised, with its reference outputs for a context much shorter (7 tokens) and one longer (101 tokens)
// than the dynamic pooling's minimum output size (32). We load the checkpoint as the seed wrote it and replay both.
#include <gtest/gtest.h>

#include "coenc/co_encoder.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/session.h"
#include "model/connector.h"
#include "test_util.h"

namespace coenc {
namespace {

std::filesystem::path fixture_dir() { return test::test_dir() / "golden/co_encoder/seed_tiny"; }

TokenIds to_ids(const torch::Tensor& t) {
  auto c = t.to(torch::kInt64).contiguous();
  return TokenIds(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// max |got - ref| relative to the largest reference magnitude.
double relative_error(const torch::Tensor& got, const torch::Tensor& ref) {
  return (got - ref).abs().max().item<double>() / ref.abs().max().item<double>();
}

constexpr double kTolerance = 1e-4;

TEST(CoEncoderGolden, SeedConfigLoadsWithTheSeedsDefaults) {
  CoEncoderConfig c = CoEncoderConfig::load(fixture_dir());
  EXPECT_EQ(c.pooling, PoolingMode::Dynamic);
  EXPECT_EQ(c.context.arch, Arch::Qwen2);
  EXPECT_EQ(c.text.arch, Arch::Llama);
  EXPECT_EQ(c.context_feature_layer, -2);
  EXPECT_EQ(c.min_output_size, 32);
  EXPECT_EQ(c.max_output_size, 128);
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_EQ(c.begin_of_context_token_id, 99);
  EXPECT_EQ(c.end_of_context_token_id, 100);
}

class CoEncoderSeedParity : public ::testing::TestWithParam<const char*> {};

TEST_P(CoEncoderSeedParity, Fp32MatchesTheSeed) {
  const std::string name = GetParam();
  auto ref = SafetensorsFile::open(fixture_dir() / "reference.safetensors");
  CoEncoder model = load_co_encoder(fixture_dir(), DeviceOptions{});
  torch::NoGradGuard no_grad;
  const TokenIds context = to_ids(ref->tensor("context_ids_" + name));
  const int64_t n = static_cast<int64_t>(context.size());
  auto ids = torch::tensor(std::vector<int64_t>(context.begin(), context.end()), torch::kInt64).unsqueeze(0);
  auto lengths = torch::tensor({n}, torch::kInt64);

  // Tower features: hidden_states[-2] of a 3-layer Qwen2.
  torch::Tensor features = model->tower_features(ids, lengths, 2);
  const double feature_err = relative_error(features[0], ref->tensor("features_" + name));
  EXPECT_LE(feature_err, kTolerance) << "tower features";

  // Dynamic pooling: the same k, and the same weighted span averages.
  Pooled pooled = model->connector->dynamic_pooling->forward(features, torch::ones({1, n}, torch::kBool));
  const int64_t k = ref->tensor("size_" + name).item<int64_t>();
  ASSERT_EQ(pooled.sizes[0].item<int64_t>(), k) << "dynamic output size";
  EXPECT_LE(relative_error(pooled.states[0], ref->tensor("pooled_" + name)), kTolerance) << "pooled states";

  // The compressed vectors (connector output).
  torch::Tensor vectors = model->compress_chunk(context);
  ASSERT_EQ(vectors.size(0), k);
  const double vector_err = relative_error(vectors, ref->tensor("vectors_" + name));
  EXPECT_LE(vector_err, kTolerance) << "compressed vectors";

  // The decoder over [BOC] vectors [EOC] question, through the engine's embedding segments.
  Session session(model->language_model);
  torch::Tensor logits = session.prefill_all_logits(raw_prompt(*model, {{vectors}}, to_ids(ref->tensor("question_ids"))));
  torch::Tensor expected = ref->tensor("logits_" + name);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double logit_err = relative_error(logits, expected);
  EXPECT_LE(logit_err, kTolerance) << "decoder logits";
  std::printf("[ seed parity ] %s context (%lld tokens, k = %lld): features %.2e, vectors %.2e, logits %.2e\n",
              name.c_str(), static_cast<long long>(n), static_cast<long long>(k), feature_err, vector_err, logit_err);
}

// The same checkpoint in bf16 on the GPU (tower, connector and decoder all in bf16, the CUDA kernels) against the
// seed's fp32 outputs: the rounding of bf16 bounds the agreement, not the code path. Measured on an H200: vectors
// 1.1e-2 / 1.0e-2, logits 1.1e-2 / 5.8e-2 (short / long; the tiny random decoder's logits are small, so their
// relative error is large); a wrong pooling span or marker row gives errors of order 1.
TEST_P(CoEncoderSeedParity, Bf16OnCudaMatchesTheSeed) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string name = GetParam();
  auto ref = SafetensorsFile::open(fixture_dir() / "reference.safetensors");
  CoEncoder model = load_co_encoder(fixture_dir(), DeviceOptions{torch::kCUDA, torch::kBFloat16});
  torch::NoGradGuard no_grad;
  const TokenIds context = to_ids(ref->tensor("context_ids_" + name));
  torch::Tensor vectors = model->compress_chunk(context);
  ASSERT_EQ(vectors.size(0), ref->tensor("size_" + name).item<int64_t>()) << "dynamic output size";
  const double vector_err = relative_error(vectors.to(torch::kCPU, torch::kFloat32), ref->tensor("vectors_" + name));
  Session session(model->language_model);
  torch::Tensor logits = session.prefill_all_logits(raw_prompt(*model, {{vectors}}, to_ids(ref->tensor("question_ids"))));
  const double logit_err = relative_error(logits.to(torch::kCPU, torch::kFloat32), ref->tensor("logits_" + name));
  std::printf("[ seed parity, bf16 CUDA ] %s context: vectors %.2e, logits %.2e\n", name.c_str(), vector_err, logit_err);
  EXPECT_LE(vector_err, 0.05);
  EXPECT_LE(logit_err, 0.1);
}

INSTANTIATE_TEST_SUITE_P(ShortAndLong, CoEncoderSeedParity, ::testing::Values("short", "long"));

}  // namespace
}  // namespace coenc
