// OpenAI request parsing and response shapes for coenc serve (src/serve/api.h).
#include "serve/api.h"

#include <cmath>
#include <limits>

namespace coenc::serve {

namespace {

using nlohmann::json;

std::string describe(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// An integer field in [lo, hi] (a JSON number with no fraction).
int64_t integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json& v = body[name];
  const bool integral = v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                                   std::floor(v.get<double>()) == v.get<double>());
  if (!integral) bad_request(std::string("\"") + name + "\" must be an integer, got " + describe(v), "invalid_field");
  const double d = v.is_number_float() ? v.get<double>() : 0;
  if (v.is_number_float() && (d < static_cast<double>(lo) || d > static_cast<double>(hi)))
    bad_request(std::string("\"") + name + "\" must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got " + describe(v), "invalid_field");
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi) ? hi + 1
                    : v.is_number_float()                                                   ? static_cast<int64_t>(d)
                                                                                            : v.get<int64_t>();
  if (x < lo || x > hi)
    bad_request(std::string("\"") + name + "\" must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got " + describe(v), "invalid_field");
  return x;
}

double number_field(const json& body, const char* name, double lo, double hi) {
  const json& v = body[name];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi)
    bad_request(std::string("\"") + name + "\" must be a number in [" + std::to_string(lo).substr(0, 6) + ", " +
                    std::to_string(hi).substr(0, 6) + "], got " + describe(v), "invalid_field");
  return v.get<double>();
}

bool has(const json& body, const char* name) { return body.contains(name) && !body[name].is_null(); }

std::string string_field(const json& v, const std::string& where) {
  if (!v.is_string()) bad_request(where + " must be a string, got " + describe(v), "invalid_field");
  return v.get<std::string>();
}

// A message's content: a string, or an array of parts {"type": "text", "text"} / {"type": "document", "text" or
// "id"}. Documents are appended to `docs` and referred to by index.
std::vector<ConversationPart> content_parts(const json& content, const std::string& where,
                                            std::vector<DocumentRef>& docs) {
  std::vector<ConversationPart> parts;
  if (content.is_string()) {
    parts.push_back({content.get<std::string>(), -1});
    return parts;
  }
  if (!content.is_array())
    bad_request(where + ".content must be a string or an array of content parts, got " + describe(content),
                "invalid_field");
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string at = where + ".content[" + std::to_string(i) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad_request(at + " must be an object with a string \"type\"", "invalid_field");
    const std::string type = part["type"].get<std::string>();
    if (type == "text") {
      if (!part.contains("text")) bad_request(at + ": a text part needs \"text\"", "invalid_field");
      parts.push_back({string_field(part["text"], at + ".text"), -1});
    } else if (type == "document") {
      DocumentRef d;
      const bool text = part.contains("text"), id = part.contains("id");
      if (text == id) bad_request(at + ": a document part needs exactly one of \"text\" and \"id\"", "invalid_field");
      if (text) d.text = string_field(part["text"], at + ".text");
      else d.id = string_field(part["id"], at + ".id");
      if (text && d.text.empty()) bad_request(at + ".text: the document is empty", "invalid_field");
      docs.push_back(std::move(d));
      parts.push_back({"", static_cast<int64_t>(docs.size()) - 1});
    } else {
      bad_request(at + ": content parts of type \"" + type + "\" are not supported (\"text\" and \"document\" are)",
                  "unsupported_content");
    }
  }
  return parts;
}

PromptEmbeds parse_prompt_embeds(const json& e) {
  if (!e.is_object() || !e.contains("data") || !e.contains("shape"))
    bad_request("\"prompt_embeds\" must be an object {\"data\": base64, \"shape\": [n, d_model], \"dtype\": "
                "\"float32\" | \"bfloat16\"}", "invalid_field");
  PromptEmbeds p;
  const std::string dtype = e.contains("dtype") ? string_field(e["dtype"], "prompt_embeds.dtype") : "float32";
  if (dtype != "float32" && dtype != "bfloat16")
    bad_request("prompt_embeds.dtype must be \"float32\" or \"bfloat16\", got \"" + dtype + "\"", "invalid_field");
  p.bf16 = dtype == "bfloat16";
  const json& shape = e["shape"];
  if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() || !shape[1].is_number_integer() ||
      shape[0].get<int64_t>() < 1 || shape[1].get<int64_t>() < 1 || shape[0].get<int64_t>() > (1 << 20) ||
      shape[1].get<int64_t>() > (1 << 16))
    bad_request("prompt_embeds.shape must be [n, d_model] with 1 <= n <= 1048576 and 1 <= d_model <= 65536, got " +
                describe(shape), "invalid_field");
  p.rows = shape[0].get<int64_t>();
  p.cols = shape[1].get<int64_t>();
  const int64_t want = p.rows * p.cols * (p.bf16 ? 2 : 4);  // at most 2^38: no overflow
  const std::string data = string_field(e["data"], "prompt_embeds.data");
  if (static_cast<int64_t>(data.size()) != (want + 2) / 3 * 4)
    bad_request("prompt_embeds.data: " + std::to_string(data.size()) + " base64 characters, but shape " +
                describe(shape) + " of " + dtype + " needs " + std::to_string(want) + " bytes (" +
                std::to_string((want + 2) / 3 * 4) + " characters)", "invalid_field");
  p.bytes = decode_base64(data, "prompt_embeds.data");
  return p;
}

}  // namespace

