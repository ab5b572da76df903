#include "tokenizer/pre_tokenizer.h"

#include <array>

#include <utf8proc.h>

#include "coenc/error.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Character classes the patterns test. kOther is [^\s\p{L}\p{N}].
enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kOther = 8 };

uint8_t classify(uint32_t cp) {
  // \s is Unicode White_Space: the Zs/Zl/Zp categories plus U+0009..U+000D and U+0085.
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return kSpace;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return kNumber;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return kSpace;
    default:
      return kOther;
  }
}

const std::array<uint8_t, 128>& ascii_classes() {
  static const std::array<uint8_t, 128> table = [] {
    std::array<uint8_t, 128> t{};
    for (uint32_t c = 0; c < 128; ++c) t[c] = classify(c);
    return t;
  }();
  return table;
}

struct Char {
  uint32_t cp;
  uint32_t offset;  // byte offset in the text
  uint8_t cls;
};

void decode_chars(std::string_view text, std::vector<Char>& chars) {
  const auto& ascii = ascii_classes();
  chars.clear();
  size_t i = 0;
  while (i < text.size()) {
    auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      chars.push_back({b, static_cast<uint32_t>(i), ascii[b]});
      ++i;
      continue;
    }
    int len = utf8_sequence_length(text, i);
    // Callers pass valid UTF-8; a stray byte still gets a piece of its own rather than undefined behaviour.
    uint32_t cp = len > 0 ? decode_code_point(text, i, len) : 0xFFFD;
    chars.push_back({cp, static_cast<uint32_t>(i), len > 0 ? classify(cp) : static_cast<uint8_t>(kOther)});
    i += len > 0 ? len : 1;
  }
}

// Each matcher returns the end (char index, > i) of the match at char index i, following the regex's
// leftmost-first alternation: the first alternative that can match wins, with greedy quantifiers.
class Matcher {
 public:
  explicit Matcher(const std::vector<Char>& c) : c_(c), n_(c.size()) {}

  size_t gpt2(size_t i) const {
    if (size_t e = contraction(i, false)) return e;
    bool space = c_[i].cp == ' ' && i + 1 < n_;
    for (uint8_t cls : {kLetter, kNumber, kOther}) {  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
      if (space && has(i + 1, cls)) return run(i + 1, cls);
      if (has(i, cls)) return run(i, cls);
    }
    return whitespace_tail(i);
  }

  size_t llama3(size_t i, size_t max_digits) const {
    if (size_t e = contraction(i, true)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if ((c_[i].cls & (kLetter | kNumber)) == 0 && !newline(i) && has(i + 1, kLetter))
      return run(i + 1, kLetter);
    if (has(i, kLetter)) return run(i, kLetter);
    // \p{N}{1,max}
    if (has(i, kNumber)) {
      size_t j = i;
      while (j < n_ && j - i < max_digits && has(j, kNumber)) ++j;
      return j;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    size_t k = (c_[i].cp == ' ' && has(i + 1, kOther)) ? i + 1 : i;
    if (has(k, kOther)) {
      size_t j = run(k, kOther);
      while (j < n_ && newline(j)) ++j;
      return j;
    }
    // \s*[\r\n]+: \s* backtracks to the last \r or \n of the whitespace run, which [\r\n]+ then takes.
    size_t j = run(i, kSpace);
    for (size_t k2 = j; k2 > i; --k2) {
      if (newline(k2 - 1)) return k2;
    }
    return whitespace_tail(i);
  }

 private:
  bool has(size_t i, uint8_t cls) const { return i < n_ && (c_[i].cls & cls) != 0; }
  bool newline(size_t i) const { return c_[i].cp == '\r' || c_[i].cp == '\n'; }
  size_t run(size_t i, uint8_t cls) const {
    while (i < n_ && (c_[i].cls & cls) != 0) ++i;
    return i;
  }

  // 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive. Under Unicode case folding 's' also matches
  // U+017F LATIN SMALL LETTER LONG S, which folds to it.
  size_t contraction(size_t i, bool ignore_case) const {
    if (c_[i].cp != '\'' || i + 1 >= n_) return 0;
    auto fold = [&](size_t k) -> uint32_t {
      uint32_t cp = c_[k].cp;
      if (!ignore_case) return cp;
      if (cp >= 'A' && cp <= 'Z') return cp - 'A' + 'a';
      if (cp == 0x17F) return 's';
      return cp;
    };
    uint32_t a = fold(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= n_) return 0;
    uint32_t b = fold(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
  }

  // `\s+(?!\S)|\s+` at a whitespace char: the run, less its last char when a non-space follows and the run
  // has more than one char (that char then starts the next piece, e.g. " word").
  size_t whitespace_tail(size_t i) const {
    size_t j = run(i, kSpace);
    if (j == i) return i + 1;  // unreachable for valid classes; guarantees progress
    return (j == n_ || j - i == 1) ? j : j - 1;
  }

  const std::vector<Char>& c_;
  size_t n_;
};

}  // namespace

bool find_split_pattern(const std::string& regex, SplitPattern& pattern) {
  for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2}) {
    if (regex == split_pattern_regex(p)) {
      pattern = p;
      return true;
    }
  }
  return false;
}

