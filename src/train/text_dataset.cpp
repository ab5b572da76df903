#include "train/text_dataset.h"

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "core/progress.h"
#include "io/data_file.h"

namespace coenc::data {

void for_each_document(const std::vector<std::string>& files, bool progress,
                       const std::function<void(std::string_view)>& on_document,
                       const std::function<std::string()>& progress_note) {
  COENC_CHECK(!files.empty(), "train_files: no training data given");
  const std::string sep = "\n\n<|doc|>\n";
  ProgressBar bar("tokenizing", static_cast<int64_t>(files.size()), "files", progress);
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string text = read_data_file(files[f], "training text");
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.find(sep, begin);
      if (end == std::string::npos) end = text.size();
      on_document(std::string_view(text).substr(begin, end - begin));
      begin = end + sep.size();
      bar.update(static_cast<int64_t>(f), progress_note());
    }
    bar.update(static_cast<int64_t>(f + 1), progress_note());
  }
  bar.finish(progress_note());
}

TextDataset::TextDataset(const std::vector<std::string>& files, const Tokenizer& tokenizer, double eval_fraction,
                         int64_t seq_len, bool progress)
    : seq_len_(seq_len) {
  COENC_CHECK(eval_fraction > 0 && eval_fraction < 0.5, "eval_fraction must be in (0, 0.5), got {}", eval_fraction);
  const auto eos = tokenizer.eos_id();
  for_each_document(
      files, progress,
      [&](std::string_view doc) {
        const TokenIds ids = tokenizer.encode(doc, EncodeOptions{false, false});
        tokens_.insert(tokens_.end(), ids.begin(), ids.end());
        if (eos) tokens_.push_back(*eos);
      },
      [&] { return format("{} tokens", tokens_.size()); });
  const int64_t n = static_cast<int64_t>(tokens_.size());
  split_ = n - static_cast<int64_t>(static_cast<double>(n) * eval_fraction);
  COENC_CHECK(split_ > seq_len + 1 && n - split_ > seq_len + 1,
              "training text too short: {} tokens, need more than {} for training and for evaluation (seq_len {})", n,
              2 * (seq_len + 1), seq_len);
}

std::pair<torch::Tensor, torch::Tensor> TextDataset::windows(const std::vector<int64_t>& starts) const {
  const int64_t b = static_cast<int64_t>(starts.size());
  torch::Tensor all = torch::empty({b, seq_len_ + 1}, torch::kInt64);
  auto* p = all.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t <= seq_len_; ++t) p[i * (seq_len_ + 1) + t] = tokens_[starts[i] + t];
  return {all.narrow(1, 0, seq_len_).contiguous(), all.narrow(1, 1, seq_len_).contiguous()};
}

std::pair<torch::Tensor, torch::Tensor> TextDataset::sample(int64_t batch, std::mt19937_64& rng) const {
  std::uniform_int_distribution<int64_t> pick(0, split_ - seq_len_ - 1);
  std::vector<int64_t> starts(batch);
  for (auto& s : starts) s = pick(rng);
  return windows(starts);
}

std::pair<torch::Tensor, torch::Tensor> TextDataset::eval_window(int64_t i, int64_t batch) const {
  const int64_t per = (n_eval_tokens() - 1) / seq_len_;
  std::vector<int64_t> starts(batch);
  for (int64_t k = 0; k < batch; ++k) starts[k] = split_ + ((i * batch + k) % per) * seq_len_;
  return windows(starts);
}

}  // namespace coenc::data
