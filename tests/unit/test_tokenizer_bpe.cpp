// The tokenizer.json pipeline on small vocabularies built in the test: merges, added tokens, post-processor,
// decoding, and the BPE model options (ignore_merges, byte_fallback, unk).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <thread>

#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_json.h"

namespace coenc::test {
namespace {

const std::string G = "\xC4\xA0";  // Ġ

TokenId id_of(const Tokenizer& t, const std::string& piece) {
  auto id = t.token_to_id(piece);
  EXPECT_TRUE(id.has_value()) << piece;
  return id.value_or(-1);
}

TEST(BpeTokenizer, AppliesMergesByRank) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  // " the" -> Ġt + he -> Ġthe; "hello" -> h e ll o -> he llo.
  EXPECT_EQ(t->encode(" the hello"),
            (TokenIds{id_of(*t, G + "the"), id_of(*t, G), id_of(*t, "he"), id_of(*t, "llo")}));
  EXPECT_EQ(t->decode(t->encode(" the hello")), " the hello");
}

TEST(BpeTokenizer, BothMergeEncodingsGiveTheSameModel) {
  TempDir a, b;
  auto j = tiny_tokenizer_json();
  auto pairs = j;
  pairs["model"]["merges"] = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    pairs["model"]["merges"].push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  auto ts = load_tokenizer_json(a, j), tp = load_tokenizer_json(b, pairs);
  for (const char* text : {"the hello world", " the  thethe\n", "llollo"})
    EXPECT_EQ(ts->encode(text), tp->encode(text));
}

TEST(BpeTokenizer, AddedTokensAndParseSpecial) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  TokenId bos = id_of(*t, "<|bos|>"), eos = id_of(*t, "<|eos|>"), tool = id_of(*t, "[tool]");
  TokenIds ids = t->encode("he<|eos|>[tool]he");
  EXPECT_EQ(ids, (TokenIds{id_of(*t, "he"), eos, tool, id_of(*t, "he")}));
  EncodeOptions no_special;
  no_special.parse_special = false;
  TokenIds plain = t->encode("he<|eos|>[tool]", no_special);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eos), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), tool), 1);  // non-special added tokens always match
  EXPECT_EQ(t->decode(plain), "he<|eos|>[tool]");
  EXPECT_TRUE(t->is_special(bos));
  EXPECT_FALSE(t->is_special(tool));
  EXPECT_EQ(t->decode(ids, /*skip_special=*/true), "he[tool]he");
  EXPECT_EQ(t->decode(ids), "he<|eos|>[tool]he");
}

TEST(BpeTokenizer, AddedTokenLongestMatchWins) {
  TempDir dir;
  auto j = tiny_tokenizer_json();
  j["added_tokens"].push_back({{"id", 400}, {"content", "<|eos|>x"}, {"special", true}});
  auto t = load_tokenizer_json(dir, j);
  EXPECT_EQ(t->encode("<|eos|>x<|eos|>"), (TokenIds{400, id_of(*t, "<|eos|>")}));
  EXPECT_EQ(t->vocab_size(), 401);
  EXPECT_EQ(t->id_to_piece(400), "<|eos|>x");
}

TEST(BpeTokenizer, AddedTokenStripAndSingleWord) {
  TempDir dir;
  auto j = tiny_tokenizer_json();
  j["added_tokens"].push_back(
      {{"id", 300}, {"content", "<mask>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}});
  j["added_tokens"].push_back({{"id", 301}, {"content", "cat"}, {"special", false}, {"single_word", true}});
  auto t = load_tokenizer_json(dir, j);
  // lstrip/rstrip swallow the spaces around the token.
  EXPECT_EQ(t->encode("a  <mask>  b"), (TokenIds{'a', 300, 'b'}));
  // single_word: only where no letter or digit touches it.
  EXPECT_EQ(t->encode("cat"), (TokenIds{301}));
  EXPECT_EQ(t->encode("a cat."), (TokenIds{'a', ' ', 301, '.'}));  // byte symbols have their byte's id
  TokenIds inside = t->encode("bobcat");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 301), 0);
}

TEST(BpeTokenizer, TemplateProcessingAddsBos) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  EncodeOptions with;
  with.add_special = true;
  TokenIds ids = t->encode("he", with);
  EXPECT_EQ(ids, (TokenIds{id_of(*t, "<|bos|>"), id_of(*t, "he")}));
}

TEST(BpeTokenizer, ConfigSuppliesSpecialIdsAndTemplate) {
  TempDir dir;
  nlohmann::json config = {{"bos_token", "<|bos|>"},
                           {"eos_token", {{"content", "<|eos|>"}, {"lstrip", false}}},
                           {"pad_token", nullptr},
                           {"chat_template", "{{ '<|im_start|>' }}"}};
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json(), config);
  EXPECT_EQ(t->bos_id(), id_of(*t, "<|bos|>"));
  EXPECT_EQ(t->eos_id(), id_of(*t, "<|eos|>"));
  EXPECT_FALSE(t->pad_id().has_value());
  EXPECT_EQ(t->chat_template(), "{{ '<|im_start|>' }}");
}

TEST(BpeTokenizer, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  TempDir a, b;
  auto j = tiny_tokenizer_json();
  // "Ġthe" is in the vocabulary; with merges reordered so that "he" would win first and "Ġt"+"he" is gone,
  // only ignore_merges can produce it.
  j["model"]["merges"] = {"h e", G + " t"};
  auto plain = load_tokenizer_json(a, j);
  j["model"]["ignore_merges"] = true;
  auto whole = load_tokenizer_json(b, j);
  EXPECT_EQ(plain->encode(" the"), (TokenIds{id_of(*plain, G + "t"), id_of(*plain, "he")}));
  EXPECT_EQ(whole->encode(" the"), (TokenIds{id_of(*whole, G + "the")}));
}