const char* split_pattern_regex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::Gpt2:
      return kGpt2Regex;
    case SplitPattern::Llama3:
      return kLlama3Regex;
    case SplitPattern::Qwen2:
      return kQwen2Regex;
  }
  return kGpt2Regex;
}

void split_by_pattern(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out) {
  thread_local std::vector<Char> chars;
  decode_chars(text, chars);
  Matcher m(chars);
  size_t i = 0, n = chars.size();
  while (i < n) {
    size_t e = pattern == SplitPattern::Gpt2     ? m.gpt2(i)
               : pattern == SplitPattern::Llama3 ? m.llama3(i, 3)
                                                 : m.llama3(i, 1);
    size_t begin = chars[i].offset;
    size_t end = e < n ? chars[e].offset : text.size();
    out.push_back(text.substr(begin, end - begin));
    i = e;
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const JsonPath& where) {
  PreTokenizer out;
  if (!j.is_null()) parse_into(j, where, out);
  return out;
}

void PreTokenizer::parse_into(const nlohmann::json& j, const JsonPath& where, PreTokenizer& out) {
  COENC_CHECK(j.is_object(), "{} must be an object, got {}", where.str(), json_type_name(j));
  std::string type = json_string(j, "type", where);
  if (type == "Sequence") {
    const auto& list = json_array(j, "pretokenizers", where);
    for (size_t k = 0; k < list.size(); ++k) parse_into(list[k], (where / "pretokenizers").at(k), out);
  } else if (type == "ByteLevel") {
    Step s;
    s.is_split = false;
    s.add_prefix_space = json_bool(j, "add_prefix_space", true, where);
    s.use_regex = json_bool(j, "use_regex", true, where);
    s.pattern = SplitPattern::Gpt2;
    out.steps_.push_back(s);
    out.byte_level_ = true;
  } else if (type == "Split") {
    const auto& pat = json_object(j, "pattern", where);
    auto re = pat.find("Regex");
    COENC_CHECK_CODE(re != pat.end() && re->is_string(), Unsupported,
                     "{}: only {\"Regex\": ...} patterns are supported", (where / "pattern").str());
    Step s;
    COENC_CHECK_CODE(
        find_split_pattern(re->get<std::string>(), s.pattern), Unsupported,
        "{} is not a supported split regex (supported: the GPT-2, Llama-3 and Qwen2 patterns), got {}",
        (where / "pattern.Regex").str(), re->get<std::string>());
    std::string behavior = json_string(j, "behavior", where);
    COENC_CHECK_CODE(behavior == "Isolated", Unsupported,
                     "{} \"{}\" is not supported (expected \"Isolated\")", (where / "behavior").str(),
                     behavior);
    COENC_CHECK_CODE(!json_bool(j, "invert", false, where), Unsupported, "{}: invert=true is not supported",
                     (where / "invert").str());
    out.steps_.push_back(s);
  } else {
    fail(ErrorCode::Unsupported, "{} \"{}\" is not supported (supported: ByteLevel, Split, Sequence)",
         (where / "type").str(), type);
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces,
                         std::list<std::string>& storage) const {
  if (steps_.empty()) {
    pieces.push_back(text);
    return;
  }
  thread_local std::vector<std::string_view> current, next;
  current.assign(1, text);
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : current) {
      if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
        storage.push_back(" " + std::string(piece));
        piece = storage.back();
      }
      if (step.use_regex) {
        split_by_pattern(piece, step.pattern, next);
      } else {
        next.push_back(piece);
      }
    }
    current.swap(next);
  }
  pieces.insert(pieces.end(), current.begin(), current.end());
}

}  // namespace coenc::tok