std::string decode_base64(const std::string& text, const std::string& field) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0)
    bad_request(field + ": not base64 (the length is not a multiple of 4)", "invalid_field");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    int v[4];
    for (int k = 0; k < 4; ++k) {
      v[k] = k >= 4 - pad ? 0 : value(text[i + k]);
      if (v[k] < 0)
        bad_request(field + ": not base64 (character " + std::to_string(i + k) + ")", "invalid_field");
    }
    const uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out.push_back(static_cast<char>(n >> 16));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return out;
}

void bad_request(const std::string& message, const std::string& code) {
  throw HttpError(400, "invalid_request_error", code, message);
}

HttpError http_error(const Error& e) {
  switch (e.code()) {
    case ErrorCode::ExceedsContext:
      return HttpError(400, "invalid_request_error", "context_length_exceeded", e.what());
    case ErrorCode::NotFound:
      return HttpError(404, "invalid_request_error", "not_found", e.what());
    case ErrorCode::Internal:
      return HttpError(500, "server_error", "internal_error", e.what());
    case ErrorCode::Unsupported:
      return HttpError(400, "invalid_request_error", "unsupported", e.what());
    case ErrorCode::ModelMismatch:
      return HttpError(400, "invalid_request_error", "model_mismatch", e.what());
    case ErrorCode::InvalidInput:
      break;
  }
  return HttpError(400, "invalid_request_error", "invalid_request", e.what());
}

json error_body(const HttpError& e) {
  return {{"error", {{"message", e.what()}, {"type", e.type}, {"code", e.code}}}};
}

json parse_body(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    try {
      [[maybe_unused]] const json again = json::parse(body);  // throws, with the position of the error
    } catch (const json::exception& e) {
      bad_request(std::string("the request body is not valid JSON: ") + e.what(), "invalid_json");
    }
    bad_request("the request body is not valid JSON", "invalid_json");
  }
  if (!j.is_object()) bad_request("the request body must be a JSON object, got " + describe(j), "invalid_json");
  return j;
}

