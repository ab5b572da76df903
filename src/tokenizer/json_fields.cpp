#include "tokenizer/json_fields.h"

#include <limits>

#include "coenc/error.h"

namespace coenc::tok {

std::string json_type_name(const nlohmann::json& j) {
  return j.type_name();
}

std::string json_string(const nlohmann::json& j, const std::string& key, const JsonPath& where) {
  auto it = j.find(key);
  COENC_CHECK(it != j.end(), "{} is missing (expected a string)", (where / key).str());
  COENC_CHECK(it->is_string(), "{} must be a string, got {}", (where / key).str(), json_type_name(*it));
  return it->get<std::string>();
}

bool json_bool(const nlohmann::json& j, const std::string& key, bool fallback, const JsonPath& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  COENC_CHECK(it->is_boolean(), "{} must be true or false, got {}", (where / key).str(), json_type_name(*it));
  return it->get<bool>();
}

const nlohmann::json& json_object(const nlohmann::json& j, const std::string& key, const JsonPath& where) {
  auto it = j.find(key);
  COENC_CHECK(it != j.end(), "{} is missing (expected an object)", (where / key).str());
  COENC_CHECK(it->is_object(), "{} must be an object, got {}", (where / key).str(), json_type_name(*it));
  return *it;
}

const nlohmann::json& json_array(const nlohmann::json& j, const std::string& key, const JsonPath& where) {
  auto it = j.find(key);
  COENC_CHECK(it != j.end(), "{} is missing (expected an array)", (where / key).str());
  COENC_CHECK(it->is_array(), "{} must be an array, got {}", (where / key).str(), json_type_name(*it));
  return *it;
}

int json_index(const nlohmann::json& j, const JsonPath& where) {
  COENC_CHECK(j.is_number_integer(), "{} must be a non-negative integer, got {}", where.str(),
              json_type_name(j));
  auto v = j.get<int64_t>();
  COENC_CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max(),
              "{} must be a non-negative 32-bit integer, got {}", where.str(), v);
  return static_cast<int>(v);
}

int json_token_id(const nlohmann::json& j, const JsonPath& where) {
  const int id = json_index(j, where);
  COENC_CHECK(id <= kMaxTokenId, "{}: token id {} is beyond any vocabulary this program reads (ids up to {})",
              where.str(), id, kMaxTokenId);
  return id;
}

}  // namespace coenc::tok
