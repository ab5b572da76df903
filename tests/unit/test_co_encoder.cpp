// The Co-Encoder on CPU with tiny random models: config parsing and its errors, each pooling mode's shapes and
// masks, gradients (the dynamic size estimate included), chunked compression, decoder input (several documents
// included), learned BOC/EOC rows, checkpoints.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/pipeline.h"
#include "coenc/safetensors.h"
#include "coenc/session.h"
#include "model/connector.h"
#include "test_util.h"
#include "train/co_encoder_objectives.h"

namespace coenc {
namespace {

using nlohmann::json;
using test::TempDir;

json tower_json() {
  return {{"model_type", "qwen2"},          {"vocab_size", 97},         {"hidden_size", 24},
          {"intermediate_size", 40},        {"num_hidden_layers", 3},   {"num_attention_heads", 4},
          {"num_key_value_heads", 2},       {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0}};
}

json decoder_json() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", 101},
          {"hidden_size", 32}, {"intermediate_size", 40}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"head_dim", 8}, {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5}};
}

json co_json(const std::string& pooling = "dynamic") {
  return {{"model_type", "co_encoder"},     {"architectures", {"CoEncoderForConditionalGeneration"}},
          {"context_config", tower_json()}, {"text_config", decoder_json()},
          {"context_feature_layer", -2},    {"projector_hidden_act", "gelu"},
          {"connector_hidden_act", "gelu"}, {"begin_of_context_token_id", 99},
          {"end_of_context_token_id", 100}, {"ignore_index", -100},
          {"pooling", pooling},             {"compression_ratio", 4},
          {"chunk_size", 16},               {"transformers_version", "5.17.0"}};
}

CoEncoderConfig config_of(const json& j) { return CoEncoderConfig::from_json(j, "config.json"); }

CoEncoder tiny(const std::string& pooling, json extra = json::object(), uint64_t seed = 1) {
  json j = co_json(pooling);
  j.update(extra);
  CoEncoder m = random_co_encoder(config_of(j), DeviceOptions{}, seed, 0.2);
  // scale_param 0.01 keeps the dynamic size at min_output_size; larger values make it vary with the input.
  if (m->connector->dynamic_pooling) {
    torch::NoGradGuard no_grad;
    m->connector->dynamic_pooling->scale_param.fill_(0.6);
  }
  return m;
}

