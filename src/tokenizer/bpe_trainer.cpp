#include "coenc/bpe_trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <queue>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

// A progress bar on stderr, redrawn at most ten times a second.
class Progress {
 public:
  Progress(bool enabled, std::string label) : enabled_(enabled), label_(std::move(label)) {}
  ~Progress() {
    if (enabled_ && drawn_) std::cerr << "\n";
  }
  // `total` 0: unknown, shown as a count only.
  void update(uint64_t done, uint64_t total, const char* unit, double scale, bool force = false) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    char line[160];
    if (total > 0) {
      double f = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
      int filled = static_cast<int>(f * 30);
      std::snprintf(line, sizeof(line), "\r%s [%.*s%*s] %5.1f%%  %.1f / %.1f %s", label_.c_str(), filled,
                    "##############################", 30 - filled, "", f * 100, done / scale, total / scale,
                    unit);
    } else {
      std::snprintf(line, sizeof(line), "\r%s %.1f %s", label_.c_str(), done / scale, unit);
    }
    std::cerr << line << std::flush;
  }

 private:
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

uint64_t pair_key(int a, int b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
}

// The Jinja ChatML template written into tokenizer_config.json.
constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
    "endif %}";

}  // namespace

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(std::move(options)) {
  COENC_CHECK(options_.max_words >= 1000, "BPE trainer: max_words must be at least 1000, got {}",
              options_.max_words);
}

void BpeTrainer::count_word(std::string_view word) {
  ++stats_.words;
  auto it = counts_.find(std::string(word));
  if (it != counts_.end()) {
    ++it->second;
    return;
  }
  counts_.emplace(word, 1);
  if (counts_.size() > options_.max_words) prune();
}

// Drops the rarest words until the table is half full: first the words seen once, then twice, and so on.
void BpeTrainer::prune() {
  for (uint64_t threshold = 1; counts_.size() > options_.max_words / 2; threshold *= 2) {
    for (auto it = counts_.begin(); it != counts_.end();) {
      if (it->second <= threshold) {
        it = counts_.erase(it);
        ++stats_.pruned_words;
      } else {
        ++it;
      }
    }
  }
}

void BpeTrainer::add_text(std::string_view text) {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  stats_.bytes += text.size();
  thread_local std::vector<std::string_view> pieces;
  pieces.clear();
  split_by_pattern(text, options_.pattern, pieces);
  for (std::string_view p : pieces) count_word(p);
}

void BpeTrainer::add_file(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  uint64_t total = 0;
  if (path != "-") {
    file.open(path, std::ios::binary);
    COENC_CHECK_CODE(file.good(), NotFound, "{}: cannot open the training text", path);
    std::error_code ec;
    total = std::filesystem::file_size(path, ec);
    in = &file;
  }
  Progress bar(options_.progress, "counting " + (path == "-" ? std::string("stdin") : path));
  constexpr size_t kBlock = 4 << 20;
  std::string buffer, carry;
  uint64_t done = 0;
  while (*in) {
    buffer.resize(kBlock);
    in->read(buffer.data(), static_cast<std::streamsize>(kBlock));
    buffer.resize(static_cast<size_t>(in->gcount()));
    if (buffer.empty()) break;
    done += buffer.size();
    // Words never cross a newline... except runs of whitespace, which a block boundary inside a line
    // would cut in two: count up to the block's last newline and carry the rest.
    carry += buffer;
    size_t cut = carry.rfind('\n');
    if (cut == std::string::npos && carry.size() < (64u << 20)) continue;
    size_t end = cut == std::string::npos ? carry.size() : cut + 1;
    add_text(std::string_view(carry).substr(0, end));
    carry.erase(0, end);
    bar.update(done, total, "MB", 1e6);
  }
  if (!carry.empty()) add_text(carry);
  bar.update(done, total, "MB", 1e6, true);
}

