#include "coenc/generate.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "coenc/error.h"
#include "tokenizer/utf8.h"

namespace coenc {

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much text might
// still become a stop string and must not be shown yet.
size_t stop_prefix_overlap(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& stop : stops)
    for (size_t len = std::min(stop.size() - 1, text.size()); len > best; --len)
      if (text.compare(text.size() - len, len, stop, 0, len) == 0) {
        best = len;
        break;
      }
  return best;
}

}  // namespace

TextStream::TextStream(std::function<std::string(const TokenIds&)> detokenize,
                       std::vector<std::string> stop_strings)
    : detokenize_(std::move(detokenize)), stops_(std::move(stop_strings)) {
  for (const auto& s : stops_) COENC_CHECK(!s.empty(), "stop strings must not be empty");
}

std::string TextStream::update(const TokenIds& ids) {
  if (stop_hit_) return "";
  // The answer's bytes are decoded again as a whole (tokenizers whose pieces depend on context, such as
  // SentencePiece's leading space, stay exact; answers are short enough that this costs nothing measurable).
  // Bytes that one more token could still complete into a character are held back; the rest is repaired
  // exactly as Tokenizer::decode repairs it. Repair decides each character from its own bytes, so the
  // repaired prefix never changes as tokens are added, and the deltas add up to the final text.
  const std::string bytes = detokenize_(ids);
  std::string stable =
      tok::sanitize_utf8(std::string_view(bytes).substr(0, bytes.size() - tok::incomplete_utf8_tail(bytes)));
  size_t cut = std::string::npos;
  for (const auto& stop : stops_) cut = std::min(cut, stable.find(stop));
  if (cut != std::string::npos) {
    stable.resize(cut);
    stop_hit_ = true;
    text_ = stable;
  } else {
    text_ = tok::sanitize_utf8(bytes);
  }
  const size_t visible = stop_hit_ ? stable.size() : stable.size() - stop_prefix_overlap(stable, stops_);
  if (visible <= shown_) return "";
  std::string delta = stable.substr(shown_, visible - shown_);
  shown_ = visible;
  return delta;
}

std::string TextStream::flush() {
  if (stop_hit_ || text_.size() <= shown_) return "";
  std::string rest = text_.substr(shown_);
  shown_ = text_.size();
  return rest;
}

Generation::Generation(const GenerationOptions& options, TokenCallback on_token)
    : options_(options),
      on_token_(std::move(on_token)),
      sampler_(options.sampling),
      start_(std::chrono::steady_clock::now()) {
  COENC_CHECK(options.max_new_tokens >= 0, "the number of tokens to generate must be >= 0, got {}",
              options.max_new_tokens);
  COENC_CHECK(options.stop_strings.empty() || options.detokenize,
              "stop strings need a tokenizer to detokenize");
  if (options_.detokenize) stream_.emplace(options_.detokenize, options_.stop_strings);
}

void Generation::finish(const char* reason) {
  done_ = true;
  result_.stop_reason = reason;
  if (stream_) {
    // Text held back for a stop string that never came, or an incomplete last character (repaired to U+FFFD).
    const std::string rest = stream_->flush();
    if (on_token_ && !rest.empty()) on_token_(result_.ids.empty() ? -1 : result_.ids.back(), rest);
    result_.text = stream_->text();
  }
  result_.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::optional<TokenId> Generation::next(const torch::Tensor& logits, const TokenIds& history, int64_t n_past,
                                        int64_t n_ctx) {
  if (done_) return std::nullopt;
  if (static_cast<int64_t>(result_.ids.size()) >= options_.max_new_tokens) {
    finish("length");
    return std::nullopt;
  }
  const TokenId next = sampler_.sample(logits, history);
  if (std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), next) !=
      options_.stop_tokens.end()) {
    finish("stop_token");
    return std::nullopt;
  }
  result_.ids.push_back(next);
  const std::string delta = stream_ ? stream_->update(result_.ids) : std::string();
  if (stream_ && stream_->stop_hit()) {
    if (on_token_ && !delta.empty()) on_token_(next, delta);
    finish("stop_string");
    return std::nullopt;
  }
  if (on_token_ && !on_token_(next, delta)) {
    finish("cancelled");
    return std::nullopt;
  }
  if (n_past >= n_ctx) {
    finish("context");
    return std::nullopt;
  }
  if (static_cast<int64_t>(result_.ids.size()) >= options_.max_new_tokens) {
    finish("length");
    return std::nullopt;
  }
  return next;
}

GenerationResult generate(Session& session, const std::vector<Segment>& prompt,
                          const GenerationOptions& options, const TokenCallback& on_token) {
  using clock = std::chrono::steady_clock;
  Generation generation(options, on_token);
  auto t0 = clock::now();
  torch::Tensor logits = session.prefill(prompt);
  auto t1 = clock::now();
  while (auto token = generation.next(logits, session.history(), session.n_past(), session.n_ctx()))
    logits = session.decode(*token);
  GenerationResult result = std::move(generation.result());
  for (const auto& s : prompt) result.n_prompt += s.length();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return result;
}

}  // namespace coenc
