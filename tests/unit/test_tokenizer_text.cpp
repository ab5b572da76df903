// UTF-8 handling, the byte-level alphabet and the pre-tokenizer splitters.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "coenc/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, SanitizeReplacesMaximalInvalidSubpartsLikePython) {
  EXPECT_EQ(sanitize_utf8("abc"), "abc");
  EXPECT_EQ(sanitize_utf8("a\x80z"), "a" + kFffd + "z");
  // A truncated 3-byte sequence is one replacement; a surrogate's bytes are three (ED A0 is no valid prefix).
  EXPECT_EQ(sanitize_utf8("\xE3\x81"), kFffd);
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(sanitize_utf8("\xC0\x80"), kFffd + kFffd);                          // overlong
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(sanitize_utf8("\xC2\x41"), kFffd + "A");
  EXPECT_EQ(sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8, IncompleteTailCountsOnlyCompletablePrefixes) {
  EXPECT_EQ(incomplete_utf8_tail("abc"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("ab\xE3"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("ab\xE3\x81"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("ab\xE3\x81\x82"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("\xED\xA0"), 0u);  // can never become valid
  EXPECT_EQ(incomplete_utf8_tail("\x80"), 0u);
  EXPECT_EQ(incomplete_utf8_tail(""), 0u);
}

TEST(ByteLevel, AlphabetIsGpt2s) {
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(byte_to_unicode('a'), "a");
  EXPECT_EQ(byte_to_code_point(0x00), 0x100u);
  EXPECT_EQ(byte_to_code_point(0xAD), 0x143u);
  std::set<uint32_t> distinct;
  for (int b = 0; b < 256; ++b) distinct.insert(byte_to_code_point(static_cast<uint8_t>(b)));
  EXPECT_EQ(distinct.size(), 256u);
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_to_bytes("\xE6\x97\xA5", back));  // 日 is not in the alphabet
}

std::vector<std::string> split(const std::string& text, SplitPattern p) {
  std::vector<std::string_view> views;
  split_by_pattern(text, p, views);
  return std::vector<std::string>(views.begin(), views.end());
}

using V = std::vector<std::string>;

TEST(PreTokenizer, Gpt2Pattern) {
  EXPECT_EQ(split("Hello world, it's 2024!", SplitPattern::Gpt2),
            (V{"Hello", " world", ",", " it", "'s", " 2024", "!"}));
  // \s+(?!\S) leaves the last space of a run to the next word.
  EXPECT_EQ(split("a   b\n\n c  ", SplitPattern::Gpt2), (V{"a", "  ", " b", "\n\n", " c", "  "}));
  EXPECT_EQ(split("I'M", SplitPattern::Gpt2), (V{"I", "'", "M"}));  // case-sensitive contractions
  EXPECT_EQ(split("12345", SplitPattern::Gpt2), (V{"12345"}));
}

TEST(PreTokenizer, Llama3Pattern) {
  EXPECT_EQ(split("Hello world, it's 1234567!", SplitPattern::Llama3),
            (V{"Hello", " world", ",", " it", "'s", " ", "123", "456", "7", "!"}));
  EXPECT_EQ(split("I'M DON'T", SplitPattern::Llama3), (V{"I", "'M", " DON", "'T"}));  // (?i:...)
  EXPECT_EQ(split("x ...\n\ny", SplitPattern::Llama3), (V{"x", " ...\n\n", "y"}));
  EXPECT_EQ(split("a \n\n  b", SplitPattern::Llama3), (V{"a", " \n\n", " ", " b"}));
  EXPECT_EQ(split("$hello", SplitPattern::Llama3), (V{"$hello"}));  // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_EQ(split("日本語のテキスト。", SplitPattern::Llama3), (V{"日本語のテキスト", "。"}));
  EXPECT_EQ(split("x\xC5\xBF", SplitPattern::Llama3), (V{"x\xC5\xBF"}));
  EXPECT_EQ(split("'\xC5\xBF", SplitPattern::Llama3), (V{"'\xC5\xBF"}));  // 'ſ folds to 's
}

TEST(PreTokenizer, Qwen2PatternSplitsEveryDigit) {
  EXPECT_EQ(split("abc 1234", SplitPattern::Qwen2), (V{"abc", " ", "1", "2", "3", "4"}));
  EXPECT_EQ(split("\xEF\xBC\x91\xEF\xBC\x92", SplitPattern::Qwen2),
            (V{"\xEF\xBC\x91", "\xEF\xBC\x92"}));  // １２
}

TEST(PreTokenizer, PiecesCoverEveryByteOfAnyText) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string raw(rng() % 40, '\0');
    for (auto& c : raw)
      c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : " \n\tab1'.\xE3\x81\x82"[rng() % 12]);
    std::string text = sanitize_utf8(raw);
    for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Llama3, SplitPattern::Qwen2}) {
      std::string joined;
      for (const auto& piece : split(text, p)) {
        ASSERT_FALSE(piece.empty());
        joined += piece;
      }
      ASSERT_EQ(joined, text);
    }
  }
}

TEST(PreTokenizer, KnowsTheRegexSources) {
  SplitPattern p;
  EXPECT_TRUE(find_split_pattern(split_pattern_regex(SplitPattern::Llama3), p));
  EXPECT_EQ(p, SplitPattern::Llama3);
  EXPECT_FALSE(find_split_pattern("\\s+", p));
}

TEST(Normalizer, NfcComposesAndLeavesAsciiAlone) {
  EXPECT_EQ(nfc("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul jamo -> 가
  EXPECT_EQ(nfc(std::string("plain\0text", 10)), std::string("plain\0text", 10));
  EXPECT_EQ(nfc(std::string("e\xCC\x81\0x", 5)), std::string("\xC3\xA9\0x", 4));  // NUL does not end the text
}

}  // namespace
}  // namespace coenc::tok

namespace coenc::tok {
namespace {

TEST(Normalizer, PrependAndReplaceRunInOrder) {
  nlohmann::json j = {{"type", "Sequence"},
                      {"normalizers",
                       {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  Normalizer n = Normalizer::from_json(j, {"tokenizer.json", "normalizer"});
  EXPECT_EQ(n.apply("a b  c"),
            "\xE2\x96\x81"
            "a\xE2\x96\x81"
            "b\xE2\x96\x81\xE2\x96\x81"
            "c");
  EXPECT_EQ(n.apply(""), "");  // nothing is prepended to empty text
  EXPECT_TRUE(Normalizer::from_json(nullptr, {"tokenizer.json", "normalizer"}).is_identity());
}

TEST(Normalizer, RegexReplaceIsRejected) {
  nlohmann::json j = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
  try {
    Normalizer::from_json(j, {"tokenizer.json", "normalizer"});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "tokenizer.json: field normalizer.pattern: only {\"String\": ...} patterns"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace coenc::tok