void BpeTrainer::train() {
  const int n_special = static_cast<int>(options_.special_tokens.size());
  COENC_CHECK(
      options_.vocab_size >= n_special + 256,
      "BPE trainer: vocab_size {} is too small: it must hold the {} special tokens and 256 byte symbols",
      options_.vocab_size, n_special);
  vocab_ = options_.special_tokens;
  for (int b = 0; b < 256; ++b) vocab_.push_back(byte_to_unicode(static_cast<uint8_t>(b)));
  merges_.clear();
  stats_.distinct_words = counts_.size();

  // Words as symbol-id sequences; symbol ids are vocabulary ids.
  struct Word {
    std::vector<int> symbols;
    int64_t count;
  };
  std::vector<Word> words;
  words.reserve(counts_.size());
  // Sorted for a result that does not depend on the hash table's order.
  std::vector<std::pair<std::string, uint64_t>> sorted(counts_.begin(), counts_.end());
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [w, c] : sorted) {
    Word word{{}, static_cast<int64_t>(c)};
    for (char ch : w) word.symbols.push_back(n_special + static_cast<uint8_t>(ch));
    words.push_back(std::move(word));
  }
  sorted.clear();
  sorted.shrink_to_fit();

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where;
  for (uint32_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += words[w].count;
      auto& list = where[k];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  // Max-heap on (count, then the smaller pair key first) with lazy deletion: an entry whose count is stale
  // is pushed again with the current count when it surfaces.
  using Entry = std::pair<int64_t, uint64_t>;
  auto cmp = [](const Entry& a, const Entry& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> heap(cmp);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::unordered_map<std::string, int> id_of;
  for (size_t i = 0; i < vocab_.size(); ++i) id_of.emplace(vocab_[i], static_cast<int>(i));
  const int base = static_cast<int>(vocab_.size());
  const int target = options_.vocab_size - base;
  Progress bar(options_.progress, "merging");
  std::vector<uint32_t> last_visit(words.size(), UINT32_MAX);
  std::vector<int> merged;
  while (static_cast<int>(vocab_.size()) < options_.vocab_size && !heap.empty()) {
    auto [count, key] = heap.top();
    heap.pop();
    auto pc = pair_count.find(key);
    int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != count) {
      if (current > 0) heap.push({current, key});
      continue;
    }
    if (count < options_.min_frequency) break;
    int a = static_cast<int>(key >> 32), b = static_cast<int>(key & 0xFFFFFFFF);
    // Two different pairs can spell the same string ("a"+"bc", "ab"+"c"): they share one vocabulary entry.
    std::string joined = vocab_[a] + vocab_[b];
    auto known = id_of.find(joined);
    int new_id = known != id_of.end() ? known->second : static_cast<int>(vocab_.size());
    if (known == id_of.end()) {
      vocab_.push_back(joined);
      id_of.emplace(joined, new_id);
    }
    merges_.emplace_back(vocab_[a], vocab_[b]);
    uint32_t merge_no = static_cast<uint32_t>(merges_.size());

    std::vector<uint32_t> targets = std::move(where[key]);
    where.erase(key);
    std::unordered_map<uint64_t, int64_t> delta;
    for (uint32_t w : targets) {
      if (last_visit[w] == merge_no) continue;
      last_visit[w] = merge_no;
      Word& word = words[w];
      auto& s = word.symbols;
      bool found = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == a && s[i + 1] == b) {
          found = true;
          break;
        }
      }
      if (!found) continue;  // a stale entry of `where`: an earlier merge consumed the pair
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= word.count;
      merged.clear();
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(new_id);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s.swap(merged);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t k = pair_key(s[i], s[i + 1]);
        delta[k] += word.count;
        if (s[i] == new_id || s[i + 1] == new_id) {
          auto& list = where[k];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    for (const auto& [k, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[k];
      c += d;
      if (d > 0) heap.push({c, k});
      if (c <= 0) pair_count.erase(k);
    }
    pair_count.erase(key);
    bar.update(vocab_.size() - base, static_cast<uint64_t>(target), "k tokens", 1e3);
  }
  bar.update(vocab_.size() - base, static_cast<uint64_t>(target), "k tokens", 1e3, true);
  stats_.merges = static_cast<int>(merges_.size());
}

void BpeTrainer::save(const std::string& dir) const {
  namespace fs = std::filesystem;
  COENC_CHECK_CODE(!vocab_.empty(), Internal, "BPE trainer: save() called before train()");
  std::error_code ec;
  fs::create_directories(dir, ec);
  COENC_CHECK_CODE(!ec, InvalidInput, "{}: cannot create the output directory: {}", dir, ec.message());

  using ojson = nlohmann::ordered_json;
  const std::string& first = options_.special_tokens.empty() ? std::string() : options_.special_tokens[0];
  ojson added = ojson::array();
  for (size_t i = 0; i < options_.special_tokens.size(); ++i) {
    added.push_back({{"id", i},
                     {"content", options_.special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  ojson vocab = ojson::object();
  for (size_t i = 0; i < vocab_.size(); ++i) vocab[vocab_[i]] = i;
  ojson merges = ojson::array();
  for (const auto& [a, b] : merges_) merges.push_back({a, b});

  ojson post = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  if (!first.empty()) {
    // add_special puts the first special token (BOS) before the text.
    ojson bos = {{"SpecialToken", {{"id", first}, {"type_id", 0}}}};
    post = {{"type", "TemplateProcessing"},
            {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {bos,
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              bos,
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{first, {{"id", first}, {"ids", {0}}, {"tokens", {first}}}}}}};
  }
  ojson tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", split_pattern_regex(options_.pattern)}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor", post},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}}};

  ojson config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                  {"model_max_length", 1 << 20},
                  {"chat_template", kChatMlTemplate}};
  if (!first.empty()) {
    config["bos_token"] = first;
    config["eos_token"] = first;
    config["pad_token"] = first;
  }
  for (const auto& [name, j] : {std::pair<const char*, const ojson*>{"tokenizer.json", &tok},
                                std::pair<const char*, const ojson*>{"tokenizer_config.json", &config}}) {
    fs::path path = fs::path(dir) / name;
    std::ofstream out(path, std::ios::binary);
    COENC_CHECK_CODE(out.good(), InvalidInput, "{}: cannot write the file", path.string());
    out << j->dump(1, ' ', false, nlohmann::json::error_handler_t::strict) << "\n";
    COENC_CHECK_CODE(out.good(), InvalidInput, "{}: write failed", path.string());
  }
}

}  // namespace coenc::tok
