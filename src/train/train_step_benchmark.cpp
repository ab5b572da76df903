// The trainer's step, timed (`coenc bench --train-step`; TrainStepBenchmark in coenc/train.h): the same batch
// loss (co_encoder_batch_loss), autocast and optimizer as `coenc train`, on random weights.
#include <chrono>

#include "coenc/co_encoder.h"
#include "coenc/error.h"
#include "coenc/timing.h"
#include "coenc/train.h"
#include "train/co_encoder_objectives.h"

namespace coenc {

nlohmann::json benchmark_train_steps(const TrainStepBenchmark& a) {
  const torch::Device device = a.device;
  const ModelConfig& decoder_cfg = a.decoder;
  using clock = std::chrono::steady_clock;
  const DeviceOptions f32{device, torch::kFloat32};
  if (device.is_cuda()) allow_tf32(true);
  DecoderLm tower = random_decoder(a.tower, f32, 3);
  DecoderLm decoder = random_decoder(decoder_cfg, f32, 1);
  CoEncoderConfig cc;
  cc.context = tower->config();
  cc.text = decoder_cfg;
  cc.pooling = PoolingMode::Mean;
  cc.ratio = a.ratio;
  cc.chunk_size = a.chunk;
  cc.min_output_size = 1;
  cc.max_output_size = a.chunk;
  cc.begin_of_context_token_id = 1;
  cc.end_of_context_token_id = 2;
  CoEncoder co(cc, tower, decoder, f32);
  co->init_connector(5, 0.02, true);
  std::vector<torch::Tensor> params;
  for (auto& p : co->named_parameters())
    if (p.key().rfind("connector.", 0) == 0) params.push_back(p.value());
  COENC_CHECK(a.train_tower == "full" || a.train_tower == "lora" || a.train_tower == "frozen",
              "train_tower must be full, lora or frozen, got \"{}\"", a.train_tower);
  if (a.train_tower == "full") {
    for (auto& p : tower->parameters()) p.set_requires_grad(true), params.push_back(p);
  } else if (a.train_tower == "lora") {
    for (auto& p : tower->add_lora(LoraOptions{}, 7)) params.push_back(p);
  }
  tower->set_activation_checkpointing(a.activation_checkpointing);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-5));
  const int64_t vocab = std::min(cc.context.vocab_size, decoder_cfg.vocab_size);
  std::vector<data::Example> batch;
  for (int64_t i = 0; i < a.examples; ++i) {
    data::Example e;
    e.objective = data::Objective::Continuation;
    e.context = random_token_ids(a.chunk, vocab, 100 + i);
    e.target = random_token_ids(a.target, vocab, 200 + i);
    batch.push_back(std::move(e));
  }
  const bool autocast = device.is_cuda();
  std::vector<double> times;
  int64_t context_tokens = 0, positions = 0;
  reset_peak_memory(device);
  for (int r = 0; r < a.reps + 1; ++r) {
    synchronize_device(device);
    auto t0 = clock::now();
    torch::Tensor loss;
    {
      Bf16Autocast mixed(device, autocast);
      data::BatchLoss bl = data::co_encoder_batch_loss(*co, batch);
      const int c = static_cast<int>(data::Objective::Continuation);
      loss = bl.loss_sum[c] / static_cast<double>(bl.tokens[c]);
      context_tokens = bl.context_tokens;
      positions = bl.decoder_positions;
    }
    loss.backward();
    opt.step();
    opt.zero_grad();
    synchronize_device(device);
    if (r > 0) times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  const double s = median(times);
  return {{"train_tower", a.train_tower}, {"examples", a.examples},
          {"chunk", a.chunk}, {"target", a.target}, {"ratio", cc.ratio}, {"activation_checkpointing", a.activation_checkpointing},
          {"autocast", autocast ? "bf16" : "none"}, {"seconds_per_step", s},
          {"context_tokens_per_s", context_tokens / s}, {"tokens_per_s", (context_tokens + positions) / s},
          {"decoder_positions", positions}, {"peak_bytes", peak_memory_bytes(device)}};
}

}  // namespace coenc
