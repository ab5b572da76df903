#include "tokenizer/decoder.h"

#include "coenc/error.h"
#include "tokenizer/byte_level.h"

namespace coenc::tok {

namespace {

// "<0xAB>" -> 0xAB; -1 for anything else.
int byte_token_value(const std::string& t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

}  // namespace

std::string byte_level_token_bytes(const std::string& token) {
  std::string bytes;
  return byte_level_to_bytes(token, bytes) ? bytes : token;
}

Decoder Decoder::from_json(const nlohmann::json& j, const JsonPath& where) {
  Decoder out;
  if (!j.is_null()) parse_into(j, where, out);
  return out;
}

void Decoder::parse_into(const nlohmann::json& j, const JsonPath& where, Decoder& out) {
  COENC_CHECK(j.is_object(), "{} must be an object, got {}", where.str(), json_type_name(j));
  std::string type = json_string(j, "type", where);
  Step step{Kind::Fuse, "", "", 0, 0};
  if (type == "Sequence") {
    const auto& list = json_array(j, "decoders", where);
    for (size_t k = 0; k < list.size(); ++k) parse_into(list[k], (where / "decoders").at(k), out);
    return;
  } else if (type == "ByteLevel") {
    step.kind = Kind::ByteLevel;
  } else if (type == "ByteFallback") {
    step.kind = Kind::ByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::Fuse;
  } else if (type == "Replace") {
    step.kind = Kind::Replace;
    const auto& pat = json_object(j, "pattern", where);
    auto s = pat.find("String");
    COENC_CHECK_CODE(s != pat.end() && s->is_string(), Unsupported,
                     "{}: only {\"String\": ...} patterns are supported", (where / "pattern").str());
    step.pattern = s->get<std::string>();
    step.content = json_string(j, "content", where);
  } else if (type == "Strip") {
    step.kind = Kind::Strip;
    step.content = json_string(j, "content", where);
    step.start = json_index(j.value("start", nlohmann::json(0)), where / "start");
    step.stop = json_index(j.value("stop", nlohmann::json(0)), where / "stop");
  } else {
    fail(ErrorCode::Unsupported,
         "{} \"{}\" is not supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Sequence, "
         "null)",
         (where / "type").str(), type);
  }
  out.steps_.push_back(step);
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  if (steps_.empty()) {
    // Without a decoder Hugging Face joins the entries with spaces.
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + tokens[k];
    return out;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::ByteLevel: {
        std::string joined;
        for (const auto& t : tokens) joined += byte_level_token_bytes(t);
        tokens.assign(1, std::move(joined));
        break;
      }
      case Kind::Replace:
        for (auto& t : tokens) replace_all(t, step.pattern, step.content);
        break;
      case Kind::ByteFallback:
        for (auto& t : tokens) {
          int v = byte_token_value(t);
          if (v >= 0) t.assign(1, static_cast<char>(v));
        }
        break;
      case Kind::Fuse: {
        std::string joined;
        for (const auto& t : tokens) joined += t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case Kind::Strip:
        for (auto& t : tokens) {
          for (int k = 0;
               k < step.start && t.compare(0, step.content.size(), step.content) == 0 && !t.empty(); ++k) {
            t.erase(0, step.content.size());
          }
          for (int k = 0; k < step.stop && t.size() >= step.content.size() &&
                          t.compare(t.size() - step.content.size(), step.content.size(), step.content) == 0 &&
                          !t.empty();
               ++k) {
            t.erase(t.size() - step.content.size());
          }
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace coenc::tok
