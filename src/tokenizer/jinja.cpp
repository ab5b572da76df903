// The Jinja2 subset of jinja.h: a lexer with jinja2's whitespace rules, a recursive-descent parser that
// follows jinja2's grammar (jinja2/parser.py) and a tree-walking renderer with Python's value semantics.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <unordered_map>

#include <utf8proc.h>
#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "tokenizer/utf8.h"

namespace coenc::jinja {

// ---------------------------------------------------------------------------------------------- text helpers
namespace {

std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int len = tok::utf8_sequence_length(s, i);
    if (len == 0) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(tok::decode_code_point(s, i, len));
      i += len;
    }
  }
  return out;
}

std::string utf8(const std::vector<uint32_t>& cps, size_t begin = 0, size_t end = std::string::npos) {
  std::string out;
  end = std::min(end, cps.size());
  for (size_t i = begin; i < end; ++i) tok::append_utf8(cps[i], out);
  return out;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Python's str.isspace().
bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Python's str.strip/lstrip/rstrip: whitespace, or the characters of `chars`.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  std::vector<uint32_t> cps = code_points(s);
  std::vector<uint32_t> set;
  if (chars) set = code_points(*chars);
  auto strip = [&](uint32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_py_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip(cps[b])) ++b;
  if (right)
    while (e > b && strip(cps[e - 1])) --e;
  return utf8(cps, b, e);
}

std::string map_case(std::string_view s, bool upper) {
  std::string out;
  for (uint32_t c : code_points(s)) {
    auto cp = static_cast<utf8proc_int32_t>(c);
    tok::append_utf8(static_cast<uint32_t>(upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp)), out);
  }
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to, int64_t count = -1) {
  if (from.empty()) {
    // Python inserts `to` between the characters (and at both ends).
    std::vector<uint32_t> cps = code_points(s);
    std::string out;
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size()) tok::append_utf8(cps[i], out);
    }
    return out;
  }
  std::string out;
  size_t at = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    size_t next = s.find(from, at);
    if (next == std::string::npos) break;
    out.append(s, at, next - at);
    out += to;
    at = next + from.size();
  }
  out.append(s, at, std::string::npos);
  return out;
}

// Python's repr() of a float (the shortest text that reads back as the same double).
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  // buf is [-]d[.ddd]e[+-]XX: split into digits and exponent.
  std::string s(buf);
  bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  size_t e = s.find('e');
  int exponent = std::stoi(s.substr(e + 1));
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out;
  if (exponent >= -5 + 1 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out = digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return negative ? "-" + out : out;
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (uint32_t c : code_points(s)) {
    if (c == static_cast<uint32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      tok::append_utf8(c, out);
    }
  }
  return out + quote;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- values
Value Value::undefined(std::string what) {
  Value v;
  v.string_ = std::move(what);
  return v;
}

Value Value::make_namespace(Object attributes) {
  Value v(std::move(attributes));
  v.namespace_ = true;
  return v;
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (const auto& [k, v] : *object_)
    if (k == key) return &v;
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
    case Kind::Int:
      return int_ != 0;
    case Kind::Float:
      return float_ != 0;
    case Kind::String:
      return !string_.empty();
    case Kind::Array:
      return !array_->empty();
    case Kind::Object:
      return namespace_ || !object_->empty();
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::Array:
      return tuple_ ? "tuple" : "list";
    case Kind::Object:
      return namespace_ ? "Namespace" : "dict";
  }
  return "object";
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::Undefined:
      return "";
    case Kind::String:
      return string_;
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::Undefined:
      return "";
    case Kind::None:
      return "None";
    case Kind::Bool:
      return int_ ? "True" : "False";
    case Kind::Int:
      return std::to_string(int_);
    case Kind::Float:
      return float_repr(float_);
    case Kind::String:
      return string_repr(string_);
    case Kind::Array: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < array_->size(); ++i) out += (i ? ", " : "") + (*array_)[i].repr();
      if (tuple_ && array_->size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Kind::Object: {
      std::string out = namespace_ ? "<Namespace {" : "{";
      for (size_t i = 0; i < object_->size(); ++i)
        out += (i ? ", " : "") + string_repr((*object_)[i].first) + ": " + (*object_)[i].second.repr();
      return out + (namespace_ ? "}>" : "}");
    }
  }
  return "";
}

bool operator==(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() || a.kind() == K::Bool) {
    if (!(b.is_number() || b.kind() == K::Bool)) return false;
    if (a.kind() == K::Float || b.kind() == K::Float) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None:
      return true;
    case K::String:
      return a.as_string() == b.as_string();
    case K::Array:
      if (a.is_tuple() != b.is_tuple() || a.as_array().size() != b.as_array().size()) return false;
      for (size_t i = 0; i < a.as_array().size(); ++i)
        if (a.as_array()[i] != b.as_array()[i]) return false;
      return true;
    case K::Object:
      if (a.is_namespace() || b.is_namespace()) return &a.as_object() == &b.as_object();
      if (a.as_object().size() != b.as_object().size()) return false;
      for (const auto& [k, v] : a.as_object()) {
        const Value* other = b.find(k);
        if (!other || *other != v) return false;
      }
      return true;
    default:
      return false;
  }
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value(nullptr);
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      for (const auto& e : j) a.push_back(from_json(e));
      return Value(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (const auto& [k, v] : j.items()) o.emplace_back(k, from_json(v));
      return Value(std::move(o));
    }
    default:
      fail(ErrorCode::InvalidInput, "a JSON {} cannot be a template value", j.type_name());
  }
}

// ----------------------------------------------------------------------------------------------------- lexer
namespace {

enum class Tok { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };

struct Token {
  Tok type;
  // Data: the text; Name and Op: the spelling; String: the decoded value; Int and Float: the digits.
  std::string text;
  size_t pos;  // byte offset in the (newline-normalised) source
};

// Where an error happened: line and column (1-based) of a byte offset.
class SourceMap {
 public:
  explicit SourceMap(const std::string& source) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source.size(); ++i)
      if (source[i] == '\n') line_starts_.push_back(i + 1);
  }
  int line(size_t pos) const {
    return static_cast<int>(std::upper_bound(line_starts_.begin(), line_starts_.end(), pos) -
                            line_starts_.begin());
  }
  int column(size_t pos) const { return static_cast<int>(pos - line_starts_[line(pos) - 1]) + 1; }

 private:
  std::vector<size_t> line_starts_;
};

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

class Lexer {
 public:
  Lexer(const std::string& source, const SourceMap& map, const std::string& name)
      : s_(source), map_(map), name_(name) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;  // the previous tag's match ended with a newline (jinja2's lstrip rule)
    while (pos < s_.size()) {
      size_t start = find_tag(pos);
      std::string text = s_.substr(pos, start - pos);
      if (start == s_.size()) {
        emit(Tok::Data, std::move(text), pos);
        break;
      }
      const char kind = s_[start + 1];
      const char modifier =
          start + 2 < s_.size() && (s_[start + 2] == '-' || s_[start + 2] == '+') ? s_[start + 2] : 0;
      if (modifier == '-') {
        text = py_strip(text, std::nullopt, false, true);
      } else if (modifier != '+' && kind != '{') {
        // lstrip_blocks: spaces and tabs between the start of the line and a block or comment tag go.
        size_t line_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if (line_pos > 0 || line_starting) {
          bool blank = line_pos < text.size();
          for (size_t i = line_pos; i < text.size(); ++i)
            blank = blank && std::isspace(static_cast<unsigned char>(text[i]));
          if (blank) text.resize(line_pos);
        }
      }
      emit(Tok::Data, std::move(text), pos);
      size_t inner = start + 2 + (modifier ? 1 : 0);
      if (kind == '#') {
        size_t close = s_.find("#}", inner);
        if (close == std::string::npos) error(start, "the comment is never closed (missing \"#}\")");
        char end_modifier =
            close > inner && (s_[close - 1] == '-' || s_[close - 1] == '+') ? s_[close - 1] : 0;
        pos = after_tag(close + 2, end_modifier, true, line_starting);
        continue;
      }
      const bool block = kind == '%';
      emit(block ? Tok::BlockBegin : Tok::VarBegin, "", start);
      pos = lex_tag(inner, block, line_starting);
    }
    emit(Tok::End, "", s_.size());
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t pos, const std::string& message) const {
    fail(ErrorCode::InvalidInput, "{} line {}, column {}: {}", name_, map_.line(pos), map_.column(pos),
         message);
  }

  void emit(Tok type, std::string text, size_t pos) {
    if (type == Tok::Data && text.empty()) return;
    tokens_.push_back({type, std::move(text), pos});
  }

  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1))
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return s_.size();
  }

  // The position after a tag's closing delimiter ending at `pos`: "-" eats the whitespace that follows,
  // trim_blocks one newline after a block or comment tag.
  size_t after_tag(size_t pos, char modifier, bool block, bool& line_starting) const {
    size_t end = pos;
    if (modifier == '-') {
      while (end < s_.size() && std::isspace(static_cast<unsigned char>(s_[end]))) ++end;
    } else if (modifier != '+' && block && end < s_.size() && s_[end] == '\n') {
      ++end;
    }
    line_starting = s_[end - 1] == '\n';
    return end;
  }

  // Lexes the expression tokens of a {{ }} or {% %} tag from `pos` to its closing delimiter.
  size_t lex_tag(size_t pos, bool block, bool& line_starting) {
    int depth = 0;  // open brackets: a closing delimiter inside them is not one (as jinja2's balancing stack)
    const char close = block ? '%' : '}';
    while (true) {
      while (pos < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos]))) ++pos;
      if (pos >= s_.size()) error(pos, block ? "the tag is never closed (missing \"%}\")" : "missing \"}}\"");
      if (depth == 0) {
        for (char m : {'-', '+', '\0'}) {
          if (m == '+' && !block) continue;
          size_t at = pos + (m ? 1 : 0);
          if ((!m || s_[pos] == m) && at + 1 < s_.size() && s_[at] == close && s_[at + 1] == '}') {
            emit(block ? Tok::BlockEnd : Tok::VarEnd, "", pos);
            return after_tag(at + 2, m, block, line_starting);
          }
        }
      }
      const char c = s_[pos];
      if (c == '"' || c == '\'') {
        pos = lex_string(pos);
      } else if (is_digit(c)) {
        size_t b = pos;
        while (pos < s_.size() && (is_digit(s_[pos]) || s_[pos] == '_')) ++pos;
        bool is_float = false;
        if (pos + 1 < s_.size() && s_[pos] == '.' && is_digit(s_[pos + 1])) {
          is_float = true;
          ++pos;
          while (pos < s_.size() && (is_digit(s_[pos]) || s_[pos] == '_')) ++pos;
        }
        if (pos < s_.size() && (s_[pos] == 'e' || s_[pos] == 'E')) {
          size_t e = pos + 1;
          if (e < s_.size() && (s_[e] == '+' || s_[e] == '-')) ++e;
          if (e < s_.size() && is_digit(s_[e])) {
            is_float = true;
            pos = e;
            while (pos < s_.size() && is_digit(s_[pos])) ++pos;
          }
        }
        std::string digits = s_.substr(b, pos - b);
        digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
        emit(is_float ? Tok::Float : Tok::Int, digits, b);
      } else if (is_name_start(c)) {
        size_t b = pos;
        while (pos < s_.size() && is_name_char(s_[pos])) ++pos;
        emit(Tok::Name, s_.substr(b, pos - b), b);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/",
                                           "*",  "%",  "~",  "(",  ")",  "[",  "]", "{", "}",
                                           ",",  ".",  ":",  "|",  "=",  "<",  ">", ";"};
        const char* op = nullptr;
        for (const char* o : kOps)
          if (s_.compare(pos, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) error(pos, format("unexpected character '{}'", c));
        std::string text(op);
        if (text == "(" || text == "[" || text == "{") ++depth;
        if ((text == ")" || text == "]" || text == "}") && depth > 0) --depth;
        emit(Tok::Op, text, pos);
        pos += text.size();
      }
    }
  }

  // A string literal with Python's escapes (jinja2 decodes them with "unicode-escape").
  size_t lex_string(size_t pos) {
    const char quote = s_[pos];
    const size_t begin = pos++;
    std::string out;
    while (true) {
      if (pos >= s_.size()) error(begin, "the string literal is never closed");
      char c = s_[pos];
      if (c == quote) break;
      if (c != '\\' || pos + 1 >= s_.size()) {
        out += c;
        ++pos;
        continue;
      }
      char e = s_[pos + 1];
      pos += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos + n > s_.size()) error(pos - 2, format("truncated \\{} escape in a string literal", e));
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = s_[pos + k];
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              error(pos - 2, format("truncated \\{} escape in a string literal", e));
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : (std::tolower(h) - 'a' + 10));
          }
          pos += n;
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
          tok::append_utf8(cp, out);
          break;
        }
        default:  // Python keeps an unknown escape as it is
          out += '\\';
          out += e;
      }
    }
    emit(Tok::String, std::move(out), begin);
    return pos + 1;
  }

  const std::string& s_;
  const SourceMap& map_;
  const std::string& name_;
  std::vector<Token> tokens_;
};

}  // namespace

