// Training examples for the Co-Encoder objectives. Every objective becomes the same shape of example: context ids
// (compressed by the tower and connector), a text prompt (read by the decoder, no loss) and a text target (the
// tokens the loss is on). Sampling draws only from the caller's std::mt19937_64, so the generator's state is the
// whole data position of a run (saved in checkpoints).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "coenc/tokenizer.h"
#include "coenc/types.h"

namespace coenc::data {

enum class Objective {
  Reconstruction = 0, Continuation = 1, Qa = 2, Lm = 3, QaText = 4, Passkey = 5, Lookup = 6, LookupText = 7,
  Cloze = 8, ClozeText = 9
};
constexpr int kNumObjectives = 10;
// The longest cloze question a cloze_text example reads (a longer one is drawn again): with its answer, a
// cloze_text example needs context_tokens + kClozeExtraTokens positions.
constexpr int64_t kClozeQuestionTokens = 96, kClozeExtraTokens = 128;
const char* objective_name(Objective o);

struct Example {
  Objective objective = Objective::Reconstruction;
  TokenIds context;       // context-tokenizer ids, compressed in chunks of chunk_size (empty: no context block)
  TokenIds prompt;        // text-tokenizer ids the decoder reads after the block, without loss
  TokenIds target;        // text-tokenizer ids the loss is on
  // The same example read in full, for distillation (TrainConfig::distill): the context as text-tokenizer ids
  // laid out as the full-context reading lays it out (continuation: the context's text; qa: plain_text_prompt of
  // the context and the question), followed by `target`. Made only when the sampler is asked for it
  // (`full_reading`); empty for the other objectives and for QA items whose full reading does not fit the
  // decoder's window.
  TokenIds teacher_prompt;
};

// Plain-text documents (corpus format: documents separated by "\n\n<|doc|>\n"), encoded with the context
// tokenizer. The last `eval_fraction` of the documents (at least one) are held out.
class TextExamples {
 public:
  // `same_tokenizer`: context and text tokenizers are one, so targets reuse the context ids (no decode/encode).
  TextExamples(const std::vector<std::string>& files, const Tokenizer& context_tok, const Tokenizer& text_tok,
               bool same_tokenizer, double eval_fraction, int64_t context_tokens, int64_t continuation_tokens,
               bool need_continuation, bool progress, int64_t min_context_tokens = 0,
               int64_t passkey_tokens = 0, int64_t lm_tokens = 0);

  // Reconstruction: a window of up to context_tokens tokens (a whole document when shorter) as context, its
  // text as the target. Continuation: context_tokens tokens as context, the next (up to) continuation_tokens
  // tokens' text as the target. Lm: the continuation example with no context, its target lm_tokens long
  // (0: continuation_tokens). `eval` draws from the held-out
  // documents. With min_context_tokens > 0, training examples draw their context length uniformly from
  // [min_context_tokens, context_tokens] (so the decoder learns to read blocks of every length it will meet);
  // evaluation examples keep context_tokens.
  // Passkey: the retrieval drill `coenc eval --task needle` measures. A span of the documents (running on into
  // the next ones where a document is short), its length drawn log-uniformly from [64, passkey_tokens], with
  // " The secret number is NNNNN. " (a random five-digit number) inserted at a random depth; the prompt is
  // "What is the secret number?", the target " NNNNN" then EOS. `max_passkey_tokens` > 0 lowers the haystack's
  // upper bound to it (the trainer passes what the decoder can hold at the step's compression ratio).
  // Lookup: the extractive drill (what a question about a fact stated in the document asks of its vectors): a
  // reconstruction window as context, about kLookupCueTokens of its tokens from a random place quoted in the
  // prompt (lookup_question), and about kLookupAnswerTokens tokens after them as the target, then EOS; cue and
  // answer are whole words (draw_lookup_span, coenc/pipeline.h).
  // Any text makes these, so unlike the QA train splits they do not run out. LookupText is the same drill read in
  // full (as QaText is to Qa): no context block, the prompt is the window's text then the question, as
  // plain_text_prompt lays it out and `coenc eval --task lookup`'s full condition reads it.
  // Cloze: questions in the form SQuAD asks them, made from the text (make_cloze_question, coenc/pipeline.h): a
  // reconstruction window as context, a question made from one of its sentences by putting "what" / "what year" /
  // "how many" where a name or number stood, the target " " + that name or number then EOS (as a QA target).
  // ClozeText is the same read in full, as LookupText is to Lookup.
  // `full_reading`: also fill a continuation example's teacher_prompt (a copy, or a decode and re-encode when the
  // tokenizers differ: made only where it is used, evaluation and distillation).
  Example sample(Objective o, std::mt19937_64& rng, bool eval, int64_t max_passkey_tokens = 0,
                 bool full_reading = false) const;

