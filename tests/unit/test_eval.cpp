// The evaluation metrics on hand-checked cases, the evaluation data readers (plain, .jsonl, .xz, errors) and the
// lookup question.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "coenc/eval.h"
#include "coenc/pipeline.h"
#include "test_util.h"

namespace coenc::test {
namespace {

TEST(EvalMetrics, SquadNormalisation) {
  // evaluate-v1.1.py: lower case, punctuation out, articles out, whitespace collapsed.
  EXPECT_EQ(squad_normalize("The  Denver Broncos!"), "denver broncos");
  EXPECT_EQ(squad_normalize("an apple, a pear and THE plum."), "apple pear and plum");
  EXPECT_EQ(squad_normalize("  Saint-Denis (1871) "), "saintdenis 1871");
  EXPECT_EQ(squad_normalize("theory of an answer"), "theory of answer");  // "the" only as a whole word
}

TEST(EvalMetrics, ExactMatchAndF1TakeTheBestAnswer) {
  EXPECT_EQ(exact_match("the Broncos", {"Denver Broncos", "Broncos"}), 1.0);
  EXPECT_EQ(exact_match("Broncos!", {"Denver Broncos"}), 0.0);
  // One shared token of two predicted and one reference: precision 1/2, recall 1 -> F1 2/3.
  EXPECT_NEAR(f1_score("Denver Broncos", {"Broncos"}), 2.0 / 3.0, 1e-12);
  // The best of several answers counts.
  EXPECT_NEAR(f1_score("Denver Broncos", {"Carolina Panthers", "Broncos", "the Denver Broncos"}), 1.0, 1e-12);
  EXPECT_EQ(f1_score("Panthers", {"Broncos"}), 0.0);
  // Repeated tokens are matched at most as often as the reference has them: 1 of 3 predicted, 1 of 1
  // reference.
  EXPECT_NEAR(f1_score("yes yes yes", {"yes"}), 0.5, 1e-12);
  EXPECT_EQ(f1_score("", {""}), 1.0);
}

TEST(EvalMetrics, Bleu4OnKnownPairs) {
  const TokenIds ref = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_NEAR(corpus_bleu4({ref}, {ref}), 1.0, 1e-12);
  // One substitution in eight: precisions 7/8, 5/7, 3/6, 1/5 -> (1/16)^(1/4) = 0.5.
  EXPECT_NEAR(corpus_bleu4({{1, 2, 3, 4, 9, 6, 7, 8}}, {ref}), 0.5, 1e-12);
  // Half the reference, all correct: brevity penalty exp(1 - 8/4).
  EXPECT_NEAR(corpus_bleu4({{1, 2, 3, 4}}, {ref}), std::exp(-1.0), 1e-12);
  // No 4-gram in common: 0 (unsmoothed, as the corpus-level definition).
  EXPECT_EQ(corpus_bleu4({{1, 2, 3, 9, 4, 5, 6, 9}}, {ref}), 0.0);
  // Corpus level: counts are pooled before the ratio, not averaged per sentence.
  EXPECT_NEAR(corpus_bleu4({ref, {1, 2, 3, 4, 9, 6, 7, 8}}, {ref, ref}),
              std::pow((15.0 / 16) * (12.0 / 14) * (9.0 / 12) * (6.0 / 10), 0.25), 1e-12);
}

TEST(EvalMetrics, GainRetained) {
  EXPECT_NEAR(*gain_retained(5.0, 4.0, 3.0), 0.5, 1e-12);
  EXPECT_NEAR(*gain_retained(5.0, 3.0, 3.0), 1.0, 1e-12);
  EXPECT_NEAR(*gain_retained(5.0, 6.0, 3.0), -0.5, 1e-12);  // worse than no context at all
  EXPECT_FALSE(gain_retained(5.0, 4.0, 5.0).has_value());   // the full context gains nothing
  EXPECT_FALSE(gain_retained(5.0, 4.0, 5.5).has_value());
}

TEST(EvalMetrics, TargetPositionBuckets) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {1, "1"},  {2, "2"},  {3, "3-4"},       {4, "3-4"},      {5, "5-8"},
      {8, "5-8"}, {9, "9-16"}, {128, "65-128"}, {129, "129-256"}};
  for (const auto& [position, bucket] : cases) EXPECT_EQ(target_position_bucket(position), bucket) << position;
  EXPECT_THROW(target_position_bucket(0), Error);
}