// ----------------------------------------------------------------------------------------------- syntax tree
namespace {

enum class ExprKind {
  Literal,
  Name,
  List,
  Tuple,
  Dict,
  Attr,
  Item,
  Slice,
  Call,
  Filter,
  Test,
  Not,
  Neg,
  Pos,
  Binary,
  Compare,
  And,
  Or,
  Cond
};

struct Expr {
  ExprKind kind;
  size_t pos = 0;
  Value literal;
  std::string name;                         // Name, Attr, Filter, Test, Binary (the operator)
  bool negated = false;                     // Test: "is not"
  std::vector<std::unique_ptr<Expr>> args;  // operands; nullptr for an omitted slice bound or else branch
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  std::vector<std::string> ops;  // Compare: one per pair of operands
};

using ExprPtr = std::unique_ptr<Expr>;

}  // namespace

namespace {

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Break, Continue, Block, Macro };

struct Node {
  NodeKind kind;
  size_t pos = 0;
  std::string text;                                          // Text
  ExprPtr expr;                                              // Output, For (the iterable), Set (the value)
  ExprPtr filter;                                            // For: the "if" clause
  std::vector<std::pair<std::string, std::string>> targets;  // For, Set, SetBlock: {name, attribute or ""}
  std::vector<std::pair<ExprPtr, std::vector<std::unique_ptr<Node>>>> branches;  // If: condition and body
  std::vector<std::unique_ptr<Node>> body, else_body;  // For, SetBlock, Block, Macro; If and For: else
  std::vector<ExprPtr> defaults;  // Macro: the default of each parameter (in targets), nullptr for none
};

using NodeList = std::vector<std::unique_ptr<Node>>;

// The filters and tests the renderer implements (checked when parsing, as jinja2 does).
const char* const kFilters[] = {
    "abs",     "attr",    "capitalize", "count",  "d",      "default",    "dictsort", "e",
    "escape",  "first",   "float",      "indent", "int",    "items",      "join",     "last",
    "length",  "list",    "lower",      "map",    "max",    "min",        "reject",   "rejectattr",
    "replace", "reverse", "round",      "safe",   "select", "selectattr", "sort",     "string",
    "sum",     "title",   "tojson",     "trim",   "unique", "upper",      "wordcount"};
const char* const kTests[] = {"boolean",     "callable", "defined",  "divisibleby", "eq",   "equalto",
                              "escaped",     "even",     "false",    "float",       "ge",   "gt",
                              "greaterthan", "in",       "integer",  "iterable",    "le",   "lower",
                              "lt",          "lessthan", "mapping",  "ne",          "none", "number",
                              "odd",         "sameas",   "sequence", "string",      "true", "undefined",
                              "upper",       "==",       "!=",       "<",           "<=",   ">",
                              ">="};

