// Chat templates: the tokenizer's Jinja chat_template rendered as transformers renders it
// (tokenizer/jinja.h), or one of the built-in families rendered natively.
#include <algorithm>
#include <cctype>

#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "tokenizer/jinja.h"

namespace coenc {

namespace {

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

std::string render_format(const std::vector<ChatMessage>& messages, ChatFormat format,
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
      if (format == ChatFormat::Mistral) {  // one BOS at the start, none before each [INST]
        ChatRenderOptions inner = o;
        inner.bos_token.clear();
        return o.bos_token + render_inst(messages, format, inner);
      }
      return render_inst(messages, format, o);
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

}  // namespace

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

ChatTemplate::ChatTemplate(ChatFormat format) : format_(format) {}

ChatTemplate ChatTemplate::jinja(std::string_view source, std::string where) {
  ChatTemplate t;
  t.jinja_ = std::make_shared<const jinja::Template>(source, std::move(where));
  return t;
}

std::string ChatTemplate::name() const {
  return format_ ? chat_format_name(*format_) : jinja_->name();
}

ChatTemplate resolve_chat_template(const Tokenizer& tokenizer, std::string_view format_name) {
  if (!format_name.empty()) return parse_chat_format(format_name);
  COENC_CHECK_CODE(!tokenizer.chat_template().empty(), Unsupported,
                   "the tokenizer has no chat_template in tokenizer_config.json; name a chat format "
                   "(chatml, llama3, llama2, mistral or gemma)");
  return ChatTemplate::jinja(tokenizer.chat_template(), "tokenizer_config.json: chat_template");
}

namespace {

// The variables apply_chat_template gives a template: the messages, add_generation_prompt, the special
// tokens, tools and documents (None unless given) and its keyword arguments (enable_thinking).
jinja::Object template_variables(const std::vector<ChatMessage>& messages, const ChatRenderOptions& o) {
  jinja::Array list;
  for (const auto& m : messages) list.emplace_back(jinja::Object{{"role", m.role}, {"content", m.content}});
  jinja::Object vars = {{"messages", jinja::Value(std::move(list))},
                        {"add_generation_prompt", o.add_generation_prompt},
                        {"tools", nullptr},
                        {"documents", nullptr}};
  if (!o.bos_token.empty()) vars.emplace_back("bos_token", o.bos_token);
  if (!o.eos_token.empty()) vars.emplace_back("eos_token", o.eos_token);
  if (o.enable_thinking) vars.emplace_back("enable_thinking", *o.enable_thinking);
  if (!o.template_kwargs.is_null()) {
    COENC_CHECK(o.template_kwargs.is_object(), "chat template kwargs must be a JSON object, got {}",
                o.template_kwargs.dump());
    for (const auto& item : o.template_kwargs.items()) {
      const std::string key = item.key();  // (a named copy: clang 14 cannot capture a structured binding)
      COENC_CHECK(key != "messages" && key != "add_generation_prompt" && key != "bos_token" && key != "eos_token",
                  "chat template kwargs cannot set \"{}\": the renderer sets it", key);
      auto same = std::find_if(vars.begin(), vars.end(), [&](const auto& v) { return v.first == key; });
      if (same != vars.end())
        same->second = jinja::from_json(item.value());  // e.g. "tools", or an enable_thinking given twice
      else
        vars.emplace_back(key, jinja::from_json(item.value()));
    }
  }
  return vars;
}

}  // namespace

std::string render_chat(const std::vector<ChatMessage>& messages, const ChatTemplate& chat,
                        const ChatRenderOptions& options) {
  if (chat.format_) return render_format(messages, *chat.format_, options);
  jinja::RenderOptions ro;
  ro.strftime_now = options.strftime_now;
  return chat.jinja_->render(template_variables(messages, options), ro);
}

TokenIds encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                     const ChatTemplate& chat, ChatRenderOptions options) {
  if (options.bos_token.empty())
    if (auto bos = tokenizer.bos_id()) options.bos_token = tokenizer.id_to_piece(*bos);
  if (options.eos_token.empty())
    if (auto eos = tokenizer.eos_id()) options.eos_token = tokenizer.id_to_piece(*eos);
  EncodeOptions e;
  e.add_special = false;
  e.parse_special = true;
  return tokenizer.encode(render_chat(messages, chat, options), e);
}

namespace {

// The special token a Jinja template writes right after an assistant message: found by rendering a probe turn
// and encoding what follows its text. nullopt when the template refuses the probe or writes no special token.
std::optional<TokenId> turn_end_of_template(const Tokenizer& tokenizer, const ChatTemplate& chat) {
  static const char* const kProbe = "coenc probe answer";
  ChatRenderOptions o;
  o.add_generation_prompt = false;
  if (auto bos = tokenizer.bos_id()) o.bos_token = tokenizer.id_to_piece(*bos);
  if (auto eos = tokenizer.eos_id()) o.eos_token = tokenizer.id_to_piece(*eos);
  o.strftime_now = [](const std::string&) { return std::string(); };
  std::string text;
  try {
    text = render_chat({{"user", "coenc probe question"}, {"assistant", kProbe}}, chat, o);
  } catch (const Error&) {
    return std::nullopt;
  }
  const size_t at = text.rfind(kProbe);
  if (at == std::string::npos) return std::nullopt;
  EncodeOptions e;
  e.parse_special = true;
  TokenIds after = tokenizer.encode(std::string_view(text).substr(at + std::string_view(kProbe).size()), e);
  if (after.empty() || !tokenizer.is_special(after[0])) return std::nullopt;
  return after[0];
}

}  // namespace

TokenIds chat_stop_ids(const Tokenizer& tokenizer, const ChatTemplate& chat) {
  TokenIds ids;
  if (auto eos = tokenizer.eos_id()) ids.push_back(*eos);
  std::optional<TokenId> turn_end;
  if (chat.format()) {
    const char* text = nullptr;
    switch (*chat.format()) {
      case ChatFormat::ChatML:
        text = "<|im_end|>";
        break;
      case ChatFormat::Llama3:
        text = "<|eot_id|>";
        break;
      case ChatFormat::Gemma:
        text = "<end_of_turn>";
        break;
      case ChatFormat::Llama2:
      case ChatFormat::Mistral:
        break;  // turns end with EOS
    }
    if (text) turn_end = tokenizer.token_to_id(text);
  } else {
    turn_end = turn_end_of_template(tokenizer, chat);
  }
  if (turn_end && std::find(ids.begin(), ids.end(), *turn_end) == ids.end()) ids.push_back(*turn_end);
  return ids;
}

}  // namespace coenc