TokenIds random_ids(int64_t n, uint64_t seed, int64_t vocab = 97) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto t = torch::randint(3, vocab, {n}, gen, torch::kInt64);
  return TokenIds(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

torch::Tensor ids_tensor(const TokenIds& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// ---- config.json ------------------------------------------------------------------------------------------------

TEST(CoEncoderConfig, ParsesSeedAndOwnFields) {
  CoEncoderConfig c = config_of(co_json("mean"));
  EXPECT_EQ(c.context.arch, Arch::Qwen2);  // from model_type alone, as the seed's nested configs may have it
  EXPECT_EQ(c.text.hidden_size, 32);
  EXPECT_EQ(c.feature_index(), 2);
  EXPECT_EQ(c.pooling, PoolingMode::Mean);
  EXPECT_EQ(c.chunk_size, 16);
  EXPECT_EQ(c.min_output_size, 32);
  EXPECT_EQ(c.max_output_size, 128);  // the seed: the tower's max_position_embeddings
  EXPECT_EQ(c.begin_of_context_token_id, 99);
  // Our fields absent (a checkpoint the seed wrote): the seed's behaviour.
  json seed = co_json();
  for (const char* k : {"pooling", "compression_ratio", "chunk_size"}) seed.erase(k);
  CoEncoderConfig s = config_of(seed);
  EXPECT_EQ(s.pooling, PoolingMode::Dynamic);
  EXPECT_EQ(s.chunk_size, 128);  // min(512, tower positions)
  EXPECT_EQ(s.tower_attention, TowerAttention::Causal);
  // Round trip.
  CoEncoderConfig back = config_of(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
}

TEST(CoEncoderConfig, ContextMarkersDefaultToTheTokens) {
  EXPECT_EQ(config_of(co_json()).context_markers, ContextMarkers::Tokens);  // absent: the seed's behaviour
  EXPECT_EQ(config_of(co_json()).to_json()["context_markers"], "tokens");
  json j = co_json();
  j["context_markers"] = "learned";
  CoEncoderConfig c = config_of(j);
  EXPECT_EQ(c.context_markers, ContextMarkers::Learned);
  EXPECT_EQ(c.to_json()["context_markers"], "learned");
  EXPECT_EQ(config_of(c.to_json()).context_markers, ContextMarkers::Learned);
  j["context_markers"] = "tokens";
  EXPECT_EQ(config_of(j).context_markers, ContextMarkers::Tokens);
}

TEST(CoEncoderConfig, PartialNestedConfigTakesModelTypeDefaults) {
  // transformers 4 wrote text_config as a diff against LlamaConfig(): fields equal to the defaults are absent.
  json j = co_json();
  j["text_config"] = {{"model_type", "llama"}, {"vocab_size", 128256}, {"rms_norm_eps", 1e-5}};
  j["begin_of_context_token_id"] = 128002;
  j["end_of_context_token_id"] = 128003;
  CoEncoderConfig c = config_of(j);
  EXPECT_EQ(c.text.hidden_size, 4096);
  EXPECT_EQ(c.text.n_layers, 32);
  EXPECT_EQ(c.text.intermediate_size, 11008);
  EXPECT_EQ(c.text.n_kv_heads, 32);
}

TEST(CoEncoderConfig, BadFieldsAreNamed) {
  auto expect_error = [](json j, const std::string& needle) {
    EXPECT_COENC_ERROR(CoEncoderConfig::from_json(j, "ckpt/config.json"), needle);
  };
  json j = co_json();
  j["pooling_mode"] = "mean";
  expect_error(j, "ckpt/config.json: unknown field \"pooling_mode\"");
  j = co_json();
  j["model_type"] = "llava";
  expect_error(j, "field \"model_type\" must be \"co_encoder\"");
  j = co_json("max");
  expect_error(j, "field \"pooling\" must be \"dynamic\", \"mean\" or \"attn\", got \"max\"");
  j = co_json();
  j["end_of_context_token_id"] = 101;
  expect_error(j, "field \"end_of_context_token_id\" = 101 is outside the decoder vocabulary [0, 101)");
  j = co_json();
  j.erase("begin_of_context_token_id");
  expect_error(j, "missing field \"begin_of_context_token_id\"");
  j = co_json();
  j["context_feature_layer"] = -5;
  expect_error(j, "field \"context_feature_layer\" = -5 is outside [-4, 3] for a tower of 3 layers");
  j = co_json("attn");
  j["context_feature_layer"] = -4;
  expect_error(j, "pooling \"attn\" pools inside a tower layer");
  j = co_json();
  j["projector_hidden_act"] = "relu";
  expect_error(j, "fields \"projector_hidden_act\" (\"relu\") and \"connector_hidden_act\" (\"gelu\") disagree");
  j = co_json();
  j["connector_hidden_act"] = "tanh";
  j.erase("projector_hidden_act");
  expect_error(j, "projector activation \"tanh\" is not supported");
  j = co_json();
  j["chunk_size"] = 512;
  expect_error(j, "field \"chunk_size\" = 512 must be in [1, 128] (context_config.max_position_embeddings)");
  j = co_json();
  j["min_output_size"] = 64;
  j["max_output_size"] = 48;
  expect_error(j, "must satisfy 1 <= min <= max");
  j = co_json();
  j["compression_ratio"] = 0;
  expect_error(j, "field \"compression_ratio\" must be at least 1");
  j = co_json();
  j["tower_attention"] = "sliding";
  expect_error(j, "field \"tower_attention\" must be \"causal\" or \"bidirectional\"");
  j = co_json();
  j["context_markers"] = "embedding";
  expect_error(j, "field \"context_markers\" must be \"tokens\" or \"learned\", got \"embedding\"");
  j["context_markers"] = true;
  expect_error(j, "field \"context_markers\" must be a string, got true");
  j = co_json();
  j.erase("text_config");
  expect_error(j, "missing field \"text_config\"");
  j = co_json();
  j["context_config"]["model_type"] = "gpt2";
  expect_error(j, "ckpt/config.json: context_config: architecture");
}

// ---- pooling modes: shapes and masks ------------------------------------------------------------------------------

// Two contexts of different lengths in one padded batch: each item's vectors equal the item compressed alone, and
// the output mask marks exactly its k vectors.
void expect_batch_matches_items(CoEncoder& m, const std::vector<int64_t>& lengths) {
  torch::NoGradGuard no_grad;
  const int64_t t = *std::max_element(lengths.begin(), lengths.end());
  auto ids = torch::zeros({static_cast<int64_t>(lengths.size()), t}, torch::kInt64);
  std::vector<TokenIds> items;
  for (size_t i = 0; i < lengths.size(); ++i) {
    items.push_back(random_ids(lengths[i], 100 + i));
    ids[i].narrow(0, 0, lengths[i]).copy_(ids_tensor(items.back()));
  }
  ConnectorOutput out = m->forward_context(ids, torch::tensor(lengths, torch::kInt64));
  const int64_t kmax = out.vectors.size(1);
  ASSERT_EQ(out.vectors.sizes(), (std::vector<int64_t>{static_cast<int64_t>(lengths.size()), kmax, 32}));
  ASSERT_EQ(out.mask.sizes(), (std::vector<int64_t>{static_cast<int64_t>(lengths.size()), kmax}));
  EXPECT_EQ(out.sizes.max().item<int64_t>(), kmax);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t k = out.sizes[i].item<int64_t>();
    EXPECT_EQ(out.mask[i].sum().item<int64_t>(), k);
    EXPECT_TRUE(out.mask[i].narrow(0, 0, k).all().item<bool>());
    torch::Tensor alone = m->compress_chunk(items[i]);
    ASSERT_EQ(alone.size(0), k) << "item " << i;
    EXPECT_LT(max_diff(out.vectors[i].narrow(0, 0, k), alone), 1e-5) << "item " << i;
  }
}

TEST(Pooling, MeanShapesAndMasks) {
  CoEncoder m = tiny("mean");
  EXPECT_EQ(m->compress_chunk(random_ids(13, 1)).sizes(), (std::vector<int64_t>{4, 32}));  // ceil(13 / 4)
  EXPECT_EQ(m->compress_chunk(random_ids(1, 1)).sizes(), (std::vector<int64_t>{1, 32}));
  expect_batch_matches_items(m, {16, 9, 3});
  // A span's vector is the projection of its tokens' mean feature.
  torch::NoGradGuard no_grad;
  TokenIds ids = random_ids(10, 7);
  auto features = m->tower_features(ids_tensor(ids).unsqueeze(0), torch::tensor({10}, torch::kInt64), 2)[0];
  auto expected = m->connector->project(features.narrow(0, 8, 2).mean(0));  // the last span holds tokens 8, 9
  EXPECT_LT(max_diff(m->compress_chunk(ids)[2], expected), 1e-5);
}

// mean pooling against values worked out by hand: spans of r valid tokens, each averaged; padding never enters.
TEST(Pooling, MeanEqualsHandComputedSpans) {
  // Item 0: 5 valid tokens, r = 2 -> spans {0,1} {2,3} {4}. Item 1: 3 valid tokens then padding (whose values are
  // large, to show they are not averaged in) -> spans {0,1} {2}.
  torch::Tensor h = torch::tensor({1., 10., 3., 30., 5., 50., 7., 70., 9., 90.,    //
                                   2., 20., 4., 40., 6., 60., 1e6, 1e6, 1e6, 1e6})
                        .view({2, 5, 2});
  torch::Tensor mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, torch::kBool).view({2, 5});
  Pooled p = mean_pool(h, mask, 2);
  ASSERT_EQ(p.states.sizes(), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_EQ(p.sizes[0].item<int64_t>(), 3);
  EXPECT_EQ(p.sizes[1].item<int64_t>(), 2);
  const torch::Tensor want0 = torch::tensor({2., 20., 6., 60., 9., 90.}).view({3, 2});
  const torch::Tensor want1 = torch::tensor({3., 30., 6., 60.}).view({2, 2});
  EXPECT_TRUE(torch::allclose(p.states[0], want0)) << p.states[0];
  EXPECT_TRUE(torch::allclose(p.states[1].narrow(0, 0, 2), want1)) << p.states[1];
  EXPECT_TRUE(p.mask[0].all().item<bool>());
  EXPECT_FALSE(p.mask[1][2].item<bool>());
  // The longest row told from the host (no wait for the device) pools the same.
  Pooled q = mean_pool(h, mask, 2, /*max_length=*/5);
  EXPECT_TRUE(torch::equal(q.states, p.states));
  EXPECT_TRUE(torch::equal(q.sizes, p.sizes));
}

// The connector told each row's length on the host gives what it reads from the mask, for every pooling that
// takes it; lengths of the wrong shape or an empty row are named.
TEST(Pooling, HostLengthsGiveWhatTheMaskGives) {
  for (const char* pooling : {"mean", "attn", "dynamic"}) {
    SCOPED_TRACE(pooling);
    CoEncoder m = tiny(pooling);
    torch::NoGradGuard no_grad;
    const auto lengths = torch::tensor({7, 3, 5}, torch::kInt64);
    torch::Tensor ids = torch::randint(0, m->config().context.vocab_size, {3, 7}, torch::kInt64);
    torch::Tensor mask = torch::arange(7).unsqueeze(0) < lengths.unsqueeze(1);
    const int64_t idx = m->config().feature_index(), n = m->config().context.n_layers;
    const bool attn = std::string(pooling) == "attn";
    torch::Tensor f = m->tower_features(ids, lengths, attn ? idx - 1 : (idx == n ? -1 : idx));
    TowerLayerRef ref{m->context_tower->tower.get(), idx - 1, idx == n,
                      m->config().tower_attention == TowerAttention::Causal};
    ConnectorOutput a = m->connector->forward(f, mask, attn ? &ref : nullptr);
    ConnectorOutput b = m->connector->forward(f, mask, attn ? &ref : nullptr, lengths);
    EXPECT_TRUE(torch::equal(a.vectors, b.vectors));
    EXPECT_TRUE(torch::equal(a.sizes, b.sizes));
    EXPECT_COENC_ERROR(m->connector->forward(f, mask, attn ? &ref : nullptr, torch::tensor({7, 3}, torch::kInt64)),
                       "connector lengths must be [3]");
    EXPECT_COENC_ERROR(m->connector->forward(f, mask, attn ? &ref : nullptr, torch::tensor({7, 0, 5}, torch::kInt64)),
                       "every connector input needs at least one token");
  }
}

TEST(Pooling, AttnShapesAndMasks) {
  CoEncoder m = tiny("attn");
  EXPECT_EQ(m->compress_chunk(random_ids(13, 1)).sizes(), (std::vector<int64_t>{4, 32}));
  expect_batch_matches_items(m, {16, 9, 3});
  // Bidirectional tower: padding must be masked inside the tower as well.
  CoEncoder b = tiny("attn", {{"tower_attention", "bidirectional"}});
  expect_batch_matches_items(b, {16, 5});
}

// attn pooling against an independent reference: ARC-Encoder's pooled attention written out token by token and
// head by head (RoPE on each query and key, each span's queries averaged, a softmax over every key of the
// chunk per head, grouped KV heads, the span's mean residual, the layer's MLP, the final norm when the features
// are the last layer's), with explicit loops instead of the connector's span-weight matrices and fused attention.
TEST(Pooling, AttnEqualsATokenByTokenReference) {
  for (int feature_layer : {-2, -1}) {
    CoEncoder m = tiny("attn", {{"context_feature_layer", feature_layer}});
    torch::NoGradGuard no_grad;
    const int64_t T = 10, r = m->config().ratio, idx = m->config().feature_index(), L = idx - 1;
    const bool final_norm = idx == m->config().context.n_layers;
    const TokenIds ids = random_ids(T, 11);
    auto& tower = *m->context_tower->tower;
    torch::Tensor x = m->tower_features(ids_tensor(ids).unsqueeze(0), torch::tensor({T}, torch::kInt64), L)[0];
    auto& layer = *tower.model->layers[L]->as<DecoderLayerImpl>();
    auto& att = *layer.self_attn;
    const int64_t H = att.n_heads, Hkv = att.n_kv_heads, hd = att.head_dim;
    ASSERT_FALSE(att.q_norm);  // qwen2: no q/k norm
    torch::Tensor normed = layer.input_layernorm(x);
    torch::Tensor q = att.q_proj(normed).view({T, H, hd}), k = att.k_proj(normed).view({T, Hkv, hd}),
                  v = att.v_proj(normed).view({T, Hkv, hd});
    auto [cos, sin] = tower.rope_tables(torch::arange(T, torch::kInt64));  // [1, T, hd]
    auto rotate = [&](const torch::Tensor& vec, int64_t t) {  // rotate_half layout, written out
      torch::Tensor out = torch::empty_like(vec);
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double c1 = cos[0][t][i].item<double>(), s1 = sin[0][t][i].item<double>();
        const double c2 = cos[0][t][i + hd / 2].item<double>(), s2 = sin[0][t][i + hd / 2].item<double>();
        const double a = vec[i].item<double>(), b = vec[i + hd / 2].item<double>();
        out[i] = a * c1 - b * s1;
        out[i + hd / 2] = b * c2 + a * s2;
      }
      return out;
    };
    const int64_t K = (T + r - 1) / r;
    torch::Tensor want = torch::empty({K, m->config().text.hidden_size});
    for (int64_t s = 0; s < K; ++s) {
      const int64_t begin = s * r, end = std::min(T, begin + r);
      torch::Tensor heads = torch::empty({H * hd});
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv);
        torch::Tensor qbar = torch::zeros({hd});
        for (int64_t t = begin; t < end; ++t) qbar += rotate(q[t][h], t);
        qbar /= static_cast<double>(end - begin);
        std::vector<double> score(T);
        double top = -1e30, total = 0;
        for (int64_t t = 0; t < T; ++t) {
          score[t] = (qbar * rotate(k[t][g], t)).sum().item<double>() / std::sqrt(static_cast<double>(hd));
          top = std::max(top, score[t]);
        }
        torch::Tensor out = torch::zeros({hd});
        for (int64_t t = 0; t < T; ++t) total += std::exp(score[t] - top);
        for (int64_t t = 0; t < T; ++t) out += v[t][g] * (std::exp(score[t] - top) / total);
        heads.narrow(0, h * hd, hd).copy_(out);
      }
      torch::Tensor hs = x.narrow(0, begin, end - begin).mean(0) + att.o_proj(heads.unsqueeze(0))[0];
      hs = hs + layer.mlp(layer.post_attention_layernorm(hs.unsqueeze(0)))[0];
      if (final_norm) hs = tower.model->norm(hs.unsqueeze(0))[0];
      want[s] = m->connector->project(hs.unsqueeze(0))[0];
    }
    torch::Tensor got = m->compress_chunk(ids);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(max_diff(got, want), 1e-5) << "context_feature_layer " << feature_layer;
  }
}

