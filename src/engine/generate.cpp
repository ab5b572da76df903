#include "coenc/generate.h"

#include <algorithm>
#include <chrono>

#include "coenc/error.h"

namespace coenc {

size_t incomplete_utf8_suffix(const std::string& s) {
  // Look back at most 3 bytes for a lead byte whose sequence is longer than what follows it.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

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

GenerationResult generate(Session& session, const std::vector<Segment>& prompt, const GenerationOptions& options,
                          const TokenCallback& on_token) {
  using clock = std::chrono::steady_clock;
  COENC_CHECK(options.max_new_tokens >= 0, "the number of tokens to generate must be >= 0, got {}", options.max_new_tokens);
  COENC_CHECK(options.stop_strings.empty() || options.detokenize, "stop strings need a tokenizer to detokenize");
  for (const auto& s : options.stop_strings) COENC_CHECK(!s.empty(), "stop strings must not be empty");

  GenerationResult result;
  Sampler sampler(options.sampling);
  auto t0 = clock::now();
  torch::Tensor logits = session.prefill(prompt);
  for (const auto& s : prompt) result.n_prompt += s.length();
  auto t1 = clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  size_t shown = 0;  // bytes of result.text already passed to on_token
  result.stop_reason = "length";
  for (int i = 0; i < options.max_new_tokens; ++i) {
    TokenId next = sampler.sample(logits, session.history());
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) {
      result.stop_reason = "stop_token";
      break;
    }
    result.ids.push_back(next);
    std::string delta;
    bool stop_string_hit = false;
    if (options.detokenize) {
      // Re-decoding the whole answer keeps tokenizers whose pieces depend on context (SentencePiece's leading
      // space) exact; answers are short enough that this costs nothing measurable.
      std::string text = options.detokenize(result.ids);
      size_t cut = std::string::npos;
      for (const auto& stop : options.stop_strings) cut = std::min(cut, text.find(stop));
      if (cut != std::string::npos) {
        text.resize(cut);
        stop_string_hit = true;
      }
      result.text = text;
      size_t visible = text.size();
      if (!stop_string_hit) {
        visible -= std::max(incomplete_utf8_suffix(text), stop_prefix_overlap(text, options.stop_strings));
      }
      if (visible > shown) {
        delta = text.substr(shown, visible - shown);
        shown = visible;
      }
    }
    if (stop_string_hit) {
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
  // Flush text held back for a stop string that never came (or an incomplete last character).
  if (on_token && result.text.size() > shown && result.stop_reason != "stop_string")
    on_token(result.ids.empty() ? -1 : result.ids.back(), result.text.substr(shown));
  result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return result;
}

}  // namespace coenc
