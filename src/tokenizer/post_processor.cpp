#include "tokenizer/post_processor.h"

#include "coenc/error.h"

namespace coenc::tok {

PostProcessor PostProcessor::from_json(
    const nlohmann::json& j, const JsonPath& where,
    const std::function<std::optional<TokenId>(const std::string&)>& lookup, TokenId vocab_size) {
  PostProcessor out;
  if (!j.is_null()) parse_into(j, where, lookup, vocab_size, out);
  return out;
}

void PostProcessor::parse_into(const nlohmann::json& j, const JsonPath& where,
                               const std::function<std::optional<TokenId>(const std::string&)>& lookup,
                               TokenId vocab_size, PostProcessor& out) {
  COENC_CHECK(j.is_object(), "{} must be an object, got {}", where.str(), json_type_name(j));
  std::string type = json_string(j, "type", where);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    const auto& list = json_array(j, "processors", where);
    for (size_t k = 0; k < list.size(); ++k) parse_into(list[k], (where / "processors").at(k), lookup, vocab_size, out);
    return;
  }
  COENC_CHECK_CODE(type == "TemplateProcessing", Unsupported,
                   "{} \"{}\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence, null)",
                   (where / "type").str(), type);
  const auto& single = json_array(j, "single", where);
  auto specials = j.find("special_tokens");
  bool seen_sequence = false;
  for (size_t k = 0; k < single.size(); ++k) {
    JsonPath at = (where / "single").at(k);
    const auto& piece = single[k];
    COENC_CHECK(piece.is_object() && piece.size() == 1,
                "{} must be {\"SpecialToken\": ...} or {\"Sequence\": ...}, got {}", at.str(), piece.dump());
    if (piece.contains("Sequence")) {
      COENC_CHECK_CODE(!seen_sequence, Unsupported, "{}: a template with the sequence twice is not supported",
                       at.str());
      seen_sequence = true;
      continue;
    }
    const auto& tok = json_object(piece, "SpecialToken", at);
    std::string name = json_string(tok, "id", at / "SpecialToken");
    TokenIds ids;
    auto entry = specials != j.end() && specials->is_object() ? specials->find(name) : j.end();
    if (specials != j.end() && specials->is_object() && entry != specials->end()) {
      JsonPath sp = where / "special_tokens" / name;
      const auto& list = json_array(*entry, "ids", sp);
      for (size_t i = 0; i < list.size(); ++i) {
        const TokenId id = json_token_id(list[i], (sp / "ids").at(i));
        COENC_CHECK(id < vocab_size, "{} is {}, outside the vocabulary ({} tokens)", (sp / "ids").at(i).str(), id,
                    vocab_size);
        ids.push_back(id);
      }
    } else {
      auto id = lookup(name);
      COENC_CHECK(id.has_value(),
                  "{}: special token \"{}\" is neither in special_tokens nor in the vocabulary", at.str(),
                  name);
      ids.push_back(*id);
    }
    TokenIds& dst = seen_sequence ? out.suffix_ : out.prefix_;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  COENC_CHECK(seen_sequence, "{} has no {\"Sequence\": ...} entry for the text", (where / "single").str());
}

void PostProcessor::apply(TokenIds& ids) const {
  if (!prefix_.empty()) ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
}

}  // namespace coenc::tok
