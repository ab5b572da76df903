// Parity with the reference libraries: ids from Hugging Face `tokenizers` (real Qwen3 and Llama-3
// vocabularies, and a vocabulary trained by `coenc tokenizer train`) and from Python `sentencepiece`, over
// the committed test inputs. Made by scripts/make_tokenizer_fixtures.py; the ids of Mistral's released
// SentencePiece model by scripts/make_spm_fixture.py (libsentencepiece). Library versions in meta.json.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <sstream>

#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/utf8.h"
#include "tokenizer_fixtures.h"

namespace coenc::test {
namespace {

// Compares every entry; reports the first few mismatches in full and the total.
void expect_matches(const Tokenizer& tok, const std::vector<std::string>& cases,
                    const std::vector<ReferenceIds>& reference, const EncodeOptions& opts,
                    bool check_round_trip, const std::string& what) {
  size_t mismatches = 0, round_trip_failures = 0, round_trips_checked = 0;
  std::ostringstream report;
  for (const auto& ref : reference) {
    ASSERT_LT(ref.case_index, cases.size());
    const std::string& input = cases[ref.case_index];
    TokenIds got = tok.encode(input, opts);
    if (got != ref.ids) {
      if (++mismatches <= 5) {
        report << "\n  case " << ref.case_index << " \"" << escape_bytes(input) << "\"\n    expected "
               << ids_to_string(ref.ids) << "\n    got      " << ids_to_string(got);
      }
      continue;
    }
    if (check_round_trip && ref.round_trips) {
      ++round_trips_checked;
      std::string text = tok::sanitize_utf8(input);
      std::string back = tok.decode(got);
      if (back != text && ++round_trip_failures <= 5) {
        report << "\n  round trip of case " << ref.case_index << ": \"" << escape_bytes(text)
               << "\" came back as \"" << escape_bytes(back) << "\"";
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << what << ": " << mismatches << " of " << reference.size() << " cases differ"
                            << report.str();
  EXPECT_EQ(round_trip_failures, 0u) << what << report.str();
  if (check_round_trip) {
    EXPECT_GT(round_trips_checked, reference.size() / 2) << what;
  }
}

class TokenizerGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cases_ = new std::vector<std::string>(read_tokenizer_cases()); }
  static void TearDownTestSuite() {
    delete cases_;
    cases_ = nullptr;
  }
  static std::vector<std::string>* cases_;
};
std::vector<std::string>* TokenizerGolden::cases_ = nullptr;

TEST_F(TokenizerGolden, FixturesCoverAtLeastTenThousandCases) {
  EXPECT_GE(cases_->size(), 10000u);
  EXPECT_EQ(read_reference_ids("qwen3").entries.size(), cases_->size());
  EXPECT_EQ(read_reference_ids("llama3").entries.size(), cases_->size());
}

TEST_F(TokenizerGolden, Qwen3MatchesHuggingFace) {
  NPM_FIXTURE_OR_SKIP(dir, npm_vocab_dir, "qwen3");
  auto tok = Tokenizer::load(dir.string());
  auto ref = read_reference_ids("qwen3");
  expect_matches(*tok, *cases_, ref.entries, {}, true, "qwen3");
  ASSERT_GT(ref.unparsed.size(), 100u);
  EncodeOptions unparsed;
  unparsed.parse_special = false;
  expect_matches(*tok, *cases_, ref.unparsed, unparsed, false, "qwen3, special tokens not parsed");
}

TEST_F(TokenizerGolden, Llama3MatchesHuggingFace) {
  NPM_FIXTURE_OR_SKIP(dir, npm_vocab_dir, "llama3");
  auto tok = Tokenizer::load(dir.string());
  auto ref = read_reference_ids("llama3");
  expect_matches(*tok, *cases_, ref.entries, {}, true, "llama3");
  ASSERT_GT(ref.unparsed.size(), 100u);
  EncodeOptions unparsed;
  unparsed.parse_special = false;
  expect_matches(*tok, *cases_, ref.unparsed, unparsed, false, "llama3, special tokens not parsed");
}

// A Llama-2-style tokenizer.json: character BPE with byte fallback and fused unknowns, Prepend/Replace
// normalizers instead of a pre-tokenizer, and the Replace/ByteFallback/Fuse/Strip decoder chain.
TEST_F(TokenizerGolden, Llama2StyleMatchesHuggingFace) {
  NPM_FIXTURE_OR_SKIP(dir, npm_vocab_dir, "llama2");
  auto tok = Tokenizer::load(dir.string());
  auto ref = read_reference_ids("llama2");
  ASSERT_GT(ref.entries.size(), 900u);
  expect_matches(*tok, *cases_, ref.entries, {}, true, "llama2");
  ASSERT_GT(ref.unparsed.size(), 20u);
  EncodeOptions unparsed;
  unparsed.parse_special = false;
  expect_matches(*tok, *cases_, ref.unparsed, unparsed, false, "llama2, special tokens not parsed");
  EncodeOptions with;
  with.add_special = true;
  EXPECT_EQ(tok->encode("Hello", with).front(), 1);  // <s> from the TemplateProcessing post-processor
}

TEST_F(TokenizerGolden, BareTokenizerJsonLoadsLikeTheDirectory) {
  NPM_FIXTURE_OR_SKIP(dir, npm_vocab_dir, "llama3");
  auto from_dir = Tokenizer::load(dir.string());
  auto from_file = Tokenizer::load((dir / "tokenizer.json").string());
  EXPECT_EQ(from_file->encode("Hello world, 12345!"), from_dir->encode("Hello world, 12345!"));
  EXPECT_EQ(from_file->vocab_size(), 128256);
}

TEST_F(TokenizerGolden, SentencePieceMatchesPythonSentencePiece) {
  auto tok = Tokenizer::load((test_dir() / "golden" / "tokenizer" / "tiny_spm.model").string());
  auto ref = read_reference_ids("tiny_spm");
  ASSERT_GT(ref.entries.size(), 900u);
  // Python's sp.encode() treats "<s>" in the text as text: compare with special tokens not parsed.
  EncodeOptions opts;
  opts.parse_special = false;
  expect_matches(*tok, *cases_, ref.entries, opts, true, "tiny_spm");
}

// A released model: Mistral-7B v0.1's tokenizer.model (BPE, 32,000 pieces, byte fallback, digits split),
// against ids from libsentencepiece itself (scripts/make_spm_fixture.py), on every case.
TEST_F(TokenizerGolden, MistralSentencePieceMatchesLibSentencePiece) {
  NPM_FIXTURE_OR_SKIP(model, npm_spm_model, "mistral");
  auto tok = Tokenizer::load(model.string());
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  auto ref = read_reference_ids("mistral");
  ASSERT_EQ(ref.entries.size(), cases_->size());
  // spm_encode treats "<s>" in the text as text: compare with special tokens not parsed.
  EncodeOptions opts;
  opts.parse_special = false;
  expect_matches(*tok, *cases_, ref.entries, opts, true, "mistral");
  // The model's default (Mistral's tokenizer_config.json says the same): BOS in front, no EOS. The fixture
  // script checked that SentencePiece's "bos" option does exactly this.
  std::vector<ReferenceIds> with_bos = ref.entries;
  for (auto& e : with_bos) e.ids.insert(e.ids.begin(), 1);
  opts.add_special = true;
  expect_matches(*tok, *cases_, with_bos, opts, true, "mistral with BOS");
}

TEST_F(TokenizerGolden, TrainedTokenizerMatchesHuggingFace) {
  auto tok = Tokenizer::load((test_dir() / "golden" / "tokenizer" / "trained").string());
  auto ref = read_reference_ids("trained");
  ASSERT_GT(ref.entries.size(), 900u);
  expect_matches(*tok, *cases_, ref.entries, {}, true, "trained");
}

TEST_F(TokenizerGolden, RealConfigsGiveSpecialIdsAndChatFormats) {
  NPM_FIXTURE_OR_SKIP(qwen_dir, npm_vocab_dir, "qwen3");
  auto qwen = Tokenizer::load(qwen_dir.string());
  EXPECT_EQ(qwen->eos_id(), 151645);  // <|im_end|>
  EXPECT_EQ(qwen->pad_id(), 151643);  // <|endoftext|>
  EXPECT_FALSE(qwen->bos_id().has_value());
  EXPECT_EQ(chat_stop_ids(*qwen, resolve_chat_template(*qwen)), (TokenIds{151645}));
  EXPECT_EQ(qwen->vocab_size(), 151669);
  NPM_FIXTURE_OR_SKIP(llama_dir, npm_vocab_dir, "llama3");
  auto llama = Tokenizer::load(llama_dir.string());
  EXPECT_EQ(llama->bos_id(), 128000);
  EXPECT_EQ(llama->eos_id(), 128001);
  EXPECT_EQ(chat_stop_ids(*llama, resolve_chat_template(*llama)), (TokenIds{128001, 128009}));
  // The rendered prompt encodes with the header tokens as single special ids, BOS spelled once by the template and
  // nothing added: apply_chat_template(tokenize=True)'s ids. The built-in family gives the same.
  const TokenIds expected = {128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271};
  EXPECT_EQ(encode_chat(*llama, {{"user", "Hi"}}, resolve_chat_template(*llama)), expected);
  EXPECT_EQ(encode_chat(*llama, {{"user", "Hi"}}, ChatFormat::Llama3), expected);
}

// Qwen3's own template with thinking off: every piece of markup is one special token, the text between them is
// ordinary text ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n").
TEST_F(TokenizerGolden, QwenThinkingMarkupEncodesAsSpecialTokens) {
  NPM_FIXTURE_OR_SKIP(qwen_dir, npm_vocab_dir, "qwen3");
  auto qwen = Tokenizer::load(qwen_dir.string());
  ChatRenderOptions off;
  off.enable_thinking = false;
  const TokenIds ids = encode_chat(*qwen, {{"user", "Hi"}}, resolve_chat_template(*qwen), off);
  const TokenId im_start = 151644, im_end = 151645, think = 151667, end_think = 151668;
  EXPECT_EQ(qwen->token_to_id("<think>"), think);
  EXPECT_EQ(qwen->token_to_id("</think>"), end_think);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_start), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_end), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), think), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), end_think), 1);
  EXPECT_EQ(ids.front(), im_start);
  EXPECT_EQ(qwen->decode(ids), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // The same text with special-token parsing off would be many more ordinary tokens.
  EncodeOptions plain;
  plain.parse_special = false;
  EXPECT_GT(qwen->encode(qwen->decode(ids), plain).size(), ids.size() + 8);
}

TEST_F(TokenizerGolden, AnyBytesEncodeWithRealVocabularies) {
  NPM_FIXTURE_OR_SKIP(qwen_dir, npm_vocab_dir, "qwen3");
  auto qwen = Tokenizer::load(qwen_dir.string());
  NPM_FIXTURE_OR_SKIP(llama_dir, npm_vocab_dir, "llama3");
  auto llama = Tokenizer::load(llama_dir.string());
  std::mt19937 rng(17);
  EncodeOptions plain;
  plain.parse_special = false;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string raw(rng() % 80, '\0');
    for (auto& c : raw) c = static_cast<char>(rng() % 256);
    TokenIds q = qwen->encode(raw);
    for (TokenId id : q) ASSERT_TRUE(id >= 0 && id < qwen->vocab_size());
    EXPECT_TRUE(tok::is_valid_utf8(qwen->decode(q)));
    // Llama-3 has no normalizer: what comes back is the text the reference sees.
    ASSERT_EQ(llama->decode(llama->encode(raw, plain)), tok::sanitize_utf8(raw));
  }
}

}  // namespace
}  // namespace coenc::test
