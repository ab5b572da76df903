#include "coenc/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "coenc/error.h"

namespace coenc {

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  COENC_CHECK(std::isfinite(options.temperature), "temperature must be a finite number");
  COENC_CHECK(options.top_p > 0, "top-p must be positive, got {}", options.top_p);
  COENC_CHECK(options.min_p < 1, "min-p must be below 1, got {}", options.min_p);
  COENC_CHECK(options.repetition_penalty > 0, "repetition penalty must be positive, got {}", options.repetition_penalty);
}

TokenId Sampler::sample(const torch::Tensor& logits_tensor, const TokenIds& history) {
  COENC_CHECK(logits_tensor.dim() == 1 && logits_tensor.scalar_type() == torch::kFloat32 && logits_tensor.is_cpu(),
              "sampler expects [vocab] float32 logits on the CPU");
  torch::Tensor contiguous = logits_tensor.contiguous();
  const float* src = contiguous.data_ptr<float>();
  const int64_t n_vocab = contiguous.size(0);
  std::vector<float> logits(src, src + n_vocab);

  // Repetition penalty (CTRL-style, as transformers and llama.cpp): divide positive logits, multiply negative.
  if (options_.repetition_penalty != 1.0f && options_.penalty_last_n != 0) {
    const size_t n = options_.penalty_last_n < 0 ? history.size()
                                                 : std::min(history.size(), static_cast<size_t>(options_.penalty_last_n));
    std::unordered_set<TokenId> seen(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
    for (TokenId id : seen) {
      if (id < 0 || id >= n_vocab) continue;
      float& l = logits[id];
      l = l > 0 ? l / options_.repetition_penalty : l * options_.repetition_penalty;
    }
  }

  if (options_.temperature <= 0.0f) {
    return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Candidates sorted by logit, cut by top-k.
  std::vector<int32_t> idx(n_vocab);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  int64_t k = options_.top_k > 0 ? std::min<int64_t>(options_.top_k, n_vocab) : n_vocab;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  idx.resize(k);

  // Probabilities at temperature 1 decide the cuts (as llama.cpp's chain does before its temperature step).
  std::vector<double> p(idx.size());
  const double max_logit = logits[idx[0]];
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) sum += p[i] = std::exp(static_cast<double>(logits[idx[i]]) - max_logit);
  for (auto& x : p) x /= sum;

  size_t keep = idx.size();
  if (options_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < idx.size(); ++i) {
      cum += p[i];
      if (cum >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (options_.min_p > 0.0f) {
    size_t j = 1;
    while (j < keep && p[j] >= options_.min_p * p[0]) ++j;
    keep = j;
  }
  idx.resize(keep);

  std::vector<double> w(keep);
  for (size_t i = 0; i < keep; ++i)
    w[i] = std::exp((static_cast<double>(logits[idx[i]]) - max_logit) / options_.temperature);
  std::discrete_distribution<size_t> draw(w.begin(), w.end());
  return idx[draw(rng_)];
}

}  // namespace coenc