  int64_t n_train_docs() const { return split_; }
  int64_t n_eval_docs() const { return static_cast<int64_t>(docs_.size()) - split_; }

 private:
  int64_t pick_doc(const std::vector<int64_t>& cumulative, int64_t first, std::mt19937_64& rng) const;
  TokenIds as_text(const std::vector<int32_t>& doc, int64_t begin, int64_t end) const;
  Example passkey(std::mt19937_64& rng, bool eval, int64_t max_tokens) const;
  Example lookup(std::mt19937_64& rng, bool eval, int64_t n_context, bool in_full) const;
  Example cloze(std::mt19937_64& rng, bool eval, int64_t n_context, bool in_full) const;
  // A question about the window [begin, end) of `doc` (lookup, cloze): the window compressed before the question,
  // or, for the *_text objectives, read in full (plain_text_prompt of its text, then the question); the answer
  // then EOS as the target.
  Example question_about(const std::vector<int32_t>& doc, int64_t begin, int64_t end, TokenIds question,
                         TokenIds answer, Objective o) const;
  std::vector<std::vector<int32_t>> docs_;
  int64_t split_ = 0;                     // docs_[0, split_) train, the rest eval
  // Cumulative token counts for length-weighted document picks (any document; those long enough to continue).
  std::vector<int64_t> all_train_, all_eval_, cont_train_, cont_eval_;
  std::vector<int64_t> cont_docs_train_, cont_docs_eval_;
  const Tokenizer& context_tok_;
  const Tokenizer& text_tok_;
  bool same_tokenizer_;
  int64_t context_tokens_, continuation_tokens_;
  int64_t
      min_context_tokens_;  // > 0: a training example's context length is drawn from [min, context_tokens_]
  int64_t passkey_tokens_;  // the longest passkey haystack
  int64_t lm_tokens_;       // the target length of an Lm example
};

// Question answering, JSONL: one {"context": str, "question": str, "answers": [str, ...] | str} object per
// line (other fields ignored; blank lines skipped). The context is encoded with the context tokenizer and cut
// to max_context_tokens; the prompt is the question, the target " " + the first answer, then the text
// tokenizer's EOS when it has one. QaText is the same item read in full: no context block, the prompt is the
// context's text (text tokenizer, cut to max_context_tokens) then the question, as plain_text_prompt
// (coenc/co_encoder.h) lays it out; it draws only items whose full reading fits max_text_positions (the
// decoder's window), since a cut context may have lost the answer. Malformed lines are errors naming the file
// and line.
class QaExamples {
 public:
  QaExamples(const std::vector<std::string>& files, const Tokenizer& context_tok, const Tokenizer& text_tok,
             double eval_fraction, int64_t max_context_tokens, int64_t max_text_positions);
  // `full_reading`: also fill a qa example's teacher_prompt (where it fits the window).
  Example sample(Objective o, std::mt19937_64& rng, bool eval, bool full_reading = false) const;
  int64_t n_train() const { return split_; }
  int64_t n_eval() const { return static_cast<int64_t>(items_.size()) - split_; }

 private:
  std::vector<Example> items_;
  const Tokenizer* text_tok_;
  std::vector<TokenIds>
      text_contexts_;  // each item's context in text-tokenizer ids, cut to max_context_tokens
  int64_t split_ = 0;
  std::vector<int64_t> fits_train_, fits_eval_;  // items whose QaText reading fits the decoder's window
  std::vector<bool> fits_;                       // the same, by item
};

}  // namespace coenc::data