template <size_t N>
bool known(const char* const (&list)[N], const std::string& name) {
  return std::find_if(std::begin(list), std::end(list), [&](const char* s) { return name == s; }) !=
         std::end(list);
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const SourceMap& map, const std::string& name)
      : t_(std::move(tokens)), map_(map), name_(name) {}

  NodeList parse() {
    NodeList body = parse_body({});
    if (peek().type != Tok::End) syntax(peek().pos, "unexpected tag");
    return body;
  }

 private:
  [[noreturn]] void error(ErrorCode code, size_t pos, const std::string& message) const {
    fail(code, "{} line {}, column {}: {}", name_, map_.line(pos), map_.column(pos), message);
  }
  [[noreturn]] void syntax(size_t pos, const std::string& message) const {
    error(ErrorCode::InvalidInput, pos, message);
  }
  [[noreturn]] void unsupported(size_t pos, const std::string& what) const {
    error(ErrorCode::Unsupported, pos, what + " is not supported by Co-Encoder's Jinja subset");
  }

  const Token& peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& next() { return t_[std::min(i_++, t_.size() - 1)]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Op && peek(ahead).text == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Name && peek(ahead).text == name;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::VarEnd:
        return "'}}'";
      case Tok::BlockEnd:
        return "'%}'";
      case Tok::End:
        return "the end of the template";
      case Tok::String:
        return "a string";
      case Tok::Data:
        return "text";
      default:
        return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) syntax(peek().pos, format("expected '{}', got {}", op, describe(peek())));
    next();
  }
  void expect(Tok type, const char* what) {
    if (peek().type != type) syntax(peek().pos, format("expected {}, got {}", what, describe(peek())));
    next();
  }
  std::string expect_name() {
    if (peek().type != Tok::Name) syntax(peek().pos, format("expected a name, got {}", describe(peek())));
    return next().text;
  }

  ExprPtr make(ExprKind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  // ---- statements

  // Parses template text until a block tag whose name is in `stop` (left unconsumed: "{%" is current).
  NodeList parse_body(const std::vector<std::string>& stop) {
    NodeList out;
    while (true) {
      const Token& t = peek();
      if (t.type == Tok::End) {
        if (!stop.empty())
          syntax(t.pos, format("unexpected end of template: the block needs {% {} %}", stop.back()));
        return out;
      }
      auto node = std::make_unique<Node>();
      node->pos = t.pos;
      if (t.type == Tok::Data) {
        node->kind = NodeKind::Text;
        node->text = next().text;
      } else if (t.type == Tok::VarBegin) {
        next();
        node->kind = NodeKind::Output;
        node->expr = parse_tuple(true);
        expect(Tok::VarEnd, "'}}'");
      } else if (t.type == Tok::BlockBegin) {
        if (peek(1).type == Tok::Name && std::find(stop.begin(), stop.end(), peek(1).text) != stop.end())
          return out;
        next();
        node = parse_statement(t.pos);
      } else {
        syntax(t.pos, format("unexpected {}", describe(t)));
      }
      out.push_back(std::move(node));
    }
  }

  std::unique_ptr<Node> parse_statement(size_t pos) {
    const Token& t = peek();
    if (t.type != Tok::Name) syntax(t.pos, format("expected a tag name, got {}", describe(t)));
    const std::string tag = next().text;
    auto node = std::make_unique<Node>();
    node->pos = pos;
    if (tag == "if") {
      node->kind = NodeKind::If;
      ExprPtr cond = parse_tuple(false);
      expect(Tok::BlockEnd, "'%}'");
      while (true) {
        NodeList body = parse_body({"elif", "else", "endif"});
        node->branches.emplace_back(std::move(cond), std::move(body));
        next();  // {%
        const std::string which = next().text;
        if (which == "elif") {
          cond = parse_tuple(false);
          expect(Tok::BlockEnd, "'%}'");
          continue;
        }
        if (which == "else") {
          expect(Tok::BlockEnd, "'%}'");
          node->else_body = parse_body({"endif"});
          next();
          next();
        }
        expect(Tok::BlockEnd, "'%}'");
        break;
      }
    } else if (tag == "for") {
      node->kind = NodeKind::For;
      do {
        node->targets.emplace_back(expect_name(), "");
      } while (is_op(",") && (next(), true));
      if (!is_name("in"))
        syntax(peek().pos, format("expected 'in' in the for loop, got {}", describe(peek())));
      next();
      node->expr = parse_tuple(false);
      if (is_name("if")) {
        next();
        node->filter = parse_expression(true);
      }
      if (is_name("recursive")) unsupported(peek().pos, "a recursive for loop");
      expect(Tok::BlockEnd, "'%}'");
      ++loop_depth_;
      node->body = parse_body({"else", "endfor"});
      --loop_depth_;
      next();
      if (next().text == "else") {
        expect(Tok::BlockEnd, "'%}'");
        node->else_body = parse_body({"endfor"});
        next();
        next();
      }
      expect(Tok::BlockEnd, "'%}'");
    } else if (tag == "set") {
      do {
        std::string target = expect_name();
        std::string attribute;
        if (is_op(".")) {
          next();
          attribute = expect_name();
        }
        node->targets.emplace_back(std::move(target), std::move(attribute));
      } while (is_op(",") && (next(), true));
      if (is_op("=")) {
        next();
        node->kind = NodeKind::Set;
        node->expr = parse_tuple(true);
        expect(Tok::BlockEnd, "'%}'");
      } else {
        if (is_op("|")) unsupported(peek().pos, "a filtered {% set %} block");
        node->kind = NodeKind::SetBlock;
        if (node->targets.size() != 1 || !node->targets[0].second.empty())
          syntax(pos, "a {% set %} block assigns one name");
        expect(Tok::BlockEnd, "'%}'");
        node->body = parse_body({"endset"});
        next();
        next();
        expect(Tok::BlockEnd, "'%}'");
      }
    } else if (tag == "break" || tag == "continue") {
      node->kind = tag == "break" ? NodeKind::Break : NodeKind::Continue;
      if (loop_depth_ == 0) syntax(pos, "'" + tag + "' outside a loop");
      expect(Tok::BlockEnd, "'%}'");
    } else if (tag == "generation") {
      // transformers' {% generation %} marks the assistant's tokens; the text renders as is.
      node->kind = NodeKind::Block;
      expect(Tok::BlockEnd, "'%}'");
      node->body = parse_body({"endgeneration"});
      next();
      next();
      expect(Tok::BlockEnd, "'%}'");
    } else if (tag == "macro") {
      node->kind = NodeKind::Macro;
      node->text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        node->targets.emplace_back(expect_name(), "");
        if (is_op("=")) {
          next();
          node->defaults.push_back(parse_expression(true));
        } else {
          if (!node->defaults.empty() && node->defaults.back())
            syntax(peek().pos, "a macro parameter without a default after one with a default");
          node->defaults.push_back(nullptr);
        }
        if (!is_op(")")) expect_op(",");
      }
      next();
      expect(Tok::BlockEnd, "'%}'");
      const int loops = loop_depth_;
      loop_depth_ = 0;  // a loop around the definition is not one around the body
      node->body = parse_body({"endmacro"});
      loop_depth_ = loops;
      next();
      next();
      expect(Tok::BlockEnd, "'%}'");
    } else if (tag == "call" || tag == "filter" || tag == "include" || tag == "import" || tag == "from" ||
               tag == "extends" || tag == "block" || tag == "raw" || tag == "with" || tag == "autoescape" ||
               tag == "do" || tag == "trans") {
      unsupported(t.pos, "the {% " + tag + " %} tag");
    } else {
      syntax(t.pos, "unexpected tag '" + tag + "'");
    }
    return node;
  }

  // ---- expressions (jinja2's precedence, lowest first)

  ExprPtr parse_tuple(bool with_condexpr) {
    const size_t pos = peek().pos;
    ExprPtr first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::Tuple, pos);
    tuple->args.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (peek().type == Tok::VarEnd || peek().type == Tok::BlockEnd || is_op(")")) break;
      tuple->args.push_back(parse_expression(with_condexpr));
    }
    return tuple;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto cond = make(ExprKind::Cond, next().pos);
      cond->args.push_back(std::move(e));
      cond->args.push_back(parse_or());
      if (is_name("else")) {
        next();
        cond->args.push_back(parse_condexpr());
      } else {
        cond->args.push_back(nullptr);
      }
      e = std::move(cond);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto n = make(ExprKind::Or, next().pos);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto n = make(ExprKind::And, next().pos);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto n = make(ExprKind::Not, next().pos);
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const size_t pos = peek().pos;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().type == Tok::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                     peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::Compare, pos);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr binary(ExprPtr left, size_t pos, const std::string& op, ExprPtr right) {
    auto n = make(ExprKind::Binary, pos);
    n->name = op;
    n->args.push_back(std::move(left));
    n->args.push_back(std::move(right));
    return n;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = next();
      e = binary(std::move(e), op.pos, op.text, parse_concat());
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const Token& op = next();
      e = binary(std::move(e), op.pos, "~", parse_math2());
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = next();
      e = binary(std::move(e), op.pos, op.text, parse_pow());
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const Token& op = next();
      e = binary(std::move(e), op.pos, "**", parse_unary(true));
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const ExprKind kind = is_op("-") ? ExprKind::Neg : ExprKind::Pos;
      e = make(kind, next().pos);
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    return with_filter ? parse_filter_expr(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Tok::Name: {
        next();
        if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
          auto e = make(ExprKind::Literal, t.pos);
          e->literal = Value(t.text == "true" || t.text == "True");
          return e;
        }
        if (t.text == "none" || t.text == "None") {
          auto e = make(ExprKind::Literal, t.pos);
          e->literal = Value(nullptr);
          return e;
        }
        auto e = make(ExprKind::Name, t.pos);
        e->name = t.text;
        return e;
      }
      case Tok::String: {
        auto e = make(ExprKind::Literal, t.pos);
        std::string s;
        while (peek().type == Tok::String) s += next().text;  // adjacent literals concatenate
        e->literal = Value(std::move(s));
        return e;
      }
      case Tok::Int:
      case Tok::Float: {
        next();
        auto e = make(ExprKind::Literal, t.pos);
        if (t.type == Tok::Float) {
          e->literal = Value(std::strtod(t.text.c_str(), nullptr));
        } else {
          errno = 0;
          long long v = std::strtoll(t.text.c_str(), nullptr, 10);
          if (errno == ERANGE) unsupported(t.pos, "an integer literal beyond 64 bits");
          e->literal = Value(static_cast<int64_t>(v));
        }
        return e;
      }
      case Tok::Op:
        if (t.text == "(") {
          next();
          if (is_op(")")) {
            next();
            return make(ExprKind::Tuple, t.pos);
          }
          ExprPtr first = parse_expression(true);
          if (is_op(")")) {
            next();
            return first;
          }
          auto tuple = make(ExprKind::Tuple, t.pos);
          tuple->args.push_back(std::move(first));
          while (is_op(",")) {
            next();
            if (is_op(")")) break;
            tuple->args.push_back(parse_expression(true));
          }
          expect_op(")");
          return tuple;
        }
        if (t.text == "[") {
          next();
          auto list = make(ExprKind::List, t.pos);
          while (!is_op("]")) {
            if (!list->args.empty()) expect_op(",");
            if (is_op("]")) break;
            list->args.push_back(parse_expression(true));
          }
          next();
          return list;
        }
        if (t.text == "{") {
          next();
          auto dict = make(ExprKind::Dict, t.pos);
          while (!is_op("}")) {
            if (!dict->args.empty()) expect_op(",");
            if (is_op("}")) break;
            dict->args.push_back(parse_expression(true));
            expect_op(":");
            dict->args.push_back(parse_expression(true));
          }
          next();
          return dict;
        }
        break;
      default:
        break;
    }
    syntax(t.pos, format("unexpected {}", describe(t)));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const size_t pos = next().pos;
        if (peek().type == Tok::Int) {
          auto item = make(ExprKind::Item, pos);
          item->args.push_back(std::move(e));
          auto index = make(ExprKind::Literal, peek().pos);
          index->literal = Value(static_cast<int64_t>(std::stoll(next().text)));
          item->args.push_back(std::move(index));
          e = std::move(item);
          continue;
        }
        auto attr = make(ExprKind::Attr, pos);
        attr->name = expect_name();
        attr->args.push_back(std::move(e));
        e = std::move(attr);
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    const size_t pos = next().pos;  // [
    ExprPtr bounds[3];
    bool slice = false;
    if (!is_op(":")) bounds[0] = parse_expression(true);
    if (is_op(":")) {
      slice = true;
      next();
      if (!is_op("]") && !is_op(":")) bounds[1] = parse_expression(true);
      if (is_op(":")) {
        next();
        if (!is_op("]")) bounds[2] = parse_expression(true);
      }
    }
    if (is_op(",")) unsupported(peek().pos, "a tuple subscript");
    expect_op("]");
    auto n = make(slice ? ExprKind::Slice : ExprKind::Item, pos);
    n->args.push_back(std::move(e));
    for (int k = 0; k < (slice ? 3 : 1); ++k) n->args.push_back(std::move(bounds[k]));
    return n;
  }

  // Arguments "(a, b, key=value)" into e->args (after what is already there) and e->kwargs.
  void parse_arguments(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) unsupported(peek().pos, "*args and **kwargs in a call");
      if (peek().type == Tok::Name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) syntax(peek().pos, "a positional argument after a keyword argument");
        e.args.push_back(parse_expression(true));
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto call = make(ExprKind::Call, peek().pos);
    call->args.push_back(std::move(callee));
    parse_arguments(*call);
    return call;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        const Token& name = peek();
        auto f = make(ExprKind::Filter, name.pos);
        f->name = expect_name();
        if (!known(kFilters, f->name)) unsupported(name.pos, "the filter '" + f->name + "'");
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_arguments(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        auto test = make(ExprKind::Test, peek().pos);
        if (is_name("not")) {
          next();
          test->negated = true;
        }
        const Token& name = peek();
        if (name.type == Tok::Op && known(kTests, name.text)) {
          test->name = next().text;
        } else {
          test->name = expect_name();
        }
        if (!known(kTests, test->name)) unsupported(name.pos, "the test '" + test->name + "'");
        test->args.push_back(std::move(e));
        const Token& t = peek();
        if (is_op("(")) {
          parse_arguments(*test);
        } else if ((t.type == Tok::Name || t.type == Tok::String || t.type == Tok::Int ||
                    t.type == Tok::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          // jinja2 takes one argument without parentheses: "is divisibleby 3", "is sameas false"
          test->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(test);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  const SourceMap& map_;
  const std::string& name_;
  int loop_depth_ = 0;  // enclosing for loops (break and continue need one)
};

}  // namespace

// -------------------------------------------------------------------------------------------------- renderer
namespace {

enum class Flow { Normal, Break, Continue };

// The most items a repetition ("x" * n) may make: a template is a prompt, not a way to fill the memory.
constexpr uint64_t kMaxItems = uint64_t{1} << 26;

class Renderer;

struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Renderer {
 public:
  Renderer(const std::string& name, const SourceMap& map, const Object& globals, const RenderOptions& options)
      : name_(name), map_(map), options_(options) {
    scopes_.emplace_back();
    for (const auto& [k, v] : globals) scopes_.back()[k] = v;
  }

  std::string run(const NodeList& body) {
    exec(body);
    return std::move(out_);
  }

 private:
  [[noreturn]] void error(size_t pos, const std::string& message) const {
    fail(ErrorCode::InvalidInput, "{} line {}: {}", name_, map_.line(pos), message);
  }
  // Using an undefined value where a defined one is needed (jinja2's UndefinedError).
  [[noreturn]] void undefined_error(size_t pos, const Value& v) const {
    error(pos, v.undefined_what().empty() ? "a value is undefined" : v.undefined_what());
  }
  const Value& defined(const Value& v, size_t pos) const {
    if (v.is_undefined()) undefined_error(pos, v);
    return v;
  }

  // ---- statements

  Flow exec(const NodeList& nodes) {
    for (const auto& n : nodes) {
      Flow f = exec(*n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& n) {
    switch (n.kind) {
      case NodeKind::Text:
        out_ += n.text;
        return Flow::Normal;
      case NodeKind::Output:
        out_ += eval(*n.expr).str();
        return Flow::Normal;
      case NodeKind::If:
        for (const auto& [cond, body] : n.branches)
          if (eval(*cond).truthy()) return exec(body);
        return exec(n.else_body);
      case NodeKind::For:
        return exec_for(n);
      case NodeKind::Set:
        assign(n, eval(*n.expr));
        return Flow::Normal;
      case NodeKind::SetBlock: {
        std::string saved = std::move(out_);
        out_.clear();
        Flow f = exec(n.body);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        assign(n, Value(std::move(captured)));
        return f;
      }
      case NodeKind::Break:
        return Flow::Break;
      case NodeKind::Continue:
        return Flow::Continue;
      case NodeKind::Block:
        return exec(n.body);
      case NodeKind::Macro:
        macros_.push_back(&n);
        scopes_.back()[n.text] =
            Value::make_namespace({{"__macro__", Value(static_cast<int64_t>(macros_.size() - 1))}});
        return Flow::Normal;
    }
    return Flow::Normal;
  }

  void bind(const std::vector<std::pair<std::string, std::string>>& targets, const Value& v, size_t pos,
            bool attributes) {
    if (targets.size() == 1) return bind_one(targets[0], v, pos);
    if (!v.is_array() && !v.is_string())
      error(pos, format("cannot unpack a {} into {} names", v.type_name(), targets.size()));
    std::vector<Value> items = iterate(v, pos);
    if (items.size() != targets.size())
      error(pos, format("cannot unpack {} values into {} names", items.size(), targets.size()));
    for (size_t k = 0; k < items.size(); ++k) bind_one(targets[k], items[k], pos);
  }

  void bind_one(const std::pair<std::string, std::string>& target, const Value& v, size_t pos) {
    if (target.second.empty()) {
      scopes_.back()[target.first] = v;
      return;
    }
    Value ns = lookup(target.first);
    if (!ns.is_namespace()) error(pos, "cannot assign attribute on non-namespace object");
    for (auto& [k, old] : ns.mutable_object())
      if (k == target.second) {
        old = v;
        return;
      }
    ns.mutable_object().emplace_back(target.second, v);
  }

  void assign(const Node& n, const Value& v) { bind(n.targets, v, n.pos, true); }

  Flow exec_for(const Node& n) {
    Value iterable = eval(*n.expr);
    std::vector<Value> items = iterate(iterable, n.expr->pos);
    if (n.filter) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        scopes_.emplace_back();
        bind(n.targets, item, n.pos, false);
        bool keep = eval(*n.filter).truthy();
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(n.else_body);
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      // Each iteration has its own scope: what the body sets does not outlive it (jinja2's scoping rules).
      scopes_.emplace_back();
      bind(n.targets, items[i], n.pos, false);
      Object loop = {{"index", Value(i + 1)},
                     {"index0", Value(i)},
                     {"revindex", Value(length - i)},
                     {"revindex0", Value(length - i - 1)},
                     {"first", Value(i == 0)},
                     {"last", Value(i == length - 1)},
                     {"length", Value(length)},
                     {"depth", Value(1)},
                     {"depth0", Value(0)}};
      if (i > 0) loop.emplace_back("previtem", items[i - 1]);
      if (i + 1 < length) loop.emplace_back("nextitem", items[i + 1]);
      scopes_.back()["loop"] = Value(std::move(loop));
      Flow f = exec(n.body);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  // The items a for loop (or list()) visits: a list's elements, a dict's keys, a string's characters.
  std::vector<Value> iterate(const Value& v, size_t pos) const {
    std::vector<Value> out;
    switch (v.kind()) {
      case Value::Kind::Undefined:
        return out;
      case Value::Kind::Array:
        return v.as_array();
      case Value::Kind::Object:
        if (v.is_namespace()) break;
        for (const auto& kv : v.as_object()) out.emplace_back(kv.first);
        return out;
      case Value::Kind::String:
        for (uint32_t c : code_points(v.as_string())) {
          std::string s;
          tok::append_utf8(c, s);
          out.emplace_back(std::move(s));
        }
        return out;
      default:
        break;
    }
    error(pos, format("'{}' object is not iterable", v.type_name()));
  }

  // A name in the innermost scopes down to the visible ones, then in the template's top level.
  Value lookup(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > 0;) {
      if (i < visible_ && i > 0) i = 0;
      auto found = scopes_[i].find(name);
      if (found != scopes_[i].end()) return found->second;
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  // ---- expressions

  Value eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::Literal:
        return e.literal;
      case ExprKind::Name: {
        Value v = lookup(e.name);
        if (v.is_undefined() && is_global_function(e.name)) return function_value(e.name);
        return v;
      }
      case ExprKind::List:
      case ExprKind::Tuple: {
        Array a;
        for (const auto& x : e.args) a.push_back(eval(*x));
        return Value(std::move(a), e.kind == ExprKind::Tuple);
      }
      case ExprKind::Dict: {
        Object o;
        for (size_t k = 0; k < e.args.size(); k += 2) {
          Value key = eval(*e.args[k]);
          if (!key.is_string())
            error(e.args[k]->pos, "Co-Encoder's Jinja subset takes dict keys that are strings");
          Value value = eval(*e.args[k + 1]);
          auto it =
              std::find_if(o.begin(), o.end(), [&](const auto& kv) { return kv.first == key.as_string(); });
          if (it != o.end())
            it->second = std::move(value);
          else
            o.emplace_back(key.as_string(), std::move(value));
        }
        return Value(std::move(o));
      }
      case ExprKind::Attr:
        return get_attribute(eval(*e.args[0]), e.name, e.pos);
      case ExprKind::Item:
        return get_item(eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case ExprKind::Slice:
        return slice(e);
      case ExprKind::Call:
        return call(e);
      case ExprKind::Filter:
        return filter(e);
      case ExprKind::Test: {
        Value v = eval(*e.args[0]);
        Args args = arguments(e, 1);
        bool r = test(e.name, v, args, e.pos);
        return Value(e.negated ? !r : r);
      }
      case ExprKind::Not:
        return Value(!eval(*e.args[0]).truthy());
      case ExprKind::Neg:
      case ExprKind::Pos: {
        Value v = defined(eval(*e.args[0]), e.pos);
        if (!v.is_number() && v.kind() != Value::Kind::Bool)
          error(e.pos, format("bad operand type for unary {}: '{}'", e.kind == ExprKind::Neg ? '-' : '+',
                              v.type_name()));
        if (e.kind == ExprKind::Pos) return v.kind() == Value::Kind::Bool ? Value(v.as_int()) : v;
        if (v.kind() == Value::Kind::Float) return Value(-v.as_float());
        return Value(checked(0, v.as_int(), '-', e.pos));
      }
      case ExprKind::Binary:
        return binary(e.name, eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case ExprKind::Compare: {
        Value left = eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1]);
          if (!compare(e.ops[k], left, right, e.args[k + 1]->pos)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case ExprKind::And: {
        Value left = eval(*e.args[0]);
        return left.truthy() ? eval(*e.args[1]) : left;
      }
      case ExprKind::Or: {
        Value left = eval(*e.args[0]);
        return left.truthy() ? left : eval(*e.args[1]);
      }
      case ExprKind::Cond:
        if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undefined(
            format("the inline if-expression on line {} evaluated to false and no else "
                   "section was defined",
                   map_.line(e.pos)));
    }
    return Value();
  }

  Args arguments(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.args.size(); ++k) a.positional.push_back(eval(*e.args[k]));
    for (const auto& [key, x] : e.kwargs) a.keyword.emplace_back(key, eval(*x));
    return a;
  }

  // Argument `index` (or keyword `name`) of a call, or `fallback`.
  static Value arg(const Args& a, size_t index, const char* name, Value fallback = Value()) {
    for (const auto& [k, v] : a.keyword)
      if (k == name) return v;
    return index < a.positional.size() ? a.positional[index] : fallback;
  }

  // jinja2's getattr: an attribute, else the item of that name; Undefined when neither exists.
  Value get_attribute(const Value& obj, const std::string& name, size_t pos) const {
    defined(obj, pos);
    if (obj.is_object()) {
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(format("'{}' has no attribute '{}'", object_label(obj), name));
    }
    return Value::undefined(format("'{}' has no attribute '{}'", object_label(obj), name));
  }

  static std::string object_label(const Value& v) {
    if (v.is_none()) return "None";
    return std::string(v.type_name()) + " object";
  }

  static std::optional<int64_t> py_index(int64_t i, size_t size) {
    if (i < 0) i += static_cast<int64_t>(size);
    if (i < 0 || i >= static_cast<int64_t>(size)) return std::nullopt;
    return i;
  }

  Value get_item(const Value& obj, const Value& key, size_t pos) const {
    defined(obj, pos);
    if ((obj.is_array() || obj.is_string()) &&
        (key.kind() == Value::Kind::Int || key.kind() == Value::Kind::Bool)) {
      if (obj.is_array()) {
        auto i = py_index(key.as_int(), obj.as_array().size());
        if (i) return obj.as_array()[*i];
      } else {
        std::vector<uint32_t> cps = code_points(obj.as_string());
        auto i = py_index(key.as_int(), cps.size());
        if (i) return Value(utf8(cps, *i, *i + 1));
      }
      return Value::undefined(format("'{}' has no element {}", object_label(obj), key.as_int()));
    }
    if (obj.is_object() && key.is_string()) return get_attribute(obj, key.as_string(), pos);
    if (key.is_undefined()) undefined_error(pos, key);
    return Value::undefined(format("'{}' has no attribute {}", object_label(obj), key.repr()));
  }

  Value slice(const Expr& e) {
    Value obj = defined(eval(*e.args[0]), e.pos);
    std::optional<int64_t> bound[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      Value b = eval(*e.args[k + 1]);
      if (b.is_none()) continue;
      if (b.kind() != Value::Kind::Int && b.kind() != Value::Kind::Bool)
        error(e.args[k + 1]->pos, "slice indices must be integers or None");
      bound[k] = b.as_int();
    }
    const int64_t step = bound[2].value_or(1);
    if (step == 0) error(e.pos, "slice step cannot be zero");
    auto pick = [&](size_t size) {
      // Python's slice.indices()
      const int64_t n = static_cast<int64_t>(size);
      auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
        if (!v) return fallback;
        int64_t x = *v < 0 ? *v + n : *v;
        if (step > 0) return std::clamp<int64_t>(x, 0, n);
        return std::clamp<int64_t>(x, -1, n - 1);
      };
      int64_t start = clamp(bound[0], step > 0 ? 0 : n - 1), stop = clamp(bound[1], step > 0 ? n : -1);
      std::vector<size_t> idx;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        idx.push_back(static_cast<size_t>(i));
        if (__builtin_add_overflow(i, step, &i)) break;
      }
      return idx;
    };
    if (obj.is_array()) {
      Array out;
      for (size_t i : pick(obj.as_array().size())) out.push_back(obj.as_array()[i]);
      return Value(std::move(out), obj.is_tuple());
    }
    if (obj.is_string()) {
      std::vector<uint32_t> cps = code_points(obj.as_string()), out;
      for (size_t i : pick(cps.size())) out.push_back(cps[i]);
      return Value(utf8(out));
    }
    error(e.pos, format("'{}' object is not subscriptable", obj.type_name()));
  }

  // ---- operators

  [[noreturn]] void operand_error(const std::string& op, const Value& a, const Value& b, size_t pos) const {
    if (a.is_undefined()) undefined_error(pos, a);
    if (b.is_undefined()) undefined_error(pos, b);
    error(pos, format("unsupported operand types for {}: '{}' and '{}'", op, a.type_name(), b.type_name()));
  }

  static bool numeric(const Value& v) { return v.is_number() || v.kind() == Value::Kind::Bool; }

  // 64-bit integer arithmetic that fails where Python's unbounded integers would go on.
  int64_t checked(int64_t a, int64_t b, char op, size_t pos) const {
    int64_t r = 0;
    const bool overflow = op == '+'   ? __builtin_add_overflow(a, b, &r)
                          : op == '-' ? __builtin_sub_overflow(a, b, &r)
                                      : __builtin_mul_overflow(a, b, &r);
    if (overflow) error(pos, "integer overflow: Co-Encoder's Jinja integers are 64-bit");
    return r;
  }

  Value binary(const std::string& op, const Value& a, const Value& b, size_t pos) const {
    if (op == "~") return Value(a.str() + b.str());
    const bool both_int = (a.kind() == Value::Kind::Int || a.kind() == Value::Kind::Bool) &&
                          (b.kind() == Value::Kind::Int || b.kind() == Value::Kind::Bool);
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
      if (a.is_array() && b.is_array() && a.is_tuple() == b.is_tuple()) {
        Array out = a.as_array();
        out.insert(out.end(), b.as_array().begin(), b.as_array().end());
        return Value(std::move(out), a.is_tuple());
      }
    }
    if (op == "*") {
      const Value* seq = a.is_string() || a.is_array() ? &a : b.is_string() || b.is_array() ? &b : nullptr;
      const Value* count = seq == &a ? &b : &a;
      if (seq && (count->kind() == Value::Kind::Int || count->kind() == Value::Kind::Bool)) {
        const int64_t n = std::max<int64_t>(0, count->as_int());
        const size_t unit = seq->is_string() ? seq->as_string().size() : seq->as_array().size();
        if (unit > 0 && static_cast<uint64_t>(n) > kMaxItems / unit)
          error(pos, format("the repetition makes more than {} items or bytes", kMaxItems));
        if (seq->is_string()) {
          std::string out;
          for (int64_t k = 0; k < n; ++k) out += seq->as_string();
          return Value(std::move(out));
        }
        Array out;
        for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq->as_array().begin(), seq->as_array().end());
        return Value(std::move(out), seq->is_tuple());
      }
    }
    if (!numeric(a) || !numeric(b)) operand_error(op, a, b, pos);
    const double x = a.as_float(), y = b.as_float();
    if (op == "+") return both_int ? Value(checked(a.as_int(), b.as_int(), '+', pos)) : Value(x + y);
    if (op == "-") return both_int ? Value(checked(a.as_int(), b.as_int(), '-', pos)) : Value(x - y);
    if (op == "*") return both_int ? Value(checked(a.as_int(), b.as_int(), '*', pos)) : Value(x * y);
    if (op == "**") {
      if (both_int && b.as_int() >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < b.as_int() && r != 0; ++k) r = checked(r, a.as_int(), '*', pos);
        return Value(r);
      }
      return Value(std::pow(x, y));
    }
    if (y == 0) error(pos, op == "/" ? "division by zero" : "integer division or modulo by zero");
    if (op == "/") return Value(x / y);
    if ((op == "//" || op == "%") && both_int && b.as_int() == -1 && a.as_int() == INT64_MIN)
      error(pos, "integer overflow: Co-Encoder's Jinja integers are 64-bit");
    if (op == "//") {
      if (both_int) {
        int64_t q = a.as_int() / b.as_int();
        if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
        return Value(q);
      }
      return Value(std::floor(x / y));
    }
    if (op == "%") {
      if (both_int) {
        int64_t r = a.as_int() % b.as_int();
        if (r != 0 && ((r < 0) != (b.as_int() < 0))) r += b.as_int();
        return Value(r);
      }
      double r = std::fmod(x, y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value(r);
    }
    error(pos, "unknown operator " + op);
  }

  // Python's <, for the comparisons and sort: numbers, strings, and lists of them.
  int order(const Value& a, const Value& b, size_t pos, const char* op) const {
    if (numeric(a) && numeric(b)) {
      double x = a.as_float(), y = b.as_float();
      if (a.kind() != Value::Kind::Float && b.kind() != Value::Kind::Float)
        return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
      return x < y ? -1 : x > y;
    }
    if (a.is_string() && b.is_string())
      return a.as_string().compare(b.as_string()) < 0 ? -1 : a.as_string() != b.as_string();
    if (a.is_array() && b.is_array()) {
      const Array &x = a.as_array(), &y = b.as_array();
      for (size_t k = 0; k < std::min(x.size(), y.size()); ++k) {
        if (x[k] == y[k]) continue;
        return order(x[k], y[k], pos, op);
      }
      return x.size() < y.size() ? -1 : x.size() > y.size();
    }
    if (a.is_undefined()) undefined_error(pos, a);
    if (b.is_undefined()) undefined_error(pos, b);
    error(pos,
          format("'{}' not supported between instances of '{}' and '{}'", op, a.type_name(), b.type_name()));
  }

  bool contains(const Value& container, const Value& item, size_t pos) const {
    switch (container.kind()) {
      case Value::Kind::Undefined:
        return false;
      case Value::Kind::String:
        if (!item.is_string())
          error(pos, format("'in <string>' requires string as left operand, not {}", item.type_name()));
        return container.as_string().find(item.as_string()) != std::string::npos;
      case Value::Kind::Array:
        return std::find(container.as_array().begin(), container.as_array().end(), item) !=
               container.as_array().end();
      case Value::Kind::Object:
        return item.is_string() && container.find(item.as_string()) != nullptr;
      default:
        error(pos, format("argument of type '{}' is not iterable", container.type_name()));
    }
  }

  bool compare(const std::string& op, const Value& a, const Value& b, size_t pos) const {
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "in") return contains(b, a, pos);
    if (op == "not in") return !contains(b, a, pos);
    const int c = order(a, b, pos, op.c_str());
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  // ---- functions and methods

  static bool is_global_function(const std::string& name) {
    return name == "raise_exception" || name == "strftime_now" || name == "namespace" || name == "range" ||
           name == "dict";
  }
  static Value function_value(const std::string& name) {
    // Functions are only ever called or tested for definedness: a dict marks one.
    return Value::make_namespace({{"__function__", Value(name)}});
  }
  static const Value* function_name(const Value& v) {
    return v.is_namespace() ? v.find("__function__") : nullptr;
  }
  static const Value* macro_index(const Value& v) { return v.is_namespace() ? v.find("__macro__") : nullptr; }

  // Calls a macro: its body renders in a scope of its own that sees the template's top level and its
  // parameters (not the caller's loop variables), and returns the text.
  Value call_macro(const Node& macro, const Args& a, size_t pos) {
    if (a.positional.size() > macro.targets.size())
      error(pos, format("macro '{}' takes not more than {} argument(s)", macro.text, macro.targets.size()));
    std::unordered_map<std::string, Value> frame;
    for (const auto& [key, value] : a.keyword) {
      const std::string& name = key;  // C++17 lambdas cannot capture a structured binding (clang refuses)
      auto it = std::find_if(macro.targets.begin(), macro.targets.end(),
                             [&](const auto& t) { return t.first == name; });
      if (it == macro.targets.end())
        error(pos, format("macro '{}' has no parameter named '{}'", macro.text, key));
      frame[key] = value;
    }
    const size_t saved_visible = visible_;
    scopes_.emplace_back();
    visible_ = scopes_.size() - 1;
    for (size_t k = 0; k < macro.targets.size(); ++k) {
      const std::string& param = macro.targets[k].first;
      Value v = k < a.positional.size() ? a.positional[k] : frame.count(param) ? frame[param] : Value();
      if (k < a.positional.size() && frame.count(param))
        error(pos, format("macro '{}' got multiple values for parameter '{}'", macro.text, param));
      if (v.is_undefined())
        v = macro.defaults[k] ? eval(*macro.defaults[k])
                              : Value::undefined(format("parameter '{}' was not provided", param));
      scopes_.back()[param] = std::move(v);
    }
    std::string saved_out = std::move(out_);
    out_.clear();
    exec(macro.body);
    std::string text = std::move(out_);
    out_ = std::move(saved_out);
    scopes_.pop_back();
    visible_ = saved_visible;
    return Value(std::move(text));
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == ExprKind::Attr) {
      Value receiver = defined(eval(*callee.args[0]), callee.pos);
      return method(receiver, callee.name, arguments(e, 1), e.pos);
    }
    Value f = eval(callee);
    if (f.is_undefined()) undefined_error(e.pos, f);
    if (const Value* macro = macro_index(f))
      return call_macro(*macros_[macro->as_int()], arguments(e, 1), e.pos);
    const Value* name = function_name(f);
    if (!name) error(e.pos, format("'{}' object is not callable", f.type_name()));
    Args a = arguments(e, 1);
    const std::string& fn = name->as_string();
    if (fn == "raise_exception") {
      fail(ErrorCode::InvalidInput, "{} refused the conversation: {} (raise_exception at line {})", name_,
           arg(a, 0, "message").str(), map_.line(e.pos));
    }
    if (fn == "strftime_now") {
      const std::string fmt = defined(arg(a, 0, "format"), e.pos).str();
      if (options_.strftime_now) return Value(options_.strftime_now(fmt));
      std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &local);
      return Value(std::string(buf, n));
    }
    if (fn == "namespace" || fn == "dict") {
      Object o;
      if (!a.positional.empty()) {
        if (!a.positional[0].is_object()) error(e.pos, fn + "() takes a dict or keyword arguments");
        o = a.positional[0].as_object();
      }
      for (auto& kv : a.keyword) o.push_back(std::move(kv));
      return fn == "namespace" ? Value::make_namespace(std::move(o)) : Value(std::move(o));
    }
    // range
    std::vector<int64_t> ints;
    for (const Value& v : a.positional) {
      if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool)
        error(e.pos, "range() takes integers");
      ints.push_back(v.as_int());
    }
    if (ints.empty() || ints.size() > 3) error(e.pos, "range() takes 1 to 3 arguments");
    int64_t start = ints.size() > 1 ? ints[0] : 0, stop = ints.size() > 1 ? ints[1] : ints[0];
    int64_t step = ints.size() > 2 ? ints[2] : 1;
    if (step == 0) error(e.pos, "range() arg 3 must not be zero");
    Array out;
    const double count =
        std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
    if (count > 100000)  // jinja2's sandbox (MAX_RANGE)
      error(e.pos, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      out.emplace_back(i);
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return Value(std::move(out));
  }

  std::optional<std::string> optional_string(const Args& a, size_t index, const char* name,
                                             size_t pos) const {
    Value v = arg(a, index, name, Value(nullptr));
    if (v.is_none()) return std::nullopt;
    if (!v.is_string()) error(pos, format("{}: expected a string argument, got {}", name, v.type_name()));
    return v.as_string();
  }

  Value method(const Value& self, const std::string& name, const Args& a, size_t pos) const {
    if (self.is_string()) {
      const std::string& s = self.as_string();
      if (name == "strip" || name == "lstrip" || name == "rstrip")
        return Value(py_strip(s, optional_string(a, 0, "chars", pos), name != "rstrip", name != "lstrip"));
      if (name == "startswith" || name == "endswith") {
        Value what = arg(a, 0, "prefix");
        std::vector<Value> options = what.is_array() ? what.as_array() : std::vector<Value>{what};
        for (const Value& o : options) {
          if (!o.is_string()) error(pos, format("{} takes a string or a tuple of strings", name));
          const std::string& x = o.as_string();
          if (name == "startswith" ? s.compare(0, x.size(), x) == 0
                                   : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
            return Value(true);
        }
        return Value(false);
      }
      if (name == "split" || name == "rsplit") return split(s, a, name == "rsplit", pos);
      if (name == "upper" || name == "lower") return Value(map_case(s, name == "upper"));
      if (name == "title") return Value(title(s));
      if (name == "capitalize") return Value(capitalize(s));
      if (name == "replace") {
        auto from = optional_string(a, 0, "old", pos), to = optional_string(a, 1, "new", pos);
        if (!from || !to) error(pos, "replace() takes two strings");
        return Value(replace_all(s, *from, *to, arg(a, 2, "count", Value(-1)).as_int()));
      }
      if (name == "find" || name == "rfind" || name == "count" || name == "index") {
        auto sub = optional_string(a, 0, "sub", pos);
        if (!sub) error(pos, name + "() takes a string");
        if (name == "count") {
          if (sub->empty()) return Value(static_cast<int64_t>(code_point_count(s) + 1));
          int64_t n = 0;
          for (size_t at = s.find(*sub); at != std::string::npos; at = s.find(*sub, at + sub->size())) ++n;
          return Value(n);
        }
        size_t at = name == "rfind" ? s.rfind(*sub) : s.find(*sub);
        if (at == std::string::npos) {
          if (name == "index") error(pos, "substring not found");
          return Value(-1);
        }
        return Value(static_cast<int64_t>(code_point_count(std::string_view(s).substr(0, at))));
      }
      if (name == "join") {
        std::string out;
        std::vector<Value> items = iterate(arg(a, 0, "iterable"), pos);
        for (size_t k = 0; k < items.size(); ++k) {
          if (!items[k].is_string()) error(pos, format("sequence item {}: expected str instance", k));
          out += (k ? s : "") + items[k].as_string();
        }
        return Value(std::move(out));
      }
      if (name == "splitlines") {
        Array out;
        size_t at = 0;
        while (at < s.size()) {
          size_t nl = s.find('\n', at);
          out.emplace_back(s.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
          if (nl == std::string::npos) break;
          at = nl + 1;
        }
        return Value(std::move(out));
      }
      if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isupper" ||
          name == "islower") {
        std::vector<uint32_t> cps = code_points(s);
        bool all = !cps.empty();
        for (uint32_t c : cps) {
          auto cp = static_cast<utf8proc_int32_t>(c);
          if (name == "isdigit") all = all && c >= '0' && c <= '9';
          if (name == "isspace") all = all && is_py_space(c);
          if (name == "isalpha")
            all = all && utf8proc_category(cp) >= UTF8PROC_CATEGORY_LU &&
                  utf8proc_category(cp) <= UTF8PROC_CATEGORY_LO;
          if (name == "isupper") all = all && utf8proc_toupper(cp) == cp;
          if (name == "islower") all = all && utf8proc_tolower(cp) == cp;
        }
        return Value(all);
      }
    } else if (self.is_object() && !self.is_namespace()) {
      if (name == "items") {
        Array out;
        for (const auto& [k, v] : self.as_object()) out.emplace_back(Array{Value(k), v}, true);
        return Value(std::move(out));
      }
      if (name == "keys" || name == "values") {
        Array out;
        for (const auto& [k, v] : self.as_object()) out.push_back(name == "keys" ? Value(k) : v);
        return Value(std::move(out));
      }
      if (name == "get") {
        Value key = arg(a, 0, "key");
        const Value* v = key.is_string() ? self.find(key.as_string()) : nullptr;
        return v ? *v : arg(a, 1, "default", Value(nullptr));
      }
    } else if (self.is_array() &&
               (name == "append" || name == "extend" || name == "pop" || name == "insert" ||
                name == "remove" || name == "clear" || name == "sort" || name == "reverse")) {
      // transformers renders in jinja2's ImmutableSandboxedEnvironment, which refuses these.
      error(pos, format("access to attribute '{}' of 'list' object is unsafe", name));
    }
    if (self.is_object()) {
      if (const Value* f = self.find(name)) {
        if (const Value* fn = function_name(*f))
          error(pos, "calling " + fn->as_string() + " through an attribute is not supported");
      }
    }
    error(pos, format("'{}' has no method '{}' in Co-Encoder's Jinja subset", object_label(self), name));
  }

  Value split(const std::string& s, const Args& a, bool from_right, size_t pos) const {
    auto sep = optional_string(a, 0, "sep", pos);
    int64_t max = arg(a, 1, "maxsplit", Value(-1)).as_int();
    std::vector<std::string> parts;
    if (sep) {
      if (sep->empty()) error(pos, "empty separator");
      if (!from_right) {
        size_t at = 0;
        for (int64_t n = 0; max < 0 || n < max; ++n) {
          size_t next = s.find(*sep, at);
          if (next == std::string::npos) break;
          parts.push_back(s.substr(at, next - at));
          at = next + sep->size();
        }
        parts.push_back(s.substr(at));
      } else {
        size_t end = s.size();
        for (int64_t n = 0; max < 0 || n < max; ++n) {
          if (end < sep->size()) break;
          size_t next = s.rfind(*sep, end - sep->size());
          if (next == std::string::npos) break;
          parts.push_back(s.substr(next + sep->size(), end - next - sep->size()));
          end = next;
        }
        parts.push_back(s.substr(0, end));
        std::reverse(parts.begin(), parts.end());
      }
    } else {
      // Runs of whitespace separate; leading and trailing whitespace gives no empty parts.
      std::vector<uint32_t> cps = code_points(s);
      if (from_right) std::reverse(cps.begin(), cps.end());
      size_t i = 0;
      int64_t n = 0;
      while (true) {
        while (i < cps.size() && is_py_space(cps[i])) ++i;
        if (i >= cps.size()) break;
        if (max >= 0 && n == max) {  // the rest keeps its trailing whitespace, as Python's
          std::vector<uint32_t> rest(cps.begin() + i, cps.end());
          if (from_right) std::reverse(rest.begin(), rest.end());
          parts.push_back(utf8(rest));
          break;
        }
        size_t b = i;
        while (i < cps.size() && !is_py_space(cps[i])) ++i;
        std::vector<uint32_t> word(cps.begin() + b, cps.begin() + i);
        if (from_right) std::reverse(word.begin(), word.end());
        parts.push_back(utf8(word));
        ++n;
      }
      if (from_right) std::reverse(parts.begin(), parts.end());
    }
    Array out;
    for (auto& p : parts) out.emplace_back(std::move(p));
    return Value(std::move(out));
  }

  static std::string capitalize(const std::string& s) {
    std::vector<uint32_t> cps = code_points(s);
    std::string out;
    for (size_t i = 0; i < cps.size(); ++i) {
      auto cp = static_cast<utf8proc_int32_t>(cps[i]);
      tok::append_utf8(static_cast<uint32_t>(i == 0 ? utf8proc_toupper(cp) : utf8proc_tolower(cp)), out);
    }
    return out;
  }

  // jinja2's title filter: the first letter of each word upper case, the rest lower case.
  static std::string title(const std::string& s) {
    std::string out;
    bool start = true;
    for (uint32_t c : code_points(s)) {
      auto cp = static_cast<utf8proc_int32_t>(c);
      tok::append_utf8(static_cast<uint32_t>(start ? utf8proc_toupper(cp) : utf8proc_tolower(cp)), out);
      start = is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || c == '_';
    }
    return out;
  }

  // ---- filters

  // json.dumps as transformers' tojson calls it.
  void to_json(const Value& v, std::string& out, const std::optional<std::string>& indent, int level,
               bool ensure_ascii, const std::string& item_sep, const std::string& key_sep, bool sort_keys,
               size_t pos) const {
    auto newline = [&](int depth) {
      out += '\n';
      for (int k = 0; k < depth; ++k) out += *indent;
    };
    switch (v.kind()) {
      case Value::Kind::None:
        out += "null";
        return;
      case Value::Kind::Bool:
        out += v.as_bool() ? "true" : "false";
        return;
      case Value::Kind::Int:
        out += std::to_string(v.as_int());
        return;
      case Value::Kind::Float: {
        double d = v.as_float();
        out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : float_repr(d);
        return;
      }
      case Value::Kind::String:
        out += '"';
        for (uint32_t c : code_points(v.as_string())) {
          switch (c) {
            case '"':
              out += "\\\"";
              break;
            case '\\':
              out += "\\\\";
              break;
            case '\n':
              out += "\\n";
              break;
            case '\r':
              out += "\\r";
              break;
            case '\t':
              out += "\\t";
              break;
            case '\b':
              out += "\\b";
              break;
            case '\f':
              out += "\\f";
              break;
            default: {
              char buf[16];
              if (c < 0x20 || (ensure_ascii && c > 0x7E)) {
                if (c > 0xFFFF) {
                  uint32_t x = c - 0x10000;
                  std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF));
                } else {
                  std::snprintf(buf, sizeof buf, "\\u%04x", c);
                }
                out += buf;
              } else {
                tok::append_utf8(c, out);
              }
            }
          }
        }
        out += '"';
        return;
      case Value::Kind::Array: {
        if (v.as_array().empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (size_t k = 0; k < v.as_array().size(); ++k) {
          if (k) out += item_sep;
          if (indent) newline(level + 1);
          to_json(v.as_array()[k], out, indent, level + 1, ensure_ascii, item_sep, key_sep, sort_keys, pos);
        }
        if (indent) newline(level);
        out += ']';
        return;
      }
      case Value::Kind::Object: {
        if (v.is_namespace()) break;
        if (v.as_object().empty()) {
          out += "{}";
          return;
        }
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : v.as_object()) items.push_back(&kv);
        if (sort_keys)
          std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (size_t k = 0; k < items.size(); ++k) {
          if (k) out += item_sep;
          if (indent) newline(level + 1);
          to_json(Value(items[k]->first), out, indent, level + 1, ensure_ascii, item_sep, key_sep, sort_keys,
                  pos);
          out += key_sep;
          to_json(items[k]->second, out, indent, level + 1, ensure_ascii, item_sep, key_sep, sort_keys, pos);
        }
        if (indent) newline(level);
        out += '}';
        return;
      }
      default:
        break;
    }
    error(pos, format("Object of type {} is not JSON serializable", v.type_name()));
  }

  // attribute="a.b" of a value, as jinja2's make_attrgetter (dots walk into dicts, digits index lists).
  Value attribute_path(const Value& v, const std::string& path, size_t pos) const {
    Value cur = v;
    size_t at = 0;
    while (true) {
      size_t dot = path.find('.', at);
      std::string part = path.substr(at, dot == std::string::npos ? std::string::npos : dot - at);
      if (cur.is_undefined()) return cur;
      if (!part.empty() && std::all_of(part.begin(), part.end(), is_digit))
        cur = get_item(cur, Value(static_cast<int64_t>(std::stoll(part))), pos);
      else
        cur = get_attribute(cur, part, pos);
      if (dot == std::string::npos) return cur;
      at = dot + 1;
    }
  }

  Value filter(const Expr& e) {
    Value v = eval(*e.args[0]);
    Args a = arguments(e, 1);
    const std::string& f = e.name;
    const size_t pos = e.pos;
    if (f == "default" || f == "d") {
      bool use_default = v.is_undefined() || (arg(a, 1, "boolean", Value(false)).truthy() && !v.truthy());
      return use_default ? arg(a, 0, "default_value", Value("")) : v;
    }
    if (f == "length" || f == "count") {
      switch (v.kind()) {
        case Value::Kind::Undefined:
          return Value(0);
        case Value::Kind::String:
          return Value(static_cast<int64_t>(code_point_count(v.as_string())));
        case Value::Kind::Array:
          return Value(static_cast<int64_t>(v.as_array().size()));
        case Value::Kind::Object:
          return Value(static_cast<int64_t>(v.as_object().size()));
        default:
          error(pos, format("object of type '{}' has no len()", v.type_name()));
      }
    }
    if (f == "string") return Value(v.str());
    if (f == "trim") return Value(py_strip(v.str(), optional_string(a, 0, "chars", pos), true, true));
    if (f == "upper" || f == "lower") return Value(map_case(v.str(), f == "upper"));
    if (f == "capitalize") return Value(capitalize(v.str()));
    if (f == "title") return Value(title(v.str()));
    if (f == "safe") return v;
    if (f == "escape" || f == "e") {
      std::string out;
      for (char c : v.str()) {
        switch (c) {
          case '&':
            out += "&amp;";
            break;
          case '<':
            out += "&lt;";
            break;
          case '>':
            out += "&gt;";
            break;
          case '"':
            out += "&#34;";
            break;
          case '\'':
            out += "&#39;";
            break;
          default:
            out += c;
        }
      }
      return Value(std::move(out));
    }
    if (f == "tojson") {
      // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
      Value indent = arg(a, 1, "indent", Value(nullptr));
      std::optional<std::string> ind;
      if (indent.kind() == Value::Kind::Int)
        ind = std::string(static_cast<size_t>(std::max<int64_t>(0, indent.as_int())), ' ');
      else if (indent.is_string())
        ind = indent.as_string();
      else if (!indent.is_none())
        error(pos, "tojson: indent must be an integer or a string");
      std::string item_sep = ind ? "," : ", ", key_sep = ": ";
      Value separators = arg(a, 2, "separators", Value(nullptr));
      if (!separators.is_none()) {
        if (!separators.is_array() || separators.as_array().size() != 2 ||
            !separators.as_array()[0].is_string() || !separators.as_array()[1].is_string())
          error(pos, "tojson: separators must be a pair of strings");
        item_sep = separators.as_array()[0].as_string();
        key_sep = separators.as_array()[1].as_string();
      }
      std::string out;
      to_json(v, out, ind, 0, arg(a, 0, "ensure_ascii", Value(false)).truthy(), item_sep, key_sep,
              arg(a, 3, "sort_keys", Value(false)).truthy(), pos);
      return Value(std::move(out));
    }
    if (f == "first" || f == "last") {
      std::vector<Value> items = iterate(v, pos);
      if (items.empty()) return Value::undefined(format("No {} item, sequence was empty.", f));
      return f == "first" ? items.front() : items.back();
    }
    if (f == "list") return Value(iterate(v, pos));
    if (f == "reverse") {
      if (v.is_string()) {
        std::vector<uint32_t> cps = code_points(v.as_string());
        std::reverse(cps.begin(), cps.end());
        return Value(utf8(cps));
      }
      std::vector<Value> items = iterate(v, pos);
      std::reverse(items.begin(), items.end());
      return Value(std::move(items));
    }
    if (f == "join") {
      std::string sep = arg(a, 0, "d", Value("")).str(), out;
      Value attribute = arg(a, 1, "attribute", Value(nullptr));
      std::vector<Value> items = iterate(v, pos);
      for (size_t k = 0; k < items.size(); ++k) {
        const Value item = attribute.is_none() ? items[k] : attribute_path(items[k], attribute.str(), pos);
        out += (k ? sep : "") + item.str();
      }
      return Value(std::move(out));
    }
    if (f == "replace") {
      auto from = optional_string(a, 0, "old", pos), to = optional_string(a, 1, "new", pos);
      if (!from || !to) error(pos, "replace takes two strings");
      Value count = arg(a, 2, "count", Value(nullptr));
      return Value(replace_all(v.str(), *from, *to, count.is_none() ? -1 : count.as_int()));
    }
    if (f == "int" || f == "float") {
      Value fallback = arg(a, 0, "default", f == "int" ? Value(0) : Value(0.0));
      double d;
      if (numeric(v)) {
        d = v.as_float();
        if (f == "int" && v.kind() != Value::Kind::Float) return Value(v.as_int());
      } else if (v.is_string()) {
        std::string s = py_strip(v.as_string(), std::nullopt, true, true);
        char* end = nullptr;
        d = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) return fallback;
      } else {
        return fallback;
      }
      if (f == "float") return Value(d);
      if (!(std::fabs(d) < 9.2e18)) return fallback;  // NaN, infinities and beyond 64 bits
      return Value(static_cast<int64_t>(std::trunc(d)));
    }
    if (f == "abs") {
      if (!numeric(defined(v, pos))) error(pos, format("bad operand type for abs(): '{}'", v.type_name()));
      if (v.kind() == Value::Kind::Float) return Value(std::fabs(v.as_float()));
      return Value(v.as_int() < 0 ? checked(0, v.as_int(), '-', pos) : v.as_int());
    }
    if (f == "round") {
      if (!numeric(defined(v, pos))) error(pos, "round takes a number");
      const int64_t precision = arg(a, 0, "precision", Value(0)).as_int();
      const std::string method = arg(a, 1, "method", Value("common")).str();
      const double scale = std::pow(10.0, static_cast<double>(precision)), x = v.as_float() * scale;
      double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::nearbyint(x);
      return Value(r / scale);
    }
    if (f == "items") {
      if (v.is_undefined()) return Value(Array{});
      if (!v.is_object()) error(pos, "items takes a dict");
      return method(v, "items", {}, pos);
    }
    if (f == "dictsort") {
      if (!v.is_object()) error(pos, "dictsort takes a dict");
      Array items = method(v, "items", {}, pos).as_array();
      const bool by_value = arg(a, 1, "by", Value("key")).str() == "value";
      const bool case_sensitive = arg(a, 0, "case_sensitive", Value(false)).truthy();
      sort_values(items, pos, case_sensitive, arg(a, 2, "reverse", Value(false)).truthy(),
                  [&](const Value& x) { return x.as_array()[by_value ? 1 : 0]; });
      return Value(std::move(items));
    }
    if (f == "sort") {
      std::vector<Value> items = iterate(v, pos);
      Value attribute = arg(a, 2, "attribute", Value(nullptr));
      sort_values(items, pos, arg(a, 1, "case_sensitive", Value(false)).truthy(),
                  arg(a, 0, "reverse", Value(false)).truthy(), [&](const Value& x) {
                    return attribute.is_none() ? x : attribute_path(x, attribute.str(), pos);
                  });
      return Value(std::move(items));
    }
    if (f == "unique") {
      std::vector<Value> out;
      for (const Value& x : iterate(v, pos)) {
        auto key = [&](const Value& y) { return y.is_string() ? Value(map_case(y.as_string(), false)) : y; };
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return key(o) == key(x); }))
          out.push_back(x);
      }
      return Value(std::move(out));
    }
    if (f == "min" || f == "max") {
      std::vector<Value> items = iterate(v, pos);
      if (items.empty()) return Value::undefined(format("No aggregated item, sequence was empty."));
      sort_values(items, pos, false, false, [](const Value& x) { return x; });
      return f == "min" ? items.front() : items.back();
    }
    if (f == "sum") {
      Value total = arg(a, 1, "start", Value(0));
      Value attribute = arg(a, 0, "attribute", Value(nullptr));
      for (const Value& x : iterate(v, pos))
        total = binary("+", total, attribute.is_none() ? x : attribute_path(x, attribute.str(), pos), pos);
      return total;
    }
    if (f == "wordcount")
      return Value(static_cast<int64_t>(split(v.str(), {}, false, pos).as_array().size()));
    if (f == "indent") {
      Value width = arg(a, 0, "width", Value(4));
      std::string pad =
          width.is_string() ? width.as_string() : std::string(static_cast<size_t>(width.as_int()), ' ');
      const bool first = arg(a, 1, "first", Value(false)).truthy(),
                 blank = arg(a, 2, "blank", Value(false)).truthy();
      std::string s = v.str(), out;
      size_t at = 0;
      for (bool head = true;; head = false) {
        size_t nl = s.find('\n', at);
        std::string line = s.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
        const bool is_blank = py_strip(line, std::nullopt, true, true).empty();
        if ((head ? first : true) && (blank || !is_blank)) out += pad;
        out += line;
        if (nl == std::string::npos) break;
        out += '\n';
        at = nl + 1;
      }
      return Value(std::move(out));
    }
    if (f == "attr") return get_attribute(v, arg(a, 0, "name").str(), pos);
    if (f == "map") {
      std::vector<Value> out;
      Value attribute = arg(a, 99, "attribute", Value(nullptr));
      if (!attribute.is_none()) {
        Value fallback = arg(a, 99, "default");
        for (const Value& x : iterate(v, pos)) {
          Value y = attribute_path(x, attribute.str(), pos);
          out.push_back(y.is_undefined() && !fallback.is_undefined() ? fallback : y);
        }
        return Value(std::move(out));
      }
      if (a.positional.empty() || !a.positional[0].is_string())
        error(pos, "map takes a filter name or attribute=");
      const std::string name = a.positional[0].as_string();
      if (!known(kFilters, name)) error(pos, "map: unsupported filter '" + name + "'");
      for (const Value& x : iterate(v, pos)) out.push_back(apply_filter(name, x, a, 1, pos));
      return Value(std::move(out));
    }
    if (f == "select" || f == "reject" || f == "selectattr" || f == "rejectattr") {
      const bool by_attribute = f == "selectattr" || f == "rejectattr",
                 keep_if = f == "select" || f == "selectattr";
      const size_t first_test_arg = by_attribute ? 1 : 0;
      std::optional<std::string> test_name;
      if (a.positional.size() > first_test_arg) {
        if (!a.positional[first_test_arg].is_string()) error(pos, f + ": the test name must be a string");
        test_name = a.positional[first_test_arg].as_string();
        if (!known(kTests, *test_name)) error(pos, f + ": unsupported test '" + *test_name + "'");
      }
      Args test_args;
      for (size_t k = first_test_arg + 1; k < a.positional.size(); ++k)
        test_args.positional.push_back(a.positional[k]);
      std::vector<Value> out;
      for (const Value& x : iterate(v, pos)) {
        Value subject = by_attribute ? attribute_path(x, arg(a, 0, "attribute").str(), pos) : x;
        bool ok = test_name ? test(*test_name, subject, test_args, pos) : subject.truthy();
        if (ok == keep_if) out.push_back(x);
      }
      return Value(std::move(out));
    }
    error(pos, "unsupported filter '" + f + "'");
  }

  // A filter applied by map(): the arguments after the filter name are its arguments.
  Value apply_filter(const std::string& name, const Value& v, const Args& a, size_t skip, size_t pos) {
    Expr e;
    e.kind = ExprKind::Filter;
    e.pos = pos;
    e.name = name;
    auto operand = std::make_unique<Expr>();
    operand->kind = ExprKind::Literal;
    operand->literal = v;
    e.args.push_back(std::move(operand));
    for (size_t k = skip; k < a.positional.size(); ++k) {
      auto x = std::make_unique<Expr>();
      x->kind = ExprKind::Literal;
      x->literal = a.positional[k];
      e.args.push_back(std::move(x));
    }
    return filter(e);
  }

  template <typename Key>
  void sort_values(std::vector<Value>& items, size_t pos, bool case_sensitive, bool reverse, Key key) const {
    auto prepared = [&](const Value& x) {
      Value k = key(x);
      return !case_sensitive && k.is_string() ? Value(map_case(k.as_string(), false)) : k;
    };
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      int c = order(prepared(x), prepared(y), pos, "<");
      return reverse ? c > 0 : c < 0;
    });
  }

  // ---- tests

  bool test(const std::string& name, const Value& v, const Args& a, size_t pos) const {
    using K = Value::Kind;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number() || v.kind() == K::Bool;
    if (name == "integer") return v.kind() == K::Int;
    if (name == "float") return v.kind() == K::Float;
    if (name == "boolean") return v.kind() == K::Bool;
    if (name == "true") return v.kind() == K::Bool && v.as_bool();
    if (name == "false") return v.kind() == K::Bool && !v.as_bool();
    if (name == "mapping") return v.is_object() && !v.is_namespace();
    if (name == "callable") return function_name(v) != nullptr || macro_index(v) != nullptr;
    // Undefined iterates as empty and has a length, as jinja2's Undefined does.
    if (name == "iterable" || name == "sequence")
      return v.is_undefined() || v.is_string() || v.is_array() || (v.is_object() && !v.is_namespace());
    if (name == "escaped") return false;
    if (name == "lower" || name == "upper")
      return v.is_string() && map_case(v.as_string(), name == "upper") == v.as_string();
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.kind() != K::Int && v.kind() != K::Bool) error(pos, "the test '" + name + "' takes an integer");
      if (name == "divisibleby") {
        int64_t d = arg(a, 0, "num").as_int();
        if (d == 0) error(pos, "integer division or modulo by zero");
        return v.as_int() % d == 0;
      }
      return (v.as_int() % 2 != 0) == (name == "odd");
    }
    Value other = arg(a, 0, "other");
    if (name == "sameas") {
      if (v.is_none() || v.kind() == K::Bool) return v.kind() == other.kind() && v.as_int() == other.as_int();
      return v == other && v.kind() == other.kind();
    }
    if (name == "in") return contains(other, v, pos);
    if (name == "equalto" || name == "eq" || name == "==") return v == other;
    if (name == "ne" || name == "!=") return v != other;
    if (name == "lt" || name == "lessthan" || name == "<") return order(v, other, pos, "<") < 0;
    if (name == "le" || name == "<=") return order(v, other, pos, "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return order(v, other, pos, ">") > 0;
    if (name == "ge" || name == ">=") return order(v, other, pos, ">=") >= 0;
    error(pos, "unsupported test '" + name + "'");
  }

  const std::string& name_;
  const SourceMap& map_;
  const RenderOptions& options_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  size_t visible_ = 0;               // in a macro: the first scope it sees besides the top level (scopes_[0])
  std::vector<const Node*> macros_;  // the macros defined so far; a macro value holds its index
  std::string out_;
};

// jinja2 reads templates with "\r\n" and "\r" as "\n" and drops one trailing newline (keep_trailing_newline
// off).
std::string normalise_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

// -------------------------------------------------------------------------------------------------- template
struct Template::Impl {
  std::string name, source;
  SourceMap map;
  NodeList body;
  Impl(std::string n, std::string s) : name(std::move(n)), source(std::move(s)), map(source) {}
};

Template::Template(std::string_view source, std::string name) {
  auto impl = std::make_shared<Impl>(std::move(name), normalise_newlines(source));
  impl->body = Parser(Lexer(impl->source, impl->map, impl->name).run(), impl->map, impl->name).parse();
  impl_ = std::move(impl);
}

const std::string& Template::name() const {
  return impl_->name;
}

std::string Template::render(const Object& globals, const RenderOptions& options) const {
  return Renderer(impl_->name, impl_->map, globals, options).run(impl_->body);
}

}  // namespace coenc::jinja
