// The byte-level BPE trainer: what it learns, what it writes, and its limits.
#include <gtest/gtest.h>

#include "coenc/tokenizer.h"
#include "test_util.h"
#include "coenc/bpe_trainer.h"

namespace coenc::test {
namespace {

std::string corpus() {
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += "the quick brown fox jumps over the lazy dog " + std::to_string(i) + "\n";
    text += "日本語の文章も少し入れておく。\n";
  }
  return text;
}

TEST(BpeTrainer, LearnsFrequentPairsAndWritesLoadableFiles) {
  tok::BpeTrainerOptions o;
  o.vocab_size = 320;
  tok::BpeTrainer trainer(o);
  trainer.add_text(corpus());
  trainer.train();
  EXPECT_EQ(trainer.vocab().size(), 320u);
  EXPECT_EQ(trainer.vocab()[0], "<|endoftext|>");
  // " the" (Ġthe) is the most frequent word: it must be one token.
  EXPECT_NE(std::find(trainer.vocab().begin(), trainer.vocab().end(), "\xC4\xA0the"), trainer.vocab().end());
  TempDir dir;
  trainer.save(dir.path().string());
  auto t = Tokenizer::load(dir.path().string());
  EXPECT_EQ(t->vocab_size(), 320);
  EXPECT_EQ(t->bos_id(), 0);
  // The ChatML template it writes renders as the built-in ChatML family.
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hi!"}};
  EXPECT_EQ(render_chat(chat, resolve_chat_template(*t), {}), render_chat(chat, ChatFormat::ChatML, {}));
  TokenIds ids = t->encode(" the lazy dog");
  EXPECT_LE(ids.size(), 4u);
  EXPECT_EQ(t->decode(ids), " the lazy dog");
  EncodeOptions with;
  with.add_special = true;
  EXPECT_EQ(t->encode("x", with).front(), 0);
  EXPECT_EQ(t->encode("<|im_end|>"), (TokenIds{2}));
  // Unseen text still encodes, through byte symbols.
  EXPECT_EQ(t->decode(t->encode("Zürich 🤖")), "Zürich 🤖");
}

TEST(BpeTrainer, PruningKeepsTheWordTableBounded) {
  tok::BpeTrainerOptions o;
  o.vocab_size = 300;
  o.max_words = 1000;
  tok::BpeTrainer trainer(o);
  std::string text;
  for (int i = 0; i < 5000; ++i) text += " w" + std::to_string(i * 7919) + "x";
  for (int i = 0; i < 100; ++i) text += " common";
  trainer.add_text(text);
  trainer.train();
  EXPECT_LE(trainer.stats().distinct_words, 1000u);
  EXPECT_GT(trainer.stats().pruned_words, 0u);
  // The frequent word survives pruning and is learned.
  EXPECT_NE(std::find(trainer.vocab().begin(), trainer.vocab().end(),
                      "\xC4\xA0"
                      "common"),
            trainer.vocab().end());
}

TEST(BpeTrainer, StopsWhenPairsBecomeRare) {
  tok::BpeTrainerOptions o;
  o.vocab_size = 5000;
  o.min_frequency = 2;
  tok::BpeTrainer trainer(o);
  trainer.add_text("abc abc xyz");
  trainer.train();
  EXPECT_LT(trainer.vocab().size(), 5000u);
  EXPECT_EQ(trainer.stats().merges, static_cast<int>(trainer.merges().size()));
}

TEST(BpeTrainer, RejectsImpossibleSettings) {
  tok::BpeTrainerOptions o;
  o.vocab_size = 100;
  tok::BpeTrainer trainer(o);
  trainer.add_text("hello");
  EXPECT_COENC_ERROR(trainer.train(),
                     "vocab_size 100 is too small: it must hold the 3 special tokens and 256 byte");
  o.vocab_size = 1000;
  o.max_words = 10;
  EXPECT_COENC_ERROR(tok::BpeTrainer{o}, "max_words must be at least 1000");
  tok::BpeTrainer reader(tok::BpeTrainerOptions{});
  EXPECT_COENC_ERROR(reader.add_file("/nonexistent/corpus.txt"), "cannot open the training text");
}

}  // namespace
}  // namespace coenc::test