TEST(Pooling, DynamicShapesAndMasks) {
  CoEncoder m = tiny("dynamic", {{"min_output_size", 3}, {"max_output_size", 24}});
  torch::Tensor v = m->compress_chunk(random_ids(16, 1));
  EXPECT_GE(v.size(0), 3);
  EXPECT_LE(v.size(0), 24);
  expect_batch_matches_items(m, {16, 11, 2});
  // Bidirectional tower too.
  CoEncoder b = tiny("dynamic", {{"min_output_size", 3}, {"max_output_size", 24}, {"tower_attention", "bidirectional"}});
  expect_batch_matches_items(b, {16, 6});
}

// The seed's per-item, per-span loop (its CoEncoderDynamicWeightedAvgPool1d.forward), written out plainly:
// the vectorised pooling must give the same k and the same vectors.
torch::Tensor seed_style_pool(DynamicWeightedAvgPoolImpl& p, const torch::Tensor& h) {
  const int64_t n = h.size(0), d = h.size(1);
  auto mask = torch::ones({1, n}, torch::kBool);
  auto s = p.size_estimation_attention->forward(h.unsqueeze(0), mask);
  auto mean = torch::sigmoid(s).mean(1);
  auto size = (mean * p.scale_param * (p.output_size_max - p.output_size_min) + p.output_size_min).to(torch::kInt32);
  const int64_t k = size.item<int64_t>();
  auto w = torch::sigmoid(p.weighted_pooling_attention->forward(h.unsqueeze(0), mask))[0];
  auto intervals = torch::linspace(0, static_cast<double>(n), k + 1).to(torch::kInt64);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t a = intervals[i].item<int64_t>(), b = intervals[i + 1].item<int64_t>();
    auto cw = w.narrow(0, a, b - a);
    if (cw.sum().item<double>() == 0) {
      rows.push_back(torch::zeros({d}));
    } else {
      rows.push_back((h.narrow(0, a, b - a) * cw.unsqueeze(-1)).sum(0) / (cw.sum() + 1e-8));
    }
  }
  return torch::stack(rows);
}

