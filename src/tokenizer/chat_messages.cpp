// Conversations as JSON (coenc generate --messages): the list of {"role", "content"} objects of an OpenAI
// request.
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/tokenizer.h"

namespace coenc {

std::vector<ChatMessage> parse_chat_messages(std::string_view json_text, const std::string& where) {
  nlohmann::json j = parse_json(json_text, where);
  if (j.is_object() && j.contains("messages"))
    j = nlohmann::json(j["messages"]);  // an OpenAI request body works too
  COENC_CHECK(j.is_array() && !j.empty(),
              "{}: expected a non-empty array of {{\"role\", \"content\"}} objects", where);
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    COENC_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") &&
                    m["content"].is_string(),
                "{}: message {} must be an object with string fields \"role\" and \"content\"", where, i);
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

}  // namespace coenc
