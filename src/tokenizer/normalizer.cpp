#include "tokenizer/normalizer.h"

#include <cstdlib>

#include <utf8proc.h>

#include "coenc/error.h"

namespace coenc::tok {

std::string nfc(std::string_view text) {
  // Code points below U+0300 are NFC-stable and never combine with what precedes them; their UTF-8 lead bytes
  // are all below 0xCC, so text without such a byte is already NFC.
  bool stable = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0xCC) {
      stable = false;
      break;
    }
  }
  if (stable) return std::string(text);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    static_cast<utf8proc_ssize_t>(text.size()), &out,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  COENC_CHECK_CODE(n >= 0, Internal, "NFC normalisation failed: {}", utf8proc_errmsg(n));
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

Normalizer Normalizer::from_json(const nlohmann::json& j, const JsonPath& where) {
  Normalizer out;
  if (!j.is_null()) parse_into(j, where, out);
  return out;
}

void Normalizer::parse_into(const nlohmann::json& j, const JsonPath& where, Normalizer& out) {
  COENC_CHECK(j.is_object(), "{} must be an object, got {}", where.str(), json_type_name(j));
  std::string type = json_string(j, "type", where);
  if (type == "NFC") {
    out.steps_.push_back({Kind::Nfc, "", ""});
  } else if (type == "Prepend") {
    out.steps_.push_back({Kind::Prepend, "", json_string(j, "prepend", where)});
  } else if (type == "Replace") {
    const auto& pat = json_object(j, "pattern", where);
    auto str = pat.find("String");
    COENC_CHECK_CODE(str != pat.end() && str->is_string(), Unsupported,
                     "{}: only {\"String\": ...} patterns are supported", (where / "pattern").str());
    COENC_CHECK(!str->get<std::string>().empty(), "{} must not be empty", (where / "pattern.String").str());
    out.steps_.push_back({Kind::Replace, str->get<std::string>(), json_string(j, "content", where)});
  } else if (type == "Sequence") {
    const auto& list = json_array(j, "normalizers", where);
    for (size_t k = 0; k < list.size(); ++k) parse_into(list[k], (where / "normalizers").at(k), out);
  } else {
    fail(ErrorCode::Unsupported,
         "{} \"{}\" is not supported (supported: NFC, Prepend, Replace, Sequence, null)",
         (where / "type").str(), type);
  }
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::Nfc:
        s = nfc(s);
        break;
      case Kind::Prepend:
        if (!s.empty()) s.insert(0, step.content);  // Hugging Face leaves empty text alone
        break;
      case Kind::Replace: {
        std::string out;
        size_t from = 0;
        for (size_t pos = s.find(step.pattern); pos != std::string::npos; pos = s.find(step.pattern, from)) {
          out.append(s, from, pos - from);
          out += step.content;
          from = pos + step.pattern.size();
        }
        out.append(s, from, std::string::npos);
        s.swap(out);
        break;
      }
    }
  }
  return s;
}

}  // namespace coenc::tok