TEST(Pooling, DynamicEqualsTheSeedsLoop) {
  CoEncoder m = tiny("dynamic");
  auto& pool = *m->connector->dynamic_pooling;
  torch::NoGradGuard no_grad;
  for (int64_t n : {5, 31, 97}) {  // shorter and longer than the minimum size (32)
    SCOPED_TRACE(n);
    auto h = torch::randn({n, 24}, at::detail::createCPUGenerator(n));
    Pooled p = pool.forward(h.unsqueeze(0), torch::ones({1, n}, torch::kBool));
    torch::Tensor expected = seed_style_pool(pool, h);
    ASSERT_EQ(p.states.size(1), expected.size(0));
    EXPECT_GT(expected.size(0), 32);  // scale_param 0.6 moved the size off the minimum
    EXPECT_LT(max_diff(p.states[0], expected), 1e-5);
    EXPECT_TRUE(p.mask.all().item<bool>());
  }
}

// ---- gradients ----------------------------------------------------------------------------------------------------

// A loss through the vectors reaches every trainable parameter with a non-zero gradient.
void expect_gradients(CoEncoder& m, const std::vector<std::string>& extra_trainable = {}) {
  for (auto& p : m->named_parameters()) {
    bool train = p.key().rfind("connector.", 0) == 0;
    for (const auto& prefix : extra_trainable) train = train || p.key().rfind(prefix, 0) == 0;
    p.value().set_requires_grad(train);
    p.value().mutable_grad() = torch::Tensor();
  }
  auto ids = torch::zeros({2, 16}, torch::kInt64);
  ids[0].copy_(ids_tensor(random_ids(16, 5)));
  ids[1].narrow(0, 0, 9).copy_(ids_tensor(random_ids(9, 6)));
  ConnectorOutput out = m->forward_context(ids, torch::tensor({16, 9}, torch::kInt64));
  auto probe = torch::randn(out.vectors.sizes(), at::detail::createCPUGenerator(3));
  torch::Tensor loss = (out.vectors * probe * out.mask.unsqueeze(-1)).sum();
  loss.backward();
  int checked = 0;
  for (const auto& p : m->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    ++checked;
    ASSERT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key() << " got a zero gradient";
  }
  EXPECT_GT(checked, 0);
}

TEST(Gradients, DynamicReachesTheSizeEstimateThroughTheTaskLoss) {
  CoEncoder m = tiny("dynamic", {{"min_output_size", 3}, {"max_output_size", 24}});
  expect_gradients(m);  // includes scale_param and size_estimation_attention.* (straight-through span edges)
}

TEST(Gradients, DynamicSizeLossPullsTowardTheRatio) {
  CoEncoder m = tiny("dynamic", {{"min_output_size", 1}, {"max_output_size", 64}});
  auto ids = ids_tensor(random_ids(16, 5)).unsqueeze(0);
  ConnectorOutput out = m->forward_context(ids, torch::tensor({16}, torch::kInt64));
  ASSERT_TRUE(out.size_loss.defined() && out.size_estimate.defined());
  const double size = out.size_estimate.item<double>();
  out.size_loss.backward();
  auto& pool = *m->connector->dynamic_pooling;
  ASSERT_TRUE(pool.scale_param.grad().defined());
  EXPECT_NE(pool.size_estimation_attention->o_proj->weight.grad().abs().sum().item<double>(), 0.0);
  // target = 16 / 4 = 4: a size above it is pushed down, i.e. d loss / d scale > 0 (the mean sigmoid is > 0).
  ASSERT_GT(size, 4.0);
  EXPECT_GT(pool.scale_param.grad().item<double>(), 0.0);
  // The forward value is the seed's truncated size.
  EXPECT_EQ(out.sizes[0].item<int64_t>(), static_cast<int64_t>(size));
}

TEST(Gradients, MeanAndAttnReachProjectorAndPooledLayer) {
  CoEncoder mean = tiny("mean");
  expect_gradients(mean);
  CoEncoder attn = tiny("attn");
  // The pooled attention runs inside tower layer 1 (feature layer -2 of 3): a trained tower learns through it.
  expect_gradients(attn, {"context_tower.tower.model.layers.1."});
}

// ---- chunks and the decoder input --------------------------------------------------------------------------------

TEST(Chunking, DocumentEqualsItsChunksCompressedOneByOne) {
  for (const char* mode : {"dynamic", "mean", "attn"}) {
    SCOPED_TRACE(mode);
    CoEncoder m = tiny(mode, {{"min_output_size", 2}, {"max_output_size", 12}});
    TokenIds doc = random_ids(16 * 4 + 5, 42);  // four full chunks and a short one
    std::vector<torch::Tensor> together = m->compress(doc, /*n_batch=*/3);
    ASSERT_EQ(together.size(), 5u);
    for (size_t i = 0; i < together.size(); ++i) {
      const int64_t begin = static_cast<int64_t>(i) * 16;
      const int64_t end = std::min<int64_t>(begin + 16, static_cast<int64_t>(doc.size()));
      torch::Tensor alone = m->compress_chunk(TokenIds(doc.begin() + begin, doc.begin() + end));
      ASSERT_EQ(together[i].sizes(), alone.sizes()) << "chunk " << i;
      EXPECT_LT(max_diff(together[i], alone), 1e-5) << "chunk " << i;
    }
  }
  CoEncoder m = tiny("mean");
  EXPECT_COENC_ERROR(m->compress({}), "cannot compress an empty document");
  EXPECT_COENC_ERROR(m->compress_chunk(TokenIds(17, 5)), "a chunk holds at most 16 tokens (chunk_size), got 17");
  EXPECT_COENC_ERROR(m->compress({5, 97}), "token id 97 is outside the tower vocabulary [0, 97)");
}

