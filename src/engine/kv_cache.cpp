#include "coenc/kv_cache.h"

#include "coenc/error.h"

namespace coenc {

KvCache::KvCache(const ModelConfig& config, int64_t batch, int64_t capacity, int64_t max_length,
                 torch::Device device, torch::ScalarType dtype)
    : batch_(batch),
      n_kv_heads_(config.n_kv_heads),
      head_dim_(config.head_dim),
      n_layers_(config.n_layers),
      max_length_(max_length),
      device_(device),
      dtype_(dtype) {
  COENC_CHECK(batch > 0 && max_length > 0, "KV cache needs a positive batch ({}) and maximum length ({})", batch, max_length);
  allocate(std::min(std::max<int64_t>(capacity, 1), max_length));
}

void KvCache::allocate(int64_t capacity) {
  std::vector<torch::Tensor> k, v;
  auto options = torch::TensorOptions().device(device_).dtype(dtype_);
  for (int64_t l = 0; l < n_layers_; ++l) {
    // Zeroed, not empty: CUDA graph decoding attends to whole buckets of slots and masks the unwritten ones with
    // -inf, which turns into NaN where the slot's stale bytes happen to read as NaN or infinity (bf16 often).
    k.push_back(torch::zeros({batch_, n_kv_heads_, capacity, head_dim_}, options));
    v.push_back(torch::zeros({batch_, n_kv_heads_, capacity, head_dim_}, options));
    if (length_ > 0) {
      k.back().narrow(2, 0, length_).copy_(k_[l].narrow(2, 0, length_));
      v.back().narrow(2, 0, length_).copy_(v_[l].narrow(2, 0, length_));
    }
  }
  k_ = std::move(k);
  v_ = std::move(v);
  capacity_ = capacity;
}

void KvCache::reserve(int64_t n) {
  const int64_t needed = length_ + n;
  if (needed > max_length_)
    fail(ErrorCode::ExceedsContext, "sequence of {} positions exceeds the context of {} positions", needed, max_length_);
  if (needed <= capacity_) return;
  // Grow geometrically so that token-by-token decoding copies O(n) in total.
  allocate(std::min(max_length_, std::max(needed, 2 * capacity_)));
}

std::pair<torch::Tensor, torch::Tensor> KvCache::write(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  if (length_ + t > capacity_)
    fail(ErrorCode::Internal, "KV cache write of {} positions past capacity {} (reserve first)", t, capacity_);
  k_[layer].narrow(2, length_, t).copy_(k);
  v_[layer].narrow(2, length_, t).copy_(v);
  return {k_[layer].narrow(2, 0, length_ + t), v_[layer].narrow(2, 0, length_ + t)};
}

std::pair<torch::Tensor, torch::Tensor> KvCache::write_at(int64_t layer, const torch::Tensor& k,
                                                           const torch::Tensor& v, const torch::Tensor& pos,
                                                           int64_t len) {
  k_[layer].index_copy_(2, pos, k);
  v_[layer].index_copy_(2, pos, v);
  return {k_[layer].narrow(2, 0, len), v_[layer].narrow(2, 0, len)};
}

void KvCache::reserve_all() {
  if (capacity_ < max_length_) allocate(max_length_);
}

void KvCache::advance(int64_t n) {
  COENC_CHECK_CODE(length_ + n <= capacity_, Internal, "KV cache advanced past its capacity");
  length_ += n;
}

void KvCache::truncate(int64_t n) {
  COENC_CHECK(n >= 0 && n <= length_, "cannot truncate a KV cache of {} positions to {}", length_, n);
  length_ = n;
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (size_t l = 0; l < k_.size(); ++l) total += (k_[l].numel() + v_[l].numel()) * k_[l].element_size();
  return total;
}

}  // namespace coenc
