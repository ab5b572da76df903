// Chat formats: recognised from the Jinja template text, rendered natively.
#include <algorithm>
#include <cctype>

#include "coenc/error.h"
#include "coenc/tokenizer.h"

namespace coenc {

namespace {

bool contains(std::string_view s, std::string_view needle) {
  return s.find(needle) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Llama-3 trims message content in its template (`message['content'] | trim`).
std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

void check_role(const ChatMessage& m, size_t index) {
  COENC_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant",
              "chat message {}: unknown role \"{}\" (expected system, user or assistant)", index, m.role);
}

// The [INST] and Gemma formats take an optional leading system message and then strictly alternating
// user/assistant turns starting with the user.
void check_alternation(const std::vector<ChatMessage>& messages, size_t first, ChatFormat format) {
  for (size_t k = first; k < messages.size(); ++k) {
    const char* expected = (k - first) % 2 == 0 ? "user" : "assistant";
    COENC_CHECK(messages[k].role == expected,
                "chat message {}: the {} format needs alternating user/assistant turns starting with user "
                "(and at most one leading system message), got role \"{}\"",
                k, chat_format_name(format), messages[k].role);
  }
}

std::string render_inst(const std::vector<ChatMessage>& messages, ChatFormat format,
                        const ChatRenderOptions& o) {
  size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
  check_alternation(messages, first, format);
  std::string system = first ? messages[0].content : "";
  std::string out;
  for (size_t k = first; k < messages.size(); ++k) {
    const ChatMessage& m = messages[k];
    if (m.role == "user") {
      std::string content = m.content;
      if (k == first && !system.empty()) {
        content = format == ChatFormat::Llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content
                                               : system + "\n\n" + content;
      }
      out += o.bos_token + "[INST] " + content + " [/INST]";
    } else {
      out += (format == ChatFormat::Llama2 ? " " + trim(m.content) + " " : m.content) + o.eos_token;
    }
  }
  return out;
}

}  // namespace

std::optional<ChatFormat> detect_chat_format(std::string_view t) {
  if (contains(t, "<|im_start|>")) return ChatFormat::ChatML;
  if (contains(t, "<|start_header_id|>")) return ChatFormat::Llama3;
  if (contains(t, "<start_of_turn>")) return ChatFormat::Gemma;
  if (contains(t, "[INST]")) return contains(t, "<<SYS>>") ? ChatFormat::Llama2 : ChatFormat::Mistral;
  return std::nullopt;
}

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::ChatML:
      return "chatml";
    case ChatFormat::Llama3:
      return "llama3";
    case ChatFormat::Llama2:
      return "llama2";
    case ChatFormat::Mistral:
      return "mistral";
    case ChatFormat::Gemma:
      return "gemma";
  }
  return "chatml";
}

ChatFormat parse_chat_format(std::string_view name) {
  std::string n = lower(name);
  for (ChatFormat f :
       {ChatFormat::ChatML, ChatFormat::Llama3, ChatFormat::Llama2, ChatFormat::Mistral, ChatFormat::Gemma}) {
    if (n == chat_format_name(f)) return f;
  }
  fail(ErrorCode::InvalidInput, "unknown chat format \"{}\" (known: chatml, llama3, llama2, mistral, gemma)",
       name);
}

ChatFormat resolve_chat_format(const Tokenizer& tokenizer, std::string_view explicit_name) {
  if (!explicit_name.empty()) return parse_chat_format(explicit_name);
  COENC_CHECK_CODE(!tokenizer.chat_template().empty(), Unsupported,
                   "the tokenizer has no chat_template in tokenizer_config.json; name the format explicitly "
                   "(chatml, llama3, llama2, mistral or gemma)");
  auto format = detect_chat_format(tokenizer.chat_template());
  COENC_CHECK_CODE(
      format.has_value(), Unsupported,
      "tokenizer_config.json: field chat_template is not one of the known families (ChatML, Llama-3, "
      "Llama-2, Mistral, Gemma); name the format explicitly (chatml, llama3, llama2, mistral or gemma)");
  return *format;
}

std::string render_chat(const std::vector<ChatMessage>& messages, ChatFormat format,
                        const ChatRenderOptions& o) {
  for (size_t k = 0; k < messages.size(); ++k) check_role(messages[k], k);
  std::string out;
  switch (format) {
    case ChatFormat::ChatML:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatFormat::Llama3:
      out = o.bos_token;
      for (const auto& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      }
      if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFormat::Llama2:
    case ChatFormat::Mistral:
      if (format == ChatFormat::Mistral) out = o.bos_token;
      return format == ChatFormat::Mistral
                 ? out + render_inst(messages, format, {o.add_generation_prompt, "", o.eos_token})
                 : render_inst(messages, format, o);
    case ChatFormat::Gemma: {
      size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
      check_alternation(messages, first, format);
      out = o.bos_token;
      for (size_t k = first; k < messages.size(); ++k) {
        const auto& m = messages[k];
        std::string content = trim(m.content);
        if (k == first && first == 1) content = trim(messages[0].content) + "\n\n" + content;
        out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : "user") + "\n" + content +
               "<end_of_turn>\n";
      }
      if (o.add_generation_prompt) out += "<start_of_turn>model\n";
      return out;
    }
  }
  return out;
}

TokenIds encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages, ChatFormat format,
                     bool add_generation_prompt) {
  ChatRenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  if (auto bos = tokenizer.bos_id()) o.bos_token = tokenizer.id_to_piece(*bos);
  if (auto eos = tokenizer.eos_id()) o.eos_token = tokenizer.id_to_piece(*eos);
  EncodeOptions e;
  e.add_special = false;
  e.parse_special = true;
  return tokenizer.encode(render_chat(messages, format, o), e);
}

TokenIds chat_stop_ids(const Tokenizer& tokenizer, ChatFormat format) {
  TokenIds ids;
  if (auto eos = tokenizer.eos_id()) ids.push_back(*eos);
  const char* turn_end = nullptr;
  switch (format) {
    case ChatFormat::ChatML: turn_end = "<|im_end|>"; break;
    case ChatFormat::Llama3: turn_end = "<|eot_id|>"; break;
    case ChatFormat::Gemma: turn_end = "<end_of_turn>"; break;
    case ChatFormat::Llama2:
    case ChatFormat::Mistral: break;  // turns end with EOS
  }
  if (turn_end)
    if (auto id = tokenizer.token_to_id(turn_end))
      if (std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  return ids;
}

}  // namespace coenc