// Bulk compression hands over chunks of many documents, short ones among full ones: batched longest first, each
// chunk's vectors still come back in its place and equal the chunk compressed alone.
TEST(Chunking, ChunksOfMixedLengthsComeBackInTheirOrder) {
  for (const char* mode : {"dynamic", "mean", "attn"}) {
    SCOPED_TRACE(mode);
    CoEncoder m = tiny(mode, {{"min_output_size", 2}, {"max_output_size", 12}});
    std::vector<TokenIds> chunks;
    uint64_t seed = 7;
    for (int64_t len : {5, 16, 3, 16, 9, 16, 1, 12, 16}) chunks.push_back(random_ids(len, seed++));
    const std::vector<torch::Tensor> together = m->compress_chunks(chunks, /*n_batch=*/4);
    ASSERT_EQ(together.size(), chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      const torch::Tensor alone = m->compress_chunk(chunks[i]);
      ASSERT_EQ(together[i].sizes(), alone.sizes()) << "chunk " << i;
      EXPECT_LT(max_diff(together[i], alone), 1e-5) << "chunk " << i;
    }
  }
}

TEST(Chunking, ProgressAfterEachBatch) {
  CoEncoder m = tiny("mean");
  std::vector<int64_t> progress;
  m->compress(random_ids(16 * 4 + 5, 42), /*n_batch=*/2, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 5);
    progress.push_back(done);
  });
  EXPECT_EQ(progress, (std::vector<int64_t>{2, 4, 5}));
}

// A random float32 Co-Encoder on the GPU with pooling `mode` (dynamic pooling's scale set so that sizes vary).
CoEncoder cuda_co_encoder(const char* mode) {
  json j = co_json(mode);
  j.update({{"min_output_size", 2}, {"max_output_size", 12}});
  CoEncoder m = random_co_encoder(config_of(j), DeviceOptions{torch::kCUDA, torch::kFloat32}, 1, 0.2);
  if (m->connector->dynamic_pooling) {
    torch::NoGradGuard no_grad;
    m->connector->dynamic_pooling->scale_param.fill_(0.6);
  }
  return m;
}

// On a GPU the vectors for the host come back through page-locked memory while the next batch is queued, the host
// waiting a batch behind (compress_chunks): they equal the device's own vectors, and progress reaches every chunk
// in order.
TEST(Chunking, CudaVectorsForTheHostEqualTheDevicesOwn) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const char* mode : {"dynamic", "mean", "attn"}) {
    SCOPED_TRACE(mode);
    CoEncoder m = cuda_co_encoder(mode);
    const std::vector<TokenIds> chunks = m->split_chunks(random_ids(16 * 40 + 5, 42));  // 41 chunks, 14 batches
    std::vector<int64_t> progress;
    const auto on_progress = [&](int64_t done, int64_t total) {
      EXPECT_EQ(total, 41);
      progress.push_back(done);
    };
    const std::vector<torch::Tensor> host = m->compress_chunks(chunks, 3, on_progress, torch::kCPU);
    const std::vector<torch::Tensor> device = m->compress_chunks(chunks, 3);
    ASSERT_EQ(host.size(), 41u);
    ASSERT_EQ(device.size(), 41u);
    for (size_t i = 0; i < host.size(); ++i) {
      EXPECT_TRUE(host[i].device().is_cpu()) << "chunk " << i;
      EXPECT_TRUE(torch::equal(host[i], device[i].cpu())) << "chunk " << i;
    }
    ASSERT_EQ(progress.size(), 14u);
    for (size_t i = 0; i < progress.size(); ++i) EXPECT_EQ(progress[i], std::min<int64_t>(3 * (i + 1), 41));
  }
}

// On a GPU a masked batch of fewer than n_batch chunks is padded with one-token rows up to a power of two (one
// attention plan for many batch sizes): each real chunk's vectors still equal the chunk compressed alone.
TEST(Chunking, CudaShortBatchesPaddedToAPowerOfTwoEqualEachChunkAlone) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const char* mode : {"dynamic", "mean", "attn"}) {
    SCOPED_TRACE(mode);
    CoEncoder m = cuda_co_encoder(mode);
    // 13 chunks, longest first: a batch of 8 full ones, then 4 full and the short one, padded to 8 rows
    std::vector<TokenIds> chunks = m->split_chunks(random_ids(16 * 12 + 5, 42));
    const std::vector<torch::Tensor> together = m->compress_chunks(chunks, /*n_batch=*/8, nullptr, torch::kCPU);
    ASSERT_EQ(together.size(), chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      const torch::Tensor alone = m->compress_chunk(chunks[i]).cpu();
      ASSERT_EQ(together[i].sizes(), alone.sizes()) << "chunk " << i;
      EXPECT_LT(max_diff(together[i], alone), 1e-4) << "chunk " << i;
    }
  }
}

// On a GPU full batches of n_batch chunks replay a CUDA graph captured once per row count and ratio
// (set_context_graphs): their vectors, kept on the device or copied to the host, equal the eager batches', batch
// after batch (each replay rewrites the graph's buffers), and another ratio captures another graph.
TEST(Chunking, CudaGraphedFullBatchesEqualEagerOnes) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const char* mode : {"mean", "attn"}) {
    SCOPED_TRACE(mode);
    CoEncoder m = cuda_co_encoder(mode);
    const std::vector<TokenIds> chunks = m->split_chunks(random_ids(16 * 24 + 5, 42));  // 6 full batches of 4
    for (int64_t ratio : {4, 2}) {
      SCOPED_TRACE("ratio " + std::to_string(ratio));
      m->set_compression_ratio(ratio);
      m->set_context_graphs(false);
      const std::vector<torch::Tensor> eager = m->compress_chunks(chunks, 4);
      m->set_context_graphs(true);
      const std::vector<torch::Tensor> device = m->compress_chunks(chunks, 4);
      const std::vector<torch::Tensor> host = m->compress_chunks(chunks, 4, nullptr, torch::kCPU);
      EXPECT_EQ(m->captured_context_graphs(), ratio == 4 ? 1 : 2);
      ASSERT_EQ(device.size(), chunks.size());
      ASSERT_EQ(host.size(), chunks.size());
      for (size_t i = 0; i < chunks.size(); ++i) {
        ASSERT_EQ(device[i].sizes(), eager[i].sizes()) << "chunk " << i;
        EXPECT_EQ(device[i].size(0), (static_cast<int64_t>(chunks[i].size()) + ratio - 1) / ratio) << "chunk " << i;
        EXPECT_LT(max_diff(device[i], eager[i]), 1e-5) << "chunk " << i;
        EXPECT_TRUE(torch::equal(host[i], device[i].cpu())) << "chunk " << i;
      }
    }
  }
}

