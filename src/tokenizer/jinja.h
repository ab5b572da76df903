// A Jinja2 subset, enough to render the chat templates of tokenizer_config.json exactly as Hugging Face
// transformers does (apply_chat_template: jinja2's ImmutableSandboxedEnvironment with trim_blocks and
// lstrip_blocks, the loopcontrols extension, and the globals raise_exception and strftime_now; tojson as
// json.dumps with ensure_ascii=False).
//
// Supported: {{ }}, {% if/elif/else %}, {% for x[, y] in xs [if cond] %} with loop.* and {% else %},
// {% break/continue %}, {% set %} (names, namespace attributes, tuples, and {% set x %}...{% endset %}),
// {% macro %}, {% generation %}, comments, the -/+ whitespace modifiers; Python-like expressions (literals,
// lists, dicts, tuples, slices, attribute and item access, arithmetic, ~, comparisons, in, and/or/not,
// x if c else y), the common filters and tests, and the string and dict methods chat templates call. Values
// follow Python's semantics (str(), ==, truthiness, UTF-8 strings indexed by code point). Anything else
// ({% include %}, {% call %}, unknown filters, ...) is refused when the template is parsed, naming its line
// and column.
//
// Errors are coenc::Error: syntax errors InvalidInput, unsupported constructs Unsupported, and errors while
// rendering (an undefined value used, a type error, raise_exception) InvalidInput, each naming the template
// and its line.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace coenc::jinja {

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // keys in insertion order, as Python's dict

// A template value: Python's None, bool, int, float, str, list/tuple and dict, plus jinja's Undefined.
class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object };

  Value() = default;  // Undefined
  Value(std::nullptr_t) : kind_(Kind::None) {}
  Value(bool b) : kind_(Kind::Bool), int_(b) {}
  Value(int i) : kind_(Kind::Int), int_(i) {}
  Value(int64_t i) : kind_(Kind::Int), int_(i) {}
  Value(double f) : kind_(Kind::Float), float_(f) {}
  Value(const char* s) : kind_(Kind::String), string_(s) {}
  Value(std::string s) : kind_(Kind::String), string_(std::move(s)) {}
  Value(Array a, bool tuple = false)
      : kind_(Kind::Array), array_(std::make_shared<Array>(std::move(a))), tuple_(tuple) {}
  Value(Object o) : kind_(Kind::Object), object_(std::make_shared<Object>(std::move(o))) {}

  // An undefined value that remembers what was looked up, for the error when it is used.
  static Value undefined(std::string what);
  // A namespace(): the one mutable object, shared by every copy of the value.
  static Value make_namespace(Object attributes);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_tuple() const { return kind_ == Kind::Array && tuple_; }
  bool is_namespace() const { return kind_ == Kind::Object && namespace_; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_float() const { return kind_ == Kind::Float ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return string_; }
  const Array& as_array() const { return *array_; }
  const Object& as_object() const { return *object_; }
  Object& mutable_object() const { return *object_; }  // namespaces only
  const std::string& undefined_what() const { return string_; }

  // The value of `key` in a dict, nullptr if absent.
  const Value* find(std::string_view key) const;

  bool truthy() const;            // Python's bool()
  std::string str() const;        // Python's str(); Undefined is ""
  std::string repr() const;       // Python's repr()
  const char* type_name() const;  // Python's type name ("str", "dict", ...)

 private:
  Kind kind_ = Kind::Undefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string string_;  // String: the text; Undefined: what was looked up
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
  bool tuple_ = false;
  bool namespace_ = false;
};

// Python's ==.
bool operator==(const Value& a, const Value& b);
inline bool operator!=(const Value& a, const Value& b) {
  return !(a == b);
}

// A JSON document as a template value (objects keep their key order).
Value from_json(const nlohmann::ordered_json& j);

struct RenderOptions {
  // strftime_now(format): the current local time formatted with strftime, as transformers' global does.
  // Tests pin it.
  std::function<std::string(const std::string& format)> strftime_now;
};

// A parsed template. Immutable and cheap to copy; render() may run from several threads at once.
class Template {
 public:
  // Parses `source`. `name` starts every error message (e.g. "tokenizer_config.json: chat_template").
  explicit Template(std::string_view source, std::string name = "chat template");

  // Renders with the variables `globals` (e.g. messages, add_generation_prompt, bos_token).
  std::string render(const Object& globals, const RenderOptions& options = {}) const;

  const std::string& name() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace coenc::jinja
