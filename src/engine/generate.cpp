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

GenerationResult generate(Session& session, const std::vector<Segment>& prompt, const GenerationOptions& options,
                          const TokenCallback& on_token) {
  using clock = std::chrono::steady_clock;
  COENC_CHECK(options.max_new_tokens >= 0, "the number of tokens to generate must be >= 0, got {}", options.max_new_tokens);
  COENC_CHECK(options.stop_strings.empty() || options.detokenize,
              "stop strings need a tokenizer to detokenize");

  GenerationResult result;
  Sampler sampler(options.sampling);
  auto t0 = clock::now();
  torch::Tensor logits = session.prefill(prompt);
  for (const auto& s : prompt) result.n_prompt += s.length();
  auto t1 = clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  result.stop_reason = "length";
  std::optional<TextStream> stream;
  if (options.detokenize) stream.emplace(options.detokenize, options.stop_strings);
  for (int i = 0; i < options.max_new_tokens; ++i) {
    TokenId next = sampler.sample(logits, session.history());
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) {
      result.stop_reason = "stop_token";
      break;
    }
    result.ids.push_back(next);
    const std::string delta = stream ? stream->update(result.ids) : std::string();
    if (stream && stream->stop_hit()) {
      if (on_token && !delta.empty()) on_token(next, delta);
      result.stop_reason = "stop_string";
      break;
    }
    if (on_token && !on_token(next, delta)) {
      result.stop_reason = "cancelled";
      break;
    }
    if (session.n_past() >= session.n_ctx()) {
      result.stop_reason = "context";
      break;
    }
    if (i + 1 < options.max_new_tokens) logits = session.decode(next);
  }
  if (stream) {
    // Text held back for a stop string that never came, or an incomplete last character (repaired to U+FFFD).
    const std::string rest = stream->flush();
    if (on_token && !rest.empty()) on_token(result.ids.empty() ? -1 : result.ids.back(), rest);
    result.text = stream->text();
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return result;
}

}  // namespace coenc