// Bulk compression queues a group's chunks and collects them after queueing the next group (queue_chunks): each
// group, collected in either order, gives every chunk's vectors as that chunk compressed alone; on the CPU and,
// where there is one, the GPU.
TEST(Chunking, QueuedGroupsCollectedLaterEqualEachChunkAlone) {
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) devices.push_back(torch::kCUDA);
  for (const torch::Device& device : devices) {
    for (const char* mode : {"dynamic", "mean", "attn"}) {
      SCOPED_TRACE(std::string(mode) + " on " + device.str());
      CoEncoder m = device.is_cuda() ? cuda_co_encoder(mode)
                                     : tiny(mode, {{"min_output_size", 2}, {"max_output_size", 12}});
      std::vector<TokenIds> first, second;
      uint64_t seed = 11;
      for (int64_t len : {16, 5, 16, 16, 9, 1, 16}) first.push_back(random_ids(len, seed++));
      for (int64_t len : {3, 16, 16, 12}) second.push_back(random_ids(len, seed++));
      QueuedChunks queued_first = m->queue_chunks(first, 3, torch::kCPU);
      QueuedChunks queued_second = m->queue_chunks(second, 3, torch::kCPU);
      const std::vector<torch::Tensor> got_second = queued_second.collect(), got_first = queued_first.collect();
      for (const auto& [chunks, got] : {std::make_pair(&first, &got_first), std::make_pair(&second, &got_second)}) {
        ASSERT_EQ(got->size(), chunks->size());
        for (size_t i = 0; i < chunks->size(); ++i) {
          const torch::Tensor alone = m->compress_chunk(chunks->at(i)).cpu();
          EXPECT_TRUE(got->at(i).device().is_cpu()) << "chunk " << i;
          ASSERT_EQ(got->at(i).sizes(), alone.sizes()) << "chunk " << i;
          EXPECT_LT(max_diff(got->at(i), alone), 1e-4) << "chunk " << i;
        }
      }
      EXPECT_COENC_ERROR(queued_first.collect(), "these queued chunks were collected already");
    }
  }
}

TEST(RawPrompt, BlockIsBocVectorsEoc) {
  CoEncoder m = tiny("mean");
  std::vector<torch::Tensor> chunks = m->compress(random_ids(22, 9));  // chunks of 16 and 6 tokens: 4 + 2 vectors
  torch::Tensor block = m->context_block(chunks);
  ASSERT_EQ(block.sizes(), (std::vector<int64_t>{8, 32}));
  auto marks = m->language_model->embed(torch::tensor({99, 100}, torch::kInt64));
  EXPECT_TRUE(torch::equal(block[0], marks[0]));
  EXPECT_TRUE(torch::equal(block[7], marks[1]));
  EXPECT_TRUE(torch::equal(block.narrow(0, 1, 4), chunks[0]));
  std::vector<Segment> input = raw_prompt(*m, {chunks}, {5, 6, 7});
  ASSERT_EQ(input.size(), 2u);
  EXPECT_FALSE(input[0].is_tokens());
  EXPECT_TRUE(input[1].is_tokens());
  Session s(m->language_model);
  EXPECT_EQ(s.prefill_all_logits(input).sizes(), (std::vector<int64_t>{11, 101}));
}

TEST(RawPrompt, SeveralDocumentsAreBlocksInOrder) {
  CoEncoder m = tiny("mean");
  std::vector<torch::Tensor> a = m->compress(random_ids(22, 9));  // 4 + 2 vectors
  std::vector<torch::Tensor> b = m->compress(random_ids(7, 10));  // 2 vectors
  std::vector<Segment> input = raw_prompt(*m, {a, b}, {5, 6, 7});
  ASSERT_EQ(input.size(), 3u);
  ASSERT_FALSE(input[0].is_tokens());
  ASSERT_FALSE(input[1].is_tokens());
  EXPECT_TRUE(torch::equal(input[0].rows, m->context_block(a)));  // [BOC] a [EOC]
  EXPECT_TRUE(torch::equal(input[1].rows, m->context_block(b)));  // [BOC] b [EOC]
  EXPECT_EQ(input[1].rows.size(0), 4);
  EXPECT_EQ(input[2].ids, (TokenIds{5, 6, 7}));
  // One document: the seed's input, segment for segment.
  std::vector<Segment> one = raw_prompt(*m, {a}, {5, 6, 7});
  ASSERT_EQ(one.size(), 2u);
  EXPECT_TRUE(torch::equal(one[0].rows, m->context_block(a)));
  EXPECT_EQ(one[1].ids, (TokenIds{5, 6, 7}));
  // The decoder reads the two blocks as one sequence: 8 + 4 + 3 positions, and what follows the first block
  // sees it (the logits there differ from the second block read alone).
  Session s(m->language_model);
  torch::Tensor both = s.prefill_all_logits(input);
  EXPECT_EQ(both.sizes(), (std::vector<int64_t>{15, 101}));
  Session alone(m->language_model);
  torch::Tensor second = alone.prefill_all_logits({input[1], input[2]});
  EXPECT_GT(max_diff(both.narrow(0, 8, 7), second), 1e-4);
}

// ---- learned BOC / EOC rows ---------------------------------------------------------------------------------------

const json kLearned = {{"context_markers", "learned"}};

torch::Tensor token_marks(CoEncoder& m) {
  torch::NoGradGuard no_grad;
  return m->language_model->embed(torch::tensor({99, 100}, torch::kInt64));  // [2, 32]
}

TEST(ContextMarkers, LearnedRowsStartAsTheTokenEmbeddings) {
  CoEncoder tokens = tiny("dynamic"), learned = tiny("dynamic", kLearned);
  auto lp = learned->connector->named_parameters();
  ASSERT_TRUE(lp.contains("begin_of_context") && lp.contains("end_of_context"));
  EXPECT_EQ(lp["begin_of_context"].sizes(), (std::vector<int64_t>{32}));
  EXPECT_TRUE(lp["begin_of_context"].requires_grad());  // the connector is trainable
  EXPECT_FALSE(tokens->connector->named_parameters().contains("begin_of_context"));
  // The markers draw nothing from the seed: every other connector weight is what a "tokens" model gets.
  for (const auto& p : tokens->connector->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), lp[p.key()])) << p.key();
  // They start as the decoder's embeddings of the configured ids, so the block is the seed's.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(learned->context_marks(), token_marks(learned)));
  EXPECT_TRUE(torch::equal(tokens->context_marks(), token_marks(tokens)));
  std::vector<torch::Tensor> chunks = tokens->compress(random_ids(20, 3));
  EXPECT_TRUE(torch::equal(learned->context_block(chunks), tokens->context_block(chunks)));
}

