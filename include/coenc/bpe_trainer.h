// A byte-level BPE trainer: counts pre-tokenized words of a text corpus, learns merges by pair frequency, and
// writes a tokenizer.json (+ tokenizer_config.json) that Hugging Face `tokenizers` and Co-Encoder load alike
// (`coenc tokenizer train`).
//
// Memory stays bounded: word counting keeps at most `max_words` distinct words, pruning the rarest when the
// table is full (the counts of very rare words become approximate; frequent words, which decide the merges,
// are exact once they pass the pruning threshold), and the merge phase works on that table only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace coenc::tok {

// The pre-tokenizer split of a byte-level BPE (src/tokenizer/pre_tokenizer.h runs it).
enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Gpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
  // \s+(?!\S)|\s+
  Llama3,
  // As Llama3 with \p{N} (one digit per piece) in place of \p{N}{1,3}.
  Qwen2,
};

struct BpeTrainerOptions {
  int vocab_size = 8192;  // total: special tokens + 256 byte symbols + merges
  // Added as special tokens with the first ids; the first is also BOS/EOS/PAD in tokenizer_config.json.
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  int64_t min_frequency = 2;                    // a pair seen fewer times is never merged
  size_t max_words = 2'000'000;                 // distinct words held while counting
  SplitPattern pattern = SplitPattern::Llama3;  // pre-tokenizer of the trained tokenizer
  bool progress = false;                        // draw progress bars on stderr
};

struct BpeTrainerStats {
  uint64_t bytes = 0;         // bytes of text counted
  uint64_t words = 0;         // pre-tokenized words counted
  size_t distinct_words = 0;  // distinct words kept for the merge phase
  uint64_t pruned_words = 0;  // distinct words dropped by pruning
  int merges = 0;             // merges learned
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options);

  // Counts the words of `text` (any bytes; invalid UTF-8 is replaced as in encoding).
  void add_text(std::string_view text);
  // Counts a whole file, or standard input for "-", reading it in blocks. Throws NotFound if it cannot be
  // read.
  void add_file(const std::string& path);

  // Learns the merges. Throws InvalidInput if vocab_size is too small for the specials and byte symbols.
  void train();

  // Writes tokenizer.json and tokenizer_config.json into `dir` (created if missing).
  void save(const std::string& dir) const;

  const BpeTrainerStats& stats() const { return stats_; }
  // The learned vocabulary (token text in the byte-level alphabet, in id order) and merges, after train().
  const std::vector<std::string>& vocab() const { return vocab_; }
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

 private:
  void count_word(std::string_view word);
  void prune();

  BpeTrainerOptions options_;
  BpeTrainerStats stats_;
  std::unordered_map<std::string, uint64_t> counts_;
  std::vector<std::string> vocab_;
  std::vector<std::pair<std::string, std::string>> merges_;
};

}  // namespace coenc::tok
