// Typed access to JSON fields of tokenizer files, with errors that name the file and the field's path.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace coenc::tok {

// Where a JSON value sits, for error messages: the file's name and a dotted path ("model.merges[3]").
struct JsonPath {
  std::string file;
  std::string path;

  JsonPath operator/(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
  JsonPath at(size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }
  std::string str() const { return file + ": field " + (path.empty() ? "(root)" : path); }
};

// j[key] as a string; throws InvalidInput (missing or not a string) naming `where / key`.
std::string json_string(const nlohmann::json& j, const std::string& key, const JsonPath& where);
// j[key] as a bool; `fallback` when absent or null; throws when present with another type.
bool json_bool(const nlohmann::json& j, const std::string& key, bool fallback, const JsonPath& where);
// j[key] as an object or array; throws when missing or of the wrong kind.
const nlohmann::json& json_object(const nlohmann::json& j, const std::string& key, const JsonPath& where);
const nlohmann::json& json_array(const nlohmann::json& j, const std::string& key, const JsonPath& where);
// j (a value at `where`) as a non-negative integer that fits an int32; throws otherwise.
int json_index(const nlohmann::json& j, const JsonPath& where);
// The largest token id accepted (2^24 - 1; the largest real vocabularies hold about 2^18 tokens): an id near
// INT32_MAX would otherwise size the id table at 2^31 entries.
constexpr int kMaxTokenId = (1 << 24) - 1;
// A token id: a non-negative integer up to kMaxTokenId.
int json_token_id(const nlohmann::json& j, const JsonPath& where);
// A short name of a JSON value's type ("string", "null", ...), for messages.
std::string json_type_name(const nlohmann::json& j);

}  // namespace coenc::tok
