// Generation: prefill a prompt into a session, then sample token after token until a stop condition.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
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
  // Turns generated ids into their bytes before UTF-8 repair (Tokenizer::decode_bytes): generation holds back
  // a character split across tokens until it is complete, then repairs the text as Tokenizer::decode does.
  // Needed for stop strings and text output; when empty, generation works on ids alone.
  std::function<std::string(const TokenIds&)> detokenize;
};

struct GenerationResult {
  TokenIds ids;          // generated tokens (without the stop token)
  std::string text;  // their text (as Tokenizer::decode gives it), cut before a stop string (empty without
                     // detokenize); always the concatenation of the streamed text deltas
  std::string stop_reason;  // "stop_token", "stop_string", "length", "context" or "cancelled"
  int64_t n_prompt = 0;     // prompt positions processed
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called for each new token with the text it completes (never half a UTF-8 character; text that may be the
// start of a stop string is held back until it is known not to be). Return false to stop generating.
using TokenCallback = std::function<bool(TokenId token, const std::string& text_delta)>;

// The text of a growing answer, streamed safely: the one path that `coenc generate`, `coenc ask` and the
// server stream through. Fed the ids generated so far after each new one, update() returns the text that
// became final: never half a UTF-8 character (bytes a later token could complete are held back), never text
// that may still turn into a stop string, and nothing after a stop string. The deltas, then flush(), add up
// to text() exactly.
class TextStream {
 public:
  // `detokenize`: ids to bytes before UTF-8 repair (Tokenizer::decode_bytes). Stop strings must be non-empty.
  TextStream(std::function<std::string(const TokenIds&)> detokenize,
             std::vector<std::string> stop_strings = {});
  std::string update(const TokenIds& ids);
  // What is still held back once generation ends (an incomplete last character comes out as U+FFFD).
  std::string flush();
  bool stop_hit() const { return stop_hit_; }
  // The answer's text as Tokenizer::decode gives it, cut before the first stop string.
  const std::string& text() const { return text_; }

 private:
  std::function<std::string(const TokenIds&)> detokenize_;
  std::vector<std::string> stops_;
  std::string text_;
  size_t shown_ = 0;  // bytes of text_ already returned
  bool stop_hit_ = false;
};

// One answer being generated, token by token, whatever computes its logits: generate() drives it with a
// Session, the server's continuous batching with a SlotBatch. It samples, applies the stop tokens, stop
// strings and token limit, streams text deltas to `on_token` and assembles the result.
class Generation {
 public:
  explicit Generation(const GenerationOptions& options, TokenCallback on_token = nullptr);
  // Given the logits [vocab] of the last position and the sequence so far (its token ids, for repetition
  // penalties; its positions and the context it may fill), picks the next token. Returns it when generation
  // goes on (feed it, then call again with its logits); nullopt when the answer has ended (result() is
  // complete).
  std::optional<TokenId> next(const torch::Tensor& logits, const TokenIds& history, int64_t n_past,
                              int64_t n_ctx);
  bool done() const { return done_; }
  // The answer: final once next() has returned nullopt.
  GenerationResult& result() { return result_; }

 private:
  void finish(const char* reason);
  GenerationOptions options_;
  TokenCallback on_token_;
  Sampler sampler_;
  std::optional<TextStream> stream_;
  GenerationResult result_;
  std::chrono::steady_clock::time_point start_;
  bool done_ = false;
};

// Runs `prompt` through `session` and generates. Afterwards the session holds the prompt and every generated
// token but the last one (and not the stop token): to continue the conversation, start the next prompt with
// result.ids.back().
GenerationResult generate(Session& session, const std::vector<Segment>& prompt, const GenerationOptions& options,
                          const TokenCallback& on_token = nullptr);

}  // namespace coenc