// The standard error of a mean, and of a paired difference, on hand-checkable cases.
TEST(EvalMetrics, StandardErrors) {
  const MeanError e = mean_and_error({0, 1, 1, 0});  // sample variance 1/3, so the error is sqrt(1/12)
  EXPECT_NEAR(e.mean, 0.5, 1e-12);
  EXPECT_NEAR(e.error, std::sqrt(1.0 / 12), 1e-12);
  EXPECT_NEAR(mean_and_error({2, 4, 9}).error, std::sqrt(13.0 / 3), 1e-12);  // variance 13, n = 3
  EXPECT_EQ(mean_and_error({3, 3, 3}).error, 0.0);
  EXPECT_EQ(mean_and_error({7}).mean, 7.0);
  EXPECT_TRUE(std::isnan(mean_and_error({7}).error));
  EXPECT_TRUE(std::isnan(mean_and_error({}).mean));
  // Paired: items 1..4 score 10, 20, 30, 40 under a and 1 more (items 1, 2) or 3 more (items 3, 4) under b; the
  // items vary a lot, the difference little. Item 5 is scored under b only and is left out.
  const std::map<int64_t, double> a = {{1, 10}, {2, 20}, {3, 30}, {4, 40}};
  const std::map<int64_t, double> b = {{1, 11}, {2, 21}, {3, 33}, {4, 43}, {5, 100}};
  const MeanError d = paired_difference(a, b);
  EXPECT_NEAR(d.mean, 2.0, 1e-12);
  EXPECT_NEAR(d.error, std::sqrt(4.0 / 3 / 4), 1e-12);  // differences 1, 1, 3, 3: variance 4/3
  EXPECT_GT(mean_and_error({10, 20, 30, 40}).error, 5 * d.error);
  EXPECT_TRUE(std::isnan(paired_difference(a, {{9, 1}}).mean));  // no item in common
}

// The lookup drill's question (training and `coenc eval --task lookup`): the cue quoted on one line, trimmed;
// nothing for a blank cue.
TEST(EvalData, LookupQuestionQuotesTheCueOnOneLine) {
  EXPECT_EQ(lookup_question("  the river\nbend "), "What follows \"the river bend\" in the text?");
  EXPECT_EQ(lookup_question("one"), "What follows \"one\" in the text?");
  EXPECT_EQ(lookup_question(" \n\t\r"), "");
}

// Where a lookup question sits: a window of the asked size (the whole document when shorter) inside the document,
// the cue and its answer inside the window, both whole words (they start and end at word edges), spread over the
// document; nothing for a document too short for both. starts_word on hand-checkable pairs.
TEST(EvalData, LookupSpansFitTheirDocumentAndAreWholeWords) {
  auto tok = Tokenizer::load((test::test_dir() / "golden/tokenizer/trained").string());
  const TokenIds hello = tok->encode("the river bend, and then", EncodeOptions{false, false});
  for (int64_t p = 0; p <= static_cast<int64_t>(hello.size()); ++p) {
    const std::string before = tok->decode(TokenIds(hello.begin(), hello.begin() + p));
    const std::string after = tok->decode(TokenIds(hello.begin(), hello.end())).substr(before.size());
    // a word starts where the text so far ends and what follows begins with a space or a comma, or at either end
    const bool edge = p == 0 || after.empty() || after[0] == ' ' || after[0] == ',' || before.back() == ',';
    EXPECT_EQ(starts_word(*tok, hello, p), edge) << p << ": \"" << before << "\" | \"" << after << "\"";
  }
  std::mt19937_64 rng(2);
  std::string text;
  for (int i = 0; text.size() < 6000; ++i)  // sentences of words "word" + a number, 13 to a line
    text += (i % 13 == 12 ? ".\n" : " ") + std::string("word") + std::to_string(i * 7919 % 997);
  const TokenIds all = tok->encode(text, EncodeOptions{false, false});
  EXPECT_FALSE(draw_lookup_span(TokenIds(all.begin(), all.begin() + 15), 40, *tok, rng));
  for (int64_t len : {16, 40, 1000}) {
    const TokenIds doc(all.begin(), all.begin() + len);
    std::set<int64_t> cues;
    int64_t whole = 0;
    for (int i = 0; i < 400; ++i) {
      const auto s = draw_lookup_span(doc, 40, *tok, rng);
      ASSERT_TRUE(s);
      EXPECT_EQ(s->end - s->begin, std::min<int64_t>(len, 40));
      EXPECT_GE(s->begin, 0);
      EXPECT_LE(s->end, len);
      EXPECT_GE(s->cue, s->begin);
      EXPECT_GE(s->answer - s->cue, kLookupCueTokens);
      EXPECT_LE(s->answer - s->cue, kLookupCueTokens + kLookupWordSlack);
      EXPECT_GE(s->stop - s->answer, kLookupAnswerTokens);
      EXPECT_LE(s->stop - s->answer, kLookupAnswerTokens + kLookupWordSlack);
      EXPECT_LE(s->stop, s->end);
      whole += starts_word(*tok, doc, s->cue) && starts_word(*tok, doc, s->answer) && starts_word(*tok, doc, s->stop);
      cues.insert(s->cue);
    }
    // A window of 40 leaves every edge room to reach a word's (no word here is longer than the slack).
    if (len >= 40) EXPECT_EQ(whole, 400) << len;
    EXPECT_GT(cues.size(), len == 16 ? 0u : len == 40 ? 3u : 100u) << len;  // spread over the document
  }
}

