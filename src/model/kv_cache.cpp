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
  COENC_CHECK(batch > 0 && max_length > 0, "KV cache needs a positive batch ({}) and maximum length ({})",
              batch, max_length);
  allocate(std::min(std::max<int64_t>(capacity, 1), max_length), 0);
}

void KvCache::allocate(int64_t capacity, int64_t keep) {
  std::vector<torch::Tensor> k, v;
  auto options = torch::TensorOptions().device(device_).dtype(dtype_);
  for (int64_t l = 0; l < n_layers_; ++l) {
    // Zeroed, not empty: CUDA graph decoding attends to whole buckets of slots and masks the unwritten ones with
    // -inf, which turns into NaN where the slot's stale bytes happen to read as NaN or infinity (bf16 often).
    k.push_back(torch::zeros({batch_, n_kv_heads_, capacity, head_dim_}, options));
    v.push_back(torch::zeros({batch_, n_kv_heads_, capacity, head_dim_}, options));
    if (keep > 0) {
      k.back().narrow(2, 0, keep).copy_(k_[l].narrow(2, 0, keep));
      v.back().narrow(2, 0, keep).copy_(v_[l].narrow(2, 0, keep));
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
  allocate(std::min(max_length_, std::max(needed, 2 * capacity_)), length_);
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
  if (capacity_ < max_length_) allocate(max_length_, length_);
}

void KvCache::advance(int64_t n) {
  COENC_CHECK_CODE(length_ + n <= capacity_, Internal, "KV cache advanced past its capacity");
  length_ += n;
}

void KvCache::truncate(int64_t n) {
  COENC_CHECK(n >= 0 && n <= length_, "cannot truncate a KV cache of {} positions to {}", length_, n);
  length_ = n;
}

void KvCache::reserve_rows(int64_t positions) {
  if (positions > max_length_)
    fail(ErrorCode::ExceedsContext, "sequence of {} positions exceeds the context of {} positions", positions,
         max_length_);
  if (positions > capacity_) allocate(std::min(max_length_, std::max(positions, 2 * capacity_)), capacity_);
}

void KvCache::copy_row(int64_t row, const KvCache& from) {
  const int64_t n = from.length();
  COENC_CHECK_CODE(row >= 0 && row < batch_ && from.batch() == 1 && from.n_layers_ == n_layers_ &&
                       from.n_kv_heads_ == n_kv_heads_ && from.head_dim_ == head_dim_,
                   Internal, "copy_row: row {} of {}, or a cache of another shape", row, batch_);
  reserve_rows(n);
  for (int64_t l = 0; l < n_layers_; ++l) {
    k_[l][row].narrow(1, 0, n).copy_(from.k_[l][0].narrow(1, 0, n));
    v_[l][row].narrow(1, 0, n).copy_(from.v_[l][0].narrow(1, 0, n));
  }
}

std::pair<torch::Tensor, torch::Tensor> KvCache::write_rows(int64_t layer, const torch::Tensor& k,
                                                            const torch::Tensor& v, const torch::Tensor& pos,
                                                            int64_t len) {
  const int64_t b = k.size(0);
  COENC_CHECK_CODE(b <= batch_ && k.size(2) == 1 && len <= capacity_, Internal,
                   "write_rows: {} rows of one position within {} rows and {} positions", b, batch_,
                   capacity_);
  auto rows = torch::arange(b, pos.options());
  using torch::indexing::Slice;
  // Row r's new key goes to position pos[r]: advanced indices on dims 0 and 2 put the [B] index first.
  k_[layer].index_put_({rows, Slice(), pos}, k.squeeze(2));
  v_[layer].index_put_({rows, Slice(), pos}, v.squeeze(2));
  return {k_[layer].narrow(0, 0, b).narrow(2, 0, len), v_[layer].narrow(0, 0, b).narrow(2, 0, len)};
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (size_t l = 0; l < k_.size(); ++l) total += (k_[l].numel() + v_[l].numel()) * k_[l].element_size();
  return total;
}

}  // namespace coenc