// A character-level BPE (no ByteLevel pre-tokenizer), as Llama-2-style tokenizer.json files have.
nlohmann::json char_bpe_json(bool byte_fallback, bool fuse_unk) {
  nlohmann::json vocab = {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"ab", 3}, {"<0xC3>", 4}, {"<0xA9>", 5}};
  return {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"a b"}},
        {"unk_token", "<unk>"},
        {"byte_fallback", byte_fallback},
        {"fuse_unk", fuse_unk}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}}};
}

TEST(BpeTokenizer, CharacterModelUnknownsAndByteFallback) {
  TempDir a, b, c;
  auto unk = load_tokenizer_json(a, char_bpe_json(false, false));
  EXPECT_EQ(unk->encode("abxyb"), (TokenIds{3, 0, 0, 2}));
  auto fused = load_tokenizer_json(b, char_bpe_json(false, true));
  EXPECT_EQ(fused->encode("abxyb"), (TokenIds{3, 0, 2}));
  auto bytes = load_tokenizer_json(c, char_bpe_json(true, false));
  EXPECT_EQ(bytes->encode("a\xC3\xA9z"), (TokenIds{1, 4, 5, 0}));  // é -> <0xC3><0xA9>; z has no byte tokens
  EXPECT_EQ(bytes->decode({1, 4, 5}), "a\xC3\xA9");
}

// The reference BPE: repeatedly merge the lowest-ranked adjacent pair, leftmost first.
TokenIds naive_bpe(std::vector<std::string> symbols,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   const std::map<std::string, TokenId>& vocab) {
  while (symbols.size() > 1) {
    size_t best_rank = merges.size(), best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      for (size_t r = 0; r < best_rank; ++r) {
        if (merges[r].first == symbols[i] && merges[r].second == symbols[i + 1]) {
          best_rank = r;
          best = i;
          break;
        }
      }
    }
    if (best_rank == merges.size()) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  TokenIds ids;
  for (const auto& s : symbols) ids.push_back(vocab.at(s));
  return ids;
}

TEST(BpeModel, LongPiecesMergeLikeTheReferenceAlgorithm) {
  // Random merges over a 3-letter alphabet; pieces long enough for the priority-queue path.
  std::mt19937 rng(11);
  std::vector<std::pair<std::string, TokenId>> vocab;
  std::map<std::string, TokenId> by_text;
  for (int b = 0; b < 256; ++b) {
    std::string s = tok::byte_to_unicode(static_cast<uint8_t>(b));
    by_text[s] = b;
    vocab.emplace_back(s, b);
  }
  std::vector<std::string> tokens = {"a", "b", "c"};
  std::vector<std::pair<std::string, std::string>> merges;
  while (merges.size() < 60) {
    std::string x = tokens[rng() % tokens.size()], y = tokens[rng() % tokens.size()];
    if (x.size() + y.size() > 6 || by_text.count(x + y)) continue;
    merges.emplace_back(x, y);
    by_text[x + y] = static_cast<TokenId>(vocab.size());
    vocab.emplace_back(x + y, static_cast<TokenId>(vocab.size()));
    tokens.push_back(x + y);
  }
  tok::BpeOptions options;
  tok::BpeModel model(vocab, merges, options, {"test", "model"});
  for (int iter = 0; iter < 300; ++iter) {
    std::string piece(1 + rng() % 200, 'a');
    for (auto& ch : piece) ch = "abc"[rng() % 3];
    TokenIds got;
    model.encode(piece, got);
    std::vector<std::string> symbols;
    for (char ch : piece) symbols.emplace_back(1, ch);
    ASSERT_EQ(got, naive_bpe(symbols, merges, by_text)) << piece;
  }
}

TEST(BpeTokenizer, RandomBytesEncodeAndDecodeBack) {
  TempDir dir;
  auto t = load_tokenizer_json(dir, tiny_tokenizer_json());
  std::mt19937 rng(3);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string raw(rng() % 64, '\0');
    for (auto& c : raw) c = static_cast<char>(rng() % 256);
    TokenIds ids = t->encode(raw);
    EncodeOptions no_special;
    no_special.parse_special = false;
    // Without a normalizer, byte-level BPE gives back the text as the reference sees it.
    ASSERT_EQ(t->decode(t->encode(raw, no_special)), tok::sanitize_utf8(raw));
    for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < t->vocab_size());
  }
}

// Threads sharing one tokenizer (its word cache is shared, in shards under their own locks) get what one thread
// alone gets, cache filling and clearing included (more distinct words than the cache holds).
TEST(BpeTokenizer, ThreadsSharingOneTokenizerEncodeAsOneThreadDoes) {
  TempDir dir;
  auto shared = load_tokenizer_json(dir, tiny_tokenizer_json());
  auto alone = load_tokenizer_json(dir, tiny_tokenizer_json());
  std::vector<std::string> texts;
  std::mt19937 rng(5);
  for (int i = 0; i < 400; ++i) {
    std::string text;
    for (int w = 0; w < 300; ++w) {
      std::string word(1 + rng() % 6, 'a');
      for (auto& c : word) c = static_cast<char>('a' + rng() % 26);
      text += word + ' ';
    }
    texts.push_back(text);
  }
  std::vector<TokenIds> expected;
  for (const auto& text : texts) expected.push_back(alone->encode(text));
  std::vector<TokenIds> got(texts.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < texts.size(); i += 4) got[i] = shared->encode(texts[i]);
    });
  for (auto& th : threads) th.join();
  for (size_t i = 0; i < texts.size(); ++i) ASSERT_EQ(got[i], expected[i]) << "text " << i;
}

}  // namespace
}  // namespace coenc::test