// The cloze drill's questions (training's objectives cloze / cloze_text): one sentence of the text with "what",
// "what year", "what day", "what month" or "how many" where a name or number stood, that name or number the
// answer; the window's first sentence (cut), an unfinished last one, sentences of under 6 words and the first word
// of each (with a run of names it begins: "Mr. Darcy") are never asked.
TEST(EvalData, ClozeQuestionsPutAWhPhraseWhereANameOrNumberStood) {
  const std::string text =
      "of a sentence cut by the window. The battle was fought in 1066 near the\ntown of Hastings. Nothing here "
      "has a name or a number in it at all. Mr. Darcy walked to London with 12 friends (and Jane Bennet) on "
      "Tuesday's market. Then the fleet left Lisbon on 10 June and came back.\n\nShort Line 5.\n\nAn unfinished "
      "sentence naming Paris";
  const std::map<std::string, std::string> expected = {
      {"1066", "The battle was fought in what year near the town of Hastings?"},
      {"Hastings", "The battle was fought in 1066 near the town of what?"},
      {"London", "Mr. Darcy walked to what with 12 friends (and Jane Bennet) on Tuesday's market?"},
      {"12", "Mr. Darcy walked to London with how many friends (and Jane Bennet) on Tuesday's market?"},
      {"Jane Bennet", "Mr. Darcy walked to London with 12 friends (and what) on Tuesday's market?"},
      {"Tuesday", "Mr. Darcy walked to London with 12 friends (and Jane Bennet) on what's market?"},
      {"Lisbon", "Then the fleet left what on 10 June and came back?"},
      {"10", "Then the fleet left Lisbon on what day June and came back?"},
      {"June", "Then the fleet left Lisbon on 10 what month and came back?"},
  };
  std::mt19937_64 rng(3);
  std::map<std::string, int> seen;
  for (int i = 0; i < 400; ++i) {
    const auto q = make_cloze_question(text, rng);
    ASSERT_TRUE(q);
    const auto it = expected.find(q->answer);
    ASSERT_NE(it, expected.end()) << "answer \"" << q->answer << "\" to \"" << q->question << "\"";
    EXPECT_EQ(q->question, it->second);
    ++seen[q->answer];
  }
  EXPECT_EQ(seen.size(), expected.size());  // uniform over the 9: each is drawn (400 draws)
  for (const auto& [answer, n] : seen) EXPECT_GT(n, 20) << answer;
  // "Mr. Darcy" at a sentence's start is its first word (a run of names): not asked; all-caps headings, ordinals
  // and numbers inside words are not names or numbers; nothing to ask gives nothing.
  EXPECT_FALSE(make_cloze_question("cut. CHAPTER ONE was written on the 3rd day of May2 in it. And more", rng));
  EXPECT_FALSE(make_cloze_question("cut. Mr. Darcy walked along the long road home. Then", rng));
  EXPECT_FALSE(make_cloze_question("", rng));
  EXPECT_FALSE(make_cloze_question("One sentence only, with London and 1066 in it.", rng));  // the cut first one
  const auto q = make_cloze_question("cut. He said \"the King of France came in 1,200 ships.\" Then", rng);
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->answer == "France" || q->answer == "1,200" || q->answer == "King") << q->answer;
  EXPECT_EQ(q->question.back(), '?');
  EXPECT_EQ(q->question.find('"', 9), std::string::npos) << q->question;  // the closing quote went with the stop
}

