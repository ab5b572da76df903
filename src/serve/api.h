// The OpenAI-compatible request and response shapes of coenc serve, apart from HTTP: parsing and validating a
// request body into a CompletionRequest (every mistake an HttpError naming the field), and building the response
// objects and streamed chunks.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/sampler.h"

namespace coenc::serve {

// An error answered with the OpenAI envelope {"error": {"message", "type", "code"}} and `status`.
struct HttpError : std::runtime_error {
  HttpError(int status, std::string type, std::string code, const std::string& message)
      : std::runtime_error(message), status(status), type(std::move(type)), code(std::move(code)) {}
  int status;
  std::string type, code;
};

// 400 invalid_request_error with `code` (e.g. "invalid_field").
[[noreturn]] void bad_request(const std::string& message, const std::string& code = "invalid_request");

// The HTTP error for a coenc::Error raised while serving a request: bad input 400, exceeds the context 400
// (code context_length_exceeded), not found 404, unsupported 400, model mismatch 400, internal 500.
HttpError http_error(const Error& e);

nlohmann::json error_body(const HttpError& e);

// The body as JSON (400 naming the parse error otherwise); it must be an object.
nlohmann::json parse_body(const std::string& body);

// A document a request names: text to compress, or the id /v1/compress gave.
struct DocumentRef {
  std::string text;
  std::string id;
};

// Precomputed decoder-input rows of a /v1/completions request ("prompt_embeds", as in vLLM's API but never a
// pickle): {"data": base64 of a little-endian row-major array, "shape": [n, d_model], "dtype": "float32" |
// "bfloat16"}. Dense and 2-D only; the decoded size is checked against the shape before anything is allocated,
// and the server checks d_model and the window before the rows reach the decoder.
struct PromptEmbeds {
  int64_t rows = 0, cols = 0;
  bool bf16 = false;
  std::string bytes;  // rows * cols * (2 or 4) bytes
};

// Strict base64 (RFC 4648, with padding; no whitespace): the bytes, or a 400 naming `field`.
std::string decode_base64(const std::string& text, const std::string& field);

struct CompletionRequest {
  bool chat = false;
  std::vector<ConversationMessage> messages;  // chat: parts refer to `documents` by index
  std::vector<DocumentRef> documents;         // in order of first appearance
  std::string prompt;                         // completions
  bool has_prompt_embeds = false;             // completions: these rows come first, then the prompt's tokens
  PromptEmbeds prompt_embeds;
  int max_tokens = -1;                        // -1: not given
  SamplingOptions sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  nlohmann::ordered_json chat_template_kwargs;  // chat: the template's keyword arguments (null: none)
};

// /v1/chat/completions (chat) or /v1/completions. Unknown fields are ignored, as OpenAI's clients send many;
// known ones are checked: type, range, n == 1, no logprobs.
CompletionRequest parse_completion_request(const nlohmann::json& body, bool chat);

// Usage as the decoder saw the prompt: prompt_tokens are decoder positions, of which `compressed_vectors` came
// from compressed documents that held `document_tokens` tokens.
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, compressed_vectors = 0, document_tokens = 0;
};
nlohmann::json usage_json(const Usage& u);

// "stop" for a stop token or string, "length" otherwise (max_tokens, the context's end, the request's time).
std::string finish_reason(const std::string& stop_reason);

// A chat.completion / text_completion object, and one streamed chunk of either.
nlohmann::json completion_response(bool chat, const std::string& id, int64_t created, const std::string& model,
                                   const std::string& text, const std::string& finish, const Usage& usage);
nlohmann::json completion_chunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                                const std::string& delta, const std::string& finish, bool first);

}  // namespace coenc::serve