CompletionRequest parse_completion_request(const json& body, bool chat) {
  CompletionRequest r;
  r.chat = chat;
  if (chat) {
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
      bad_request("\"messages\" must be a non-empty array of {\"role\", \"content\"} objects", "invalid_field");
    const json& ms = body["messages"];
    for (size_t i = 0; i < ms.size(); ++i) {
      const std::string where = "messages[" + std::to_string(i) + "]";
      const json& m = ms[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        bad_request(where + " must be an object with a string \"role\"", "invalid_field");
      std::string role = m["role"].get<std::string>();
      if (role == "developer") role = "system";  // OpenAI's newer name for the system role
      if (role != "system" && role != "user" && role != "assistant")
        bad_request(where + ".role must be \"system\", \"user\" or \"assistant\", got \"" + role + "\"",
                    "invalid_field");
      ConversationMessage msg;
      msg.role = role;
      if (!m.contains("content") || m["content"].is_null()) {
        if (role != "assistant") bad_request(where + " has no \"content\"", "invalid_field");
      } else {
        msg.parts = content_parts(m["content"], where, r.documents);
      }
      r.messages.push_back(std::move(msg));
    }
  } else {
    r.has_prompt_embeds = has(body, "prompt_embeds");
    if (r.has_prompt_embeds) r.prompt_embeds = parse_prompt_embeds(body["prompt_embeds"]);
    if (!body.contains("prompt") && !r.has_prompt_embeds)
      bad_request("\"prompt\" is required (or \"prompt_embeds\")", "invalid_field");
    if (body.contains("prompt")) {
      const json& p = body["prompt"];
      if (p.is_array() && p.size() == 1 && p[0].is_string()) r.prompt = p[0].get<std::string>();
      else if (p.is_string()) r.prompt = p.get<std::string>();
      else bad_request("\"prompt\" must be a string (or an array of one string), got " + describe(p), "invalid_field");
    }
  }
  if (has(body, "max_completion_tokens"))
    r.max_tokens = static_cast<int>(integer_field(body, "max_completion_tokens", 0, 1 << 20));
  else if (has(body, "max_tokens"))
    r.max_tokens = static_cast<int>(integer_field(body, "max_tokens", 0, 1 << 20));
  if (has(body, "n") && integer_field(body, "n", 1, 1 << 20) != 1)
    bad_request("\"n\": only one choice per request is supported (n = 1)", "unsupported");
  if (has(body, "logprobs") && !(body["logprobs"].is_boolean() && !body["logprobs"].get<bool>()) &&
      !(body["logprobs"].is_number_integer() && body["logprobs"].get<int64_t>() == 0))
    bad_request("\"logprobs\" is not supported", "unsupported");
  if (has(body, "temperature")) r.sampling.temperature = static_cast<float>(number_field(body, "temperature", 0, 100));
  if (has(body, "top_p")) r.sampling.top_p = static_cast<float>(number_field(body, "top_p", 0, 1));
  if (has(body, "min_p")) r.sampling.min_p = static_cast<float>(number_field(body, "min_p", 0, 1));
  if (has(body, "top_k")) r.sampling.top_k = static_cast<int>(integer_field(body, "top_k", -1, 1 << 24));
  if (has(body, "repeat_penalty"))
    r.sampling.repetition_penalty = static_cast<float>(number_field(body, "repeat_penalty", 0.01, 100));
  if (has(body, "seed"))
    r.sampling.seed = static_cast<uint64_t>(integer_field(body, "seed", std::numeric_limits<int64_t>::min(),
                                                          std::numeric_limits<int64_t>::max()));
  if (has(body, "stop")) {
    const json& s = body["stop"];
    if (s.is_string()) r.stop.push_back(s.get<std::string>());
    else if (s.is_array() && s.size() <= 16)
      for (size_t i = 0; i < s.size(); ++i) r.stop.push_back(string_field(s[i], "stop[" + std::to_string(i) + "]"));
    else bad_request("\"stop\" must be a string or an array of at most 16 strings", "invalid_field");
    for (const auto& x : r.stop)
      if (x.empty()) bad_request("\"stop\": stop strings must not be empty", "invalid_field");
  }
  if (has(body, "stream")) {
    if (!body["stream"].is_boolean()) bad_request("\"stream\" must be true or false", "invalid_field");
    r.stream = body["stream"].get<bool>();
  }
  if (has(body, "stream_options")) {
    const json& o = body["stream_options"];
    if (!o.is_object()) bad_request("\"stream_options\" must be an object", "invalid_field");
    if (o.contains("include_usage") && !o["include_usage"].is_null()) {
      if (!o["include_usage"].is_boolean())
        bad_request("\"stream_options.include_usage\" must be true or false", "invalid_field");
      r.include_usage = o["include_usage"].get<bool>();
    }
  }
  // vLLM's and llama-server's extension: keyword arguments of the chat template, e.g. {"enable_thinking": false}.
  if (chat && has(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object())
      bad_request("\"chat_template_kwargs\" must be an object, e.g. {\"enable_thinking\": false}", "invalid_field");
    r.chat_template_kwargs = nlohmann::ordered_json::parse(body["chat_template_kwargs"].dump());
  }
  return r;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details",
           {{"compressed_vectors", u.compressed_vectors}, {"document_tokens", u.document_tokens}}}};
}

std::string finish_reason(const std::string& stop_reason) {
  return stop_reason == "stop_token" || stop_reason == "stop_string" ? "stop" : "length";
}

json completion_response(bool chat, const std::string& id, int64_t created, const std::string& model,
                         const std::string& text, const std::string& finish, const Usage& usage) {
  json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
  if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  return {{"id", id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})},
          {"usage", usage_json(usage)}};
}

json completion_chunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                      const std::string& delta, const std::string& finish, bool first) {
  json choice = {{"index", 0}, {"finish_reason", finish.empty() ? json(nullptr) : json(finish)}, {"logprobs", nullptr}};
  if (chat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!delta.empty() || finish.empty()) d["content"] = delta;
    choice["delta"] = d;
  } else {
    choice["text"] = delta;
  }
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

}  // namespace coenc::serve