TEST(EvalData, ReadsTextJsonlAndXz) {
  TempDir d;
  write_file(d / "a.txt", "first doc\n\n<|doc|>\nsecond doc");
  write_file(d / "b.jsonl", "{\"text\": \"third\"}\n\n{\"id\": 4, \"text\": \"fourth\"}\n");
  write_file(d / "c.txt", "fifth doc");
  ASSERT_EQ(std::system(("xz -z '" + (d / "c.txt").string() + "'").c_str()), 0);  // leaves c.txt.xz
  auto docs =
      read_eval_documents({(d / "a.txt").string(), (d / "b.jsonl").string(), (d / "c.txt.xz").string()});
  EXPECT_EQ(docs, (std::vector<std::string>{"first doc", "second doc", "third", "fourth", "fifth doc"}));
}

TEST(EvalData, ReadsQaItemsWithAndWithoutOptions) {
  TempDir d;
  write_file(d / "q.jsonl",
             "{\"context\": \"c1\", \"question\": \"q1\", \"answers\": [\"a\", \"b\"], \"options\": null}\n"
             "{\"context\": \"c2\", \"question\": \"q2\", \"answers\": [\"y\"], \"options\": [\"x\", \"y\", "
             "\"z\"]}\n"
             "{\"context\": \"c3\", \"question\": \"q3\", \"answers\": [], \"options\": [\"x\", \"y\"], "
             "\"meta\": {\"answer_index\": 0}}\n");
  auto items = read_qa_items({(d / "q.jsonl").string()});
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].answers, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(items[0].options.empty());
  EXPECT_EQ(items[1].answer_index, 1);  // the option equal to answers[0]
  EXPECT_EQ(items[2].answer_index, 0);  // meta.answer_index
}

TEST(EvalData, MalformedLinesNameFileLineAndField) {
  TempDir d;
  const std::string f = (d / "bad.jsonl").string();
  write_file(f, "{\"text\": \"ok\"}\n{\"text\": 5}\n");
  EXPECT_COENC_ERROR(read_eval_documents({f}), "bad.jsonl:2: field \"text\" must be a string");
  write_file(
      f,
      "{\"context\": \"c\", \"question\": \"q\", \"answers\": [\"a\"]}\n{\"context\": \"c\", \"question\"\n");
  EXPECT_COENC_ERROR(read_qa_items({f}), "bad.jsonl:2: malformed JSON");
  write_file(f, "{\"context\": \"c\", \"question\": \"q\", \"answers\": \"a\"}\n");
  EXPECT_COENC_ERROR(read_qa_items({f}), "bad.jsonl:1: field \"answers\" must be a list of strings");
  write_file(f,
             "{\"context\": \"c\", \"question\": \"q\", \"answers\": [], \"options\": [\"x\"], "
             "\"meta\": {\"answer_index\": 3}}\n");
  EXPECT_COENC_ERROR(read_qa_items({f}), "bad.jsonl:1: field \"meta.answer_index\" must be an index");
  write_file(d / "broken.txt.xz", "not xz at all");
  EXPECT_COENC_ERROR(read_eval_documents({(d / "broken.txt.xz").string()}),
                     "broken.txt.xz: not a valid .xz file");
  write_file(d / "doc.csv", "a,b");
  EXPECT_COENC_ERROR(read_eval_documents({(d / "doc.csv").string()}), "expected a .txt or .jsonl file");
}

}  // namespace
}  // namespace coenc::test