TEST(ContextMarkers, LearnedRowsFrameTheBlock) {
  CoEncoder m = tiny("mean", kLearned);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> chunks = m->compress(random_ids(22, 9));  // 4 + 2 vectors
  torch::Tensor before = m->context_block(chunks);
  auto gen = at::detail::createCPUGenerator(11);
  m->connector->begin_of_context.copy_(torch::randn({32}, gen));
  m->connector->end_of_context.copy_(torch::randn({32}, gen));
  torch::Tensor block = m->context_block(chunks);
  ASSERT_EQ(block.sizes(), (std::vector<int64_t>{8, 32}));
  EXPECT_TRUE(torch::equal(block[0], m->connector->begin_of_context));
  EXPECT_TRUE(torch::equal(block[7], m->connector->end_of_context));
  EXPECT_FALSE(torch::equal(block[0], token_marks(m)[0]));
  EXPECT_TRUE(torch::equal(block.narrow(0, 1, 6), before.narrow(0, 1, 6)));  // the vectors are untouched
  EXPECT_TRUE(torch::equal(m->context_marks(), torch::stack({block[0], block[7]})));
  // The decoder reads them: the logits after the block change.
  Session s1(m->language_model), s2(m->language_model);
  EXPECT_GT(max_diff(s1.prefill_all_logits({Segment::embeddings(before)}),
                     s2.prefill_all_logits({Segment::embeddings(block)})),
            1e-4);
}

TEST(ContextMarkers, LearnedRowsGetGradientsThroughTheTrainingObjective) {
  CoEncoder m = tiny("mean", kLearned);
  {
    torch::Tensor marks = m->context_marks();
    EXPECT_TRUE(marks.requires_grad());
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(m->context_marks().requires_grad());  // inference: no graph
  }
  // The trainer's batch (co_encoder_batch_loss reads context_marks()): the loss reaches both rows.
  data::Example ex;
  ex.objective = data::Objective::Reconstruction;
  ex.context = random_ids(20, 4);
  ex.target = random_ids(6, 5);
  data::BatchLoss loss = data::co_encoder_batch_loss(*m, {ex});
  const auto r = static_cast<size_t>(data::Objective::Reconstruction);
  ASSERT_TRUE(loss.loss_sum[r].defined());
  loss.loss_sum[r].backward();
  for (torch::Tensor* t : {&m->connector->begin_of_context, &m->connector->end_of_context}) {
    ASSERT_TRUE(t->grad().defined());
    EXPECT_GT(t->grad().abs().sum().item<double>(), 0.0);
  }
  // "tokens" with a frozen decoder: the rows are constants.
  CoEncoder tokens = tiny("mean");
  EXPECT_FALSE(tokens->context_marks().requires_grad());
}

// ---- distillation --------------------------------------------------------------------------------------------

// The distillation term of a training batch: for every example with a context and a full reading
// (teacher_prompt), the KL divergence on its target tokens between the decoder reading teacher_prompt + target
// and reading [BOC] v [EOC] prompt target. Computed here one example at a time through a Session (the inference
// path), it equals what the batch computes for all of them together (rows of different lengths, padded);
// examples without a full reading or without a context are left out; its gradient reaches the connector.
TEST(Distillation, BatchKlEqualsEachExampleReadAlone) {
  CoEncoder m = tiny("mean");
  auto example = [](data::Objective o, TokenIds context, TokenIds teacher, TokenIds prompt, TokenIds target) {
    data::Example ex;
    ex.objective = o;
    ex.context = std::move(context);
    ex.teacher_prompt = std::move(teacher);
    ex.prompt = std::move(prompt);
    ex.target = std::move(target);
    return ex;
  };
  const std::vector<data::Example> batch = {
      example(data::Objective::Continuation, random_ids(20, 1), random_ids(20, 2), {}, random_ids(6, 3)),
      example(data::Objective::Reconstruction, random_ids(12, 4), {}, {}, random_ids(12, 5)),  // no full reading
      example(data::Objective::Qa, random_ids(30, 6), random_ids(35, 7), random_ids(3, 8), random_ids(4, 9)),
      example(data::Objective::Lm, {}, random_ids(9, 10), {}, random_ids(5, 11)),  // no context
  };
  auto kl_alone = [&](const data::Example& ex) {
    torch::NoGradGuard no_grad;
    const int64_t p = static_cast<int64_t>(ex.teacher_prompt.size()), t = static_cast<int64_t>(ex.target.size());
    TokenIds full_text = ex.teacher_prompt;
    full_text.insert(full_text.end(), ex.target.begin(), ex.target.end());
    Session full(m->language_model);
    torch::Tensor teacher = full.prefill_all_logits({Segment::tokens(full_text)}).narrow(0, p - 1, t).log_softmax(-1);
    TokenIds text = ex.prompt;
    text.insert(text.end(), ex.target.begin(), ex.target.end());
    const std::vector<Segment> input = raw_prompt(*m, {m->compress(ex.context)}, text);
    const int64_t at = input[0].length() + static_cast<int64_t>(ex.prompt.size()) - 1;
    Session compressed(m->language_model);
    torch::Tensor student = compressed.prefill_all_logits(input).narrow(0, at, t).log_softmax(-1);
    return (teacher.exp() * (teacher - student)).sum().item<double>();
  };
  const double expected = kl_alone(batch[0]) + kl_alone(batch[2]);
  EXPECT_GT(expected, 1e-3);  // the readings differ: a random connector
  data::BatchLoss bl = data::co_encoder_batch_loss(*m, batch, true);
  EXPECT_EQ(bl.distill_tokens, 6 + 4);
  EXPECT_NEAR(bl.distill_sum.item<double>(), expected, 1e-4 * expected);
  EXPECT_EQ(data::co_encoder_batch_loss(*m, batch).distill_tokens, 0);  // only when asked for
  bl.distill_sum.backward();
  const torch::Tensor g = m->connector->named_parameters()["linear_2.weight"].grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0.0);
}

// ---- checkpoints -------------------------------------------------------------------------------------------------

TEST(CoEncoderCheckpoint, SaveLoadRoundTripIsExact) {
  for (const char* mode : {"dynamic", "mean"}) {
    SCOPED_TRACE(mode);
    TempDir dir;
    CoEncoder m = tiny(mode);
    save_co_encoder(*m, dir.path());
    auto file = SafetensorsFile::open(dir / "model.safetensors");
    EXPECT_TRUE(file->contains("context_tower.tower.model.layers.0.self_attn.q_proj.bias"));
    EXPECT_TRUE(file->contains("language_model.lm_head.weight"));
    EXPECT_TRUE(file->contains("connector.linear_2.bias"));
    EXPECT_EQ(file->contains("connector.dynamic_pooling.scale_param"), std::string(mode) == "dynamic");
    file.reset();
    CoEncoder back = load_co_encoder(dir.path(), DeviceOptions{});
    TokenIds ids = random_ids(14, 2);
    EXPECT_TRUE(torch::equal(m->compress_chunk(ids), back->compress_chunk(ids)));
  }
}

