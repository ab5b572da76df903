// Evaluation of compression quality, always side by side (docs/eval.md): the same decoder reads no context,
// the full context, the context compressed at each ratio, and (where the document outgrows the decoder) the
// context truncated to its window. `coenc eval` is the command line of run_eval.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/types.h"

namespace coenc {

// ---- metrics (src/eval/metrics.cpp)
// ----------------------------------------------------------------------------

// SQuAD's answer normalisation: lower case, punctuation removed, the articles a / an / the removed,
// whitespace collapsed to single spaces (the official evaluate-v1.1.py's normalize_answer, ASCII
// punctuation).
std::string squad_normalize(const std::string& text);
// 1 if the normalised prediction equals any normalised answer, else 0 (SQuAD's exact match).
double exact_match(const std::string& prediction, const std::vector<std::string>& answers);
// SQuAD's token F1 (normalised, whitespace tokens, bag-of-tokens overlap), the best over the answers.
double f1_score(const std::string& prediction, const std::vector<std::string>& answers);

// Corpus BLEU-4 over token sequences: modified n-gram precisions for n = 1..4 summed over all pairs, their
// geometric mean, times the brevity penalty exp(1 - r / c) when the candidates are shorter than the
// references (Papineni et al. 2002; no smoothing: 0 when some order has no match). In [0, 1].
double corpus_bleu4(const std::vector<TokenIds>& candidates, const std::vector<TokenIds>& references);

// Context gain retained: (nll_none - nll_compressed) / (nll_none - nll_full), the share of what the full
// context gains over none that the compressed context keeps. nullopt when the full context gains nothing (<=
// 0).
std::optional<double> gain_retained(double nll_none, double nll_compressed, double nll_full);

// The bucket of a target token's 1-based position that `ppl` reports NLL and gain retained by: "1", "2", then
// powers of two, "3-4", "5-8", ..., "65-128": where in the continuation a compressed context loses.
std::string target_position_bucket(int64_t position);

// The mean of `values` and its standard error (sample standard deviation / sqrt(n)); the error is NaN for
// fewer than two values, the mean for none.
struct MeanError {
  double mean = 0, error = 0;
};
MeanError mean_and_error(const std::vector<double>& values);
// The paired difference b - a over the items both score (item index -> the item's score): its mean and
// standard error, far smaller than either score's own when the items vary more than the conditions do.
MeanError paired_difference(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b);

// ---- data (src/eval/eval_data.cpp)
// -----------------------------------------------------------------------------

// Documents of text files: `.txt` (documents separated by "\n\n<|doc|>\n", as in the project's corpus) or
// `.jsonl` with a string field "text" per line; either may be `.xz`-compressed. Throws InvalidInput naming
// file:line and the field for a malformed line, and the file for an unreadable or corrupt one.
std::vector<std::string> read_eval_documents(const std::vector<std::string>& files);

struct QaItem {
  std::string id, context, question;
  std::vector<std::string> answers;  // acceptable answers, first = main (empty: unanswerable, skipped)
  std::vector<std::string> options;  // multiple choice when not empty
  int64_t answer_index = -1;  // the right option (meta.answer_index, or the option equal to answers[0])
};
// QA JSONL in the corpus schema: "context", "question", "answers" (list of strings), optional "options" (list
// or null) and "meta.answer_index"; `.xz` allowed. Throws InvalidInput naming file:line and the field.
std::vector<QaItem> read_qa_items(const std::vector<std::string>& files);

// ---- the harness (src/eval/eval.cpp)
// ---------------------------------------------------------------------------

struct EvalOptions {
  std::string task;               // "recon", "ppl", "qa", "lookup", "cloze" or "needle"
  std::vector<std::string> data;  // --data files
  std::vector<int64_t> ratios;    // compression ratios to evaluate (empty: the checkpoint's own)
  int64_t limit = 0;              // items: chunks (recon), documents (ppl), questions (qa, lookup, cloze), trials
                                  // per cell (needle); 0: the task's default (200, 200, 500, 300, 300, 2)
  uint64_t seed = 0;  // sampling of documents, windows, needle numbers: the same seed, the same items
  int64_t context_tokens = 512;    // ppl: K tokens of context; lookup, cloze: the window asked about
  int64_t target_tokens = 128;     // ppl: M target tokens scored
  int64_t raw_tail = 0;            // ppl: > 0 adds compressed@R+tailN: all but the context's last N tokens
                                   // compressed, those N after [EOC] as text
  int64_t max_answer_tokens = 32;  // qa, needle: greedy answer length
  std::string out;                 // needle: folder for needle.svg (and results.json); "" for none
  bool item_scores = false;        // add "items": every item's own scores by condition (for pairing runs)
  bool progress = true;
};

// Runs one task on `model` (its tokenizers `tok`) and returns the result object that `coenc eval --json`
// prints:
// {"task", "model", "n", "ratios", "conditions": {"none": {...}, "full": {...}, "compressed@R": {...},
//  "truncated": {...}, "compressed@R+tailN" (ppl with raw_tail)}, "gain_retained@R" and
//  "gain_retained_by_position@R" (ppl; also for R+tailN; each condition then has
//  "nll_by_position": [{"positions": "3-4", "nll"}, ...]), "retention@R" (qa, lookup, cloze; F1's where any question
//  is open, else accuracy's; a qa set of both kinds adds "retention_accuracy@R"),
//  "difference@R" (ppl, qa, lookup, cloze), ...} with metrics by name (token_accuracy, exact_accuracy, bleu4, nll,
// ppl, accuracy, em, f1, positions, kv_bytes, seconds; needle: accuracy and "cells"), each item-scored metric with
// its standard error as METRIC_stderr; "difference@R" holds compressed@R minus full (or truncated), paired by
// item, with its standard errors; with options.item_scores, "items": [{"item", "condition", METRIC: score, ...}]
// in item order. `model_name` fills "model". Throws InvalidInput for unusable data (naming the file) or options.
nlohmann::json run_eval(CoEncoderImpl& model, const CoEncoderTokenizers& tok, const EvalOptions& options,
                        const std::string& model_name);

// The needle heatmap (depth x length, one panel per condition) of a needle result, as an SVG document.
std::string needle_heatmap_svg(const nlohmann::json& needle_result);

}  // namespace coenc
