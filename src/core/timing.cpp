#include "coenc/timing.h"

#include <algorithm>

#include "coenc/error.h"
#include "core/torch_compat.h"

namespace coenc {

void synchronize_device(const torch::Device& device) { compat::synchronize(device); }
int64_t peak_memory_bytes(const torch::Device& device) { return compat::peak_memory_bytes(device); }
void reset_peak_memory(const torch::Device& device) { compat::reset_peak_memory(device); }
void allow_tf32(bool on) { compat::allow_tf32(on); }

struct Bf16Autocast::State {
  compat::AutocastScope scope;
};

Bf16Autocast::Bf16Autocast(const torch::Device& device, bool enabled)
    : state_(new State{{device.type(), compat::AutocastState{enabled, torch::kBFloat16}}}) {}
Bf16Autocast::~Bf16Autocast() = default;

double median(std::vector<double> values) {
  COENC_CHECK_CODE(!values.empty(), Internal, "median of no values");
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

TokenIds random_token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  auto t = torch::randint(vocab, {n}, at::detail::createCPUGenerator(seed), torch::kInt64);
  TokenIds ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<TokenId>(t[i].item<int64_t>());
  return ids;
}

}  // namespace coenc
