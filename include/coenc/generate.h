// Generation: prefill a prompt into a session, then sample token after token until a stop condition.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "coenc/sampler.h"
#include "coenc/session.h"

namespace coenc {

struct GenerationOptions {
  int max_new_tokens = 256;
  SamplingOptions sampling;
  std::vector<TokenId> stop_tokens;       // e.g. the model's eos ids; the stop token is not part of the output
  std::vector<std::string> stop_strings;  // output ends before the first occurrence of any of these
  // Turns generated ids into text (the tokenizer's decode). Needed for stop strings and text output; when
  // empty, generation works on ids alone.
  std::function<std::string(const TokenIds&)> detokenize;
};

struct GenerationResult {
  TokenIds ids;          // generated tokens (without the stop token)
  std::string text;      // their text, cut before a stop string (empty without detokenize)
  std::string stop_reason;  // "stop_token", "stop_string", "length", "context" or "cancelled"
  int64_t n_prompt = 0;     // prompt positions processed
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called for each new token with the text it completes (never half a UTF-8 character; text that may be the
// start of a stop string is held back until it is known not to be). Return false to stop generating.
using TokenCallback = std::function<bool(TokenId token, const std::string& text_delta)>;

// Runs `prompt` through `session` and generates. Afterwards the session holds the prompt and every generated
// token but the last one (and not the stop token): to continue the conversation, start the next prompt with
// result.ids.back().
GenerationResult generate(Session& session, const std::vector<Segment>& prompt, const GenerationOptions& options,
                          const TokenCallback& on_token = nullptr);

// Number of bytes at the end of `s` that form an incomplete UTF-8 sequence (0 if `s` ends cleanly).
size_t incomplete_utf8_suffix(const std::string& s);

}  // namespace coenc
