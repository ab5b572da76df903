#include "tokenizer/tokenizer_config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "tokenizer/json_fields.h"

namespace coenc::tok {

namespace {

std::optional<std::string> token_text(const nlohmann::json& j, const char* key, const JsonPath& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  COENC_CHECK(it->is_object(), "{} must be a string, an object with \"content\", or null, got {}",
              (where / key).str(), json_type_name(*it));
  return json_string(*it, "content", where / key);
}

std::optional<bool> flag(const nlohmann::json& j, const char* key, const JsonPath& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return json_bool(j, key, false, where);
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  COENC_CHECK_CODE(in.good(), NotFound, "{}: cannot open the file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = parse_json(ss.str(), path);
  JsonPath root{path, ""};
  COENC_CHECK(j.is_object(), "{}: expected a JSON object at the top level, got {}", path, json_type_name(j));
  TokenizerConfig c;
  c.bos_token = token_text(j, "bos_token", root);
  c.eos_token = token_text(j, "eos_token", root);
  c.pad_token = token_text(j, "pad_token", root);
  c.add_bos_token = flag(j, "add_bos_token", root);
  c.add_eos_token = flag(j, "add_eos_token", root);
  auto tmpl = j.find("chat_template");
  if (tmpl != j.end() && !tmpl->is_null()) {
    if (tmpl->is_string()) {
      c.chat_template = tmpl->get<std::string>();
    } else {
      COENC_CHECK(tmpl->is_array(), "{} must be a string or a list of {\"name\", \"template\"}, got {}",
                  (root / "chat_template").str(), json_type_name(*tmpl));
      for (size_t k = 0; k < tmpl->size(); ++k) {
        JsonPath at = (root / "chat_template").at(k);
        std::string name = json_string((*tmpl)[k], "name", at);
        if (name == "default" || c.chat_template.empty())
          c.chat_template = json_string((*tmpl)[k], "template", at);
      }
    }
  }
  return c;
}

}  // namespace coenc::tok
