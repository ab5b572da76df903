// Plain-text training data as one stream of token ids, cut into random fixed-length windows.
#pragma once

#include <functional>
#include <random>
#include <string_view>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "coenc/tokenizer.h"

namespace coenc::data {

// Reads `files` of corpus-format text (documents separated by "\n\n<|doc|>\n") and calls `on_document` with each
// document, drawing a "tokenizing" progress bar whose note is `progress_note()`.
void for_each_document(const std::vector<std::string>& files, bool progress,
                       const std::function<void(std::string_view)>& on_document,
                       const std::function<std::string()>& progress_note);

class TextDataset {
 public:
  // Reads every file, splits it into documents at the corpus separator "\n\n<|doc|>\n", encodes each document
  // and appends the tokenizer's EOS (if it has one) after it. The last `eval_fraction` of the stream is held out.
  TextDataset(const std::vector<std::string>& files, const Tokenizer& tokenizer, double eval_fraction,
              int64_t seq_len, bool progress);

  // A batch of `batch` random windows of the training part: inputs [batch, seq_len] and next-token targets
  // [batch, seq_len], int64 on the CPU.
  std::pair<torch::Tensor, torch::Tensor> sample(int64_t batch, std::mt19937_64& rng) const;
  // The i-th consecutive window of the held-out part (wrapping around), same shapes with batch 1 each.
  std::pair<torch::Tensor, torch::Tensor> eval_window(int64_t i, int64_t batch) const;

  int64_t n_train_tokens() const { return split_; }
  int64_t n_eval_tokens() const { return static_cast<int64_t>(tokens_.size()) - split_; }

 private:
  std::pair<torch::Tensor, torch::Tensor> windows(const std::vector<int64_t>& starts) const;
  std::vector<int32_t> tokens_;
  int64_t split_ = 0;  // tokens_[0, split_) train, the rest eval
  int64_t seq_len_;
};

}  // namespace coenc::data