TEST(CoEncoderCheckpoint, TowerReferencedByPath) {
  TempDir dir;
  CoEncoder m = tiny("mean");
  save_decoder(m->context_tower->tower, dir / "tower");
  json j = co_json("mean");
  j.erase("context_config");
  j["context_tower_path"] = "tower";
  CoEncoderConfig c = CoEncoderConfig::from_json(j, "config.json", dir.path());
  CoEncoder by_path(c, m->context_tower->tower, m->language_model, DeviceOptions{});
  {
    torch::NoGradGuard no_grad;
    auto src = m->connector->named_parameters();
    for (auto& p : by_path->connector->named_parameters()) p.value().copy_(src[p.key()]);
  }
  save_co_encoder(*by_path, dir.path());
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_FALSE(file->contains("context_tower.tower.model.norm.weight"));  // not copied into the checkpoint
  file.reset();
  CoEncoder back = load_co_encoder(dir.path(), DeviceOptions{});
  TokenIds ids = random_ids(11, 4);
  EXPECT_TRUE(torch::equal(m->compress_chunk(ids), back->compress_chunk(ids)));
}

// Rewrites dir/model.safetensors through `edit` (name -> tensor; return an undefined tensor to drop it).
void rewrite_weights(const TempDir& dir,
                     const std::function<torch::Tensor(const std::string&, torch::Tensor)>& edit,
                     std::vector<std::pair<std::string, torch::Tensor>> extra = {}) {
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& e : file->entries()) {
    torch::Tensor t = edit(e.name, file->tensor(e.name).clone());
    if (t.defined()) tensors.emplace_back(e.name, t);
  }
  for (auto& x : extra) tensors.push_back(x);
  file.reset();
  write_safetensors(dir / "model.safetensors", tensors);
}

TEST(CoEncoderCheckpoint, MismatchesAreNamed) {
  TempDir dir;
  CoEncoder m = tiny("dynamic");
  save_co_encoder(*m, dir.path());
  const std::string cfg = test::read_file(dir / "config.json");
  // A connector trained for a tower of another width.
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "connector.linear_1.weight" ? torch::zeros({32, 16}) : t;
  });
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "connector.linear_1.weight [32, 16] reads tower states of width 16, but "
                     "context_config.hidden_size is 24");
  // ... or for another decoder.
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "connector.linear_1.weight" ? torch::zeros({48, 24}) : t;
  });
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "writes vectors of width 48, but text_config.hidden_size is 32");
  // A dynamic-pooling checkpoint read as "mean".
  save_co_encoder(*m, dir.path());
  json j = json::parse(cfg);
  j["pooling"] = "mean";
  test::write_file(dir / "config.json", j.dump());
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "holds connector.dynamic_pooling.* tensors but the config says pooling \"mean\"");
  test::write_file(dir / "config.json", cfg);
  // Missing, stray and mis-shaped tensors.
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "connector.dynamic_pooling.weighted_pooling_attention.o_proj.weight" ? torch::Tensor() : t;
  }, {{"vision_tower.weight", torch::zeros({2})}});
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "missing tensors: connector.dynamic_pooling.weighted_pooling_attention.o_proj.weight");
  save_co_encoder(*m, dir.path());
  rewrite_weights(dir, [](const std::string&, torch::Tensor t) { return t; }, {{"vision_tower.weight", torch::zeros({2})}});
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}), "unexpected tensors: vision_tower.weight");
  save_co_encoder(*m, dir.path());
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "context_tower.tower.model.norm.weight" ? torch::ones({25}) : t;
  });
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "wrong shapes: context_tower.tower.model.norm.weight [25] (expected [24])");
}

TEST(CoEncoderCheckpoint, LearnedMarkersRoundTripExactly) {
  TempDir dir;
  CoEncoder m = tiny("dynamic", kLearned);
  {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(12);
    m->connector->begin_of_context.copy_(torch::randn({32}, gen));
    m->connector->end_of_context.copy_(torch::randn({32}, gen));
  }
  save_co_encoder(*m, dir.path());
  EXPECT_EQ(json::parse(test::read_file(dir / "config.json"))["context_markers"], "learned");
  {
    auto file = SafetensorsFile::open(dir / "model.safetensors");
    ASSERT_TRUE(file->contains("connector.begin_of_context"));
    EXPECT_EQ(file->tensor("connector.end_of_context").sizes(), (std::vector<int64_t>{32}));
  }
  CoEncoder back = load_co_encoder(dir.path(), DeviceOptions{});
  EXPECT_EQ(back->config().context_markers, ContextMarkers::Learned);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(back->context_marks(), m->context_marks()));
  EXPECT_FALSE(back->connector->begin_of_context.requires_grad());  // loaded frozen, as every weight
  std::vector<torch::Tensor> chunks = m->compress(random_ids(20, 6));
  EXPECT_TRUE(torch::equal(back->context_block(chunks), m->context_block(chunks)));
  // A "tokens" checkpoint holds no marker tensors.
  TempDir plain;
  save_co_encoder(*tiny("dynamic"), plain.path());
  auto file = SafetensorsFile::open(plain / "model.safetensors");
  EXPECT_FALSE(file->contains("connector.begin_of_context"));
  EXPECT_FALSE(file->contains("connector.end_of_context"));
}

TEST(CoEncoderCheckpoint, LearnedMarkerMismatchesAreNamed) {
  TempDir dir;
  CoEncoder m = tiny("mean", kLearned);
  save_co_encoder(*m, dir.path());
  const std::string cfg = test::read_file(dir / "config.json");
  // Missing.
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "connector.end_of_context" ? torch::Tensor() : t;
  });
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "the checkpoint has no connector.end_of_context but the config says context_markers "
                     "\"learned\"");
  // Mis-shaped.
  save_co_encoder(*m, dir.path());
  rewrite_weights(dir, [](const std::string& name, torch::Tensor t) {
    return name == "connector.begin_of_context" ? t.unsqueeze(0) : t;
  });
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "connector.begin_of_context [1, 32] must be [32] (text_config.hidden_size)");
  // Present, but the config says "tokens" (an edited config.json, or the tensors pasted into another checkpoint).
  save_co_encoder(*m, dir.path());
  json j = json::parse(cfg);
  j["context_markers"] = "tokens";
  test::write_file(dir / "config.json", j.dump());
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}),
                     "the checkpoint holds connector.begin_of_context but the config says context_markers "
                     "\"tokens\"");
  j.erase("context_markers");  // absent means "tokens"
  test::write_file(dir / "config.json", j.dump());
  EXPECT_COENC_ERROR(load_co_encoder(dir.path(), DeviceOptions{}), "holds connector.begin_of_context");
  test::write_file(dir / "config.json", cfg);
  EXPECT_NO_THROW(load_co_encoder(dir.path(), DeviceOptions{}));
}

}  // namespace
}  // namespace coenc
