#include "train/co_encoder_data.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/co_encoder.h"
#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "io/data_file.h"
#include "train/text_dataset.h"

namespace coenc::data {

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::Reconstruction: return "reconstruction";
    case Objective::Continuation: return "continuation";
    case Objective::Qa: return "qa";
    case Objective::Lm: return "lm";
    case Objective::QaText: return "qa_text";
    case Objective::Passkey: return "passkey";
    case Objective::Lookup: return "lookup";
    case Objective::LookupText: return "lookup_text";
    case Objective::Cloze: return "cloze";
    case Objective::ClozeText: return "cloze_text";
  }
  return "?";
}

namespace {

// Cumulative sums of per-document weights, for a pick proportional to the weight.
std::vector<int64_t> cumulative(const std::vector<int64_t>& weights) {
  std::vector<int64_t> out(weights.size());
  int64_t sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) out[i] = sum += weights[i];
  return out;
}

}  // namespace

TextExamples::TextExamples(const std::vector<std::string>& files, const Tokenizer& context_tok,
                           const Tokenizer& text_tok, bool same_tokenizer, double eval_fraction,
                           int64_t context_tokens, int64_t continuation_tokens, bool need_continuation,
                           bool progress, int64_t min_context_tokens, int64_t passkey_tokens,
                           int64_t lm_tokens)
    : context_tok_(context_tok),
      text_tok_(text_tok),
      same_tokenizer_(same_tokenizer),
      context_tokens_(context_tokens),
      continuation_tokens_(continuation_tokens),
      min_context_tokens_(min_context_tokens),
      passkey_tokens_(passkey_tokens > 0 ? passkey_tokens : context_tokens),
      lm_tokens_(lm_tokens > 0 ? lm_tokens : continuation_tokens) {
  COENC_CHECK(min_context_tokens >= 0 && min_context_tokens <= context_tokens,
              "min_context_tokens ({}) must be in [0, context_tokens ({})]", min_context_tokens,
              context_tokens);
  COENC_CHECK(eval_fraction > 0 && eval_fraction < 0.5, "eval_fraction must be in (0, 0.5), got {}", eval_fraction);
  for_each_document(
      files, progress,
      [&](std::string_view doc) {
        const TokenIds ids = context_tok.encode(doc, EncodeOptions{false, false});
        if (!ids.empty()) docs_.emplace_back(ids.begin(), ids.end());
      },
      [&] { return format("{} documents", docs_.size()); });
  const int64_t n = static_cast<int64_t>(docs_.size());
  COENC_CHECK(n >= 2, "train_files: {} document(s); need at least 2 (one held out for evaluation)", n);
  split_ = n - std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(n) * eval_fraction));
  std::vector<int64_t> all_tr, all_ev, cont_tr, cont_ev;
  for (int64_t d = 0; d < n; ++d) {
    const int64_t len = static_cast<int64_t>(docs_[d].size());
    (d < split_ ? all_tr : all_ev).push_back(len);
    if (len > context_tokens_) {
      (d < split_ ? cont_tr : cont_ev).push_back(len);
      (d < split_ ? cont_docs_train_ : cont_docs_eval_).push_back(d);
    }
  }
  all_train_ = cumulative(all_tr);
  all_eval_ = cumulative(all_ev);
  cont_train_ = cumulative(cont_tr);
  cont_eval_ = cumulative(cont_ev);
  COENC_CHECK(!need_continuation || (!cont_docs_train_.empty() && !cont_docs_eval_.empty()),
              "train_files: continuation needs documents longer than context_tokens ({} tokens) both for training "
              "and among the held-out ones; found {} and {}",
              context_tokens_, cont_docs_train_.size(), cont_docs_eval_.size());
}

int64_t TextExamples::pick_doc(const std::vector<int64_t>& cum, int64_t first, std::mt19937_64& rng) const {
  std::uniform_int_distribution<int64_t> pick(0, cum.back() - 1);
  const int64_t r = pick(rng);
  return first + (std::upper_bound(cum.begin(), cum.end(), r) - cum.begin());
}

TokenIds TextExamples::as_text(const std::vector<int32_t>& doc, int64_t begin, int64_t end) const {
  TokenIds ids(doc.begin() + begin, doc.begin() + end);
  if (same_tokenizer_) return ids;
  return text_tok_.encode(context_tok_.decode(ids), EncodeOptions{false, false});
}

Example TextExamples::sample(Objective o, std::mt19937_64& rng, bool eval, int64_t max_passkey_tokens,
                            bool full_reading) const {
  Example ex;
  ex.objective = o;
  int64_t n_context = context_tokens_;
  if (!eval && min_context_tokens_ > 0 && min_context_tokens_ < context_tokens_)
    n_context = std::uniform_int_distribution<int64_t>(min_context_tokens_, context_tokens_)(rng);
  if (o == Objective::Reconstruction) {
    const auto& doc = docs_[pick_doc(eval ? all_eval_ : all_train_, eval ? split_ : 0, rng)];
    const int64_t len = static_cast<int64_t>(doc.size()), w = std::min(len, n_context);
    std::uniform_int_distribution<int64_t> start(0, len - w);
    const int64_t s = start(rng);
    ex.context.assign(doc.begin() + s, doc.begin() + s + w);
    ex.target = as_text(doc, s, s + w);
    return ex;
  }
  if (o == Objective::Passkey) return passkey(rng, eval, max_passkey_tokens);
  if (o == Objective::Lookup || o == Objective::LookupText)
    return lookup(rng, eval, n_context, o == Objective::LookupText);
  if (o == Objective::Cloze || o == Objective::ClozeText)
    return cloze(rng, eval, n_context, o == Objective::ClozeText);
  COENC_CHECK_CODE(o == Objective::Continuation || o == Objective::Lm, Internal, "not a text objective");
  const auto& docs = eval ? cont_docs_eval_ : cont_docs_train_;
  const auto& doc = docs_[docs[pick_doc(eval ? cont_eval_ : cont_train_, 0, rng)]];
  const int64_t len = static_cast<int64_t>(doc.size());
  const int64_t n_target = o == Objective::Lm ? lm_tokens_ : continuation_tokens_;
  std::uniform_int_distribution<int64_t> start(0, std::max<int64_t>(0, len - n_context - n_target));
  const int64_t s = start(rng), mid = s + n_context, end = std::min(len, mid + n_target);
  if (o == Objective::Continuation) {
    ex.context.assign(doc.begin() + s, doc.begin() + mid);
    if (full_reading) ex.teacher_prompt = as_text(doc, s, mid);
  }
  ex.target = as_text(doc, mid, end);
  if (static_cast<int64_t>(ex.target.size()) > n_target) ex.target.resize(n_target);
  if (ex.target.empty()) ex.target = as_text(doc, mid, len);  // decoding may have merged the tail away
  return ex;
}

Example TextExamples::passkey(std::mt19937_64& rng, bool eval, int64_t max_tokens) const {
  const int64_t hi = max_tokens > 0 ? std::min(passkey_tokens_, max_tokens) : passkey_tokens_;
  const int64_t lo = std::min<int64_t>(64, hi);
  std::uniform_real_distribution<double> log_len(std::log(static_cast<double>(lo)), std::log(static_cast<double>(hi)));
  const int64_t want = std::clamp<int64_t>(std::llround(std::exp(log_len(rng))), lo, hi);
  const int64_t first = eval ? split_ : 0, last = eval ? static_cast<int64_t>(docs_.size()) : split_;
  int64_t d = pick_doc(eval ? all_eval_ : all_train_, first, rng);
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(docs_[d].size()) - 1);
  TokenIds hay(docs_[d].begin() + start(rng), docs_[d].end());
  while (static_cast<int64_t>(hay.size()) < want) {  // run on into the next documents of the same split
    d = d + 1 < last ? d + 1 : first;
    hay.insert(hay.end(), docs_[d].begin(), docs_[d].end());
  }
  std::uniform_int_distribution<int> number(10000, 99999);
  const std::string key = std::to_string(number(rng));
  const TokenIds needle = context_tok_.encode(" The secret number is " + key + ". ", EncodeOptions{false, false});
  const int64_t n_hay = std::max<int64_t>(0, want - static_cast<int64_t>(needle.size()));
  const int64_t at = std::uniform_int_distribution<int64_t>(0, n_hay)(rng);
  Example ex;
  ex.objective = Objective::Passkey;
  ex.context.assign(hay.begin(), hay.begin() + at);
  ex.context.insert(ex.context.end(), needle.begin(), needle.end());
  ex.context.insert(ex.context.end(), hay.begin() + at, hay.begin() + n_hay);
  ex.prompt = text_tok_.encode("What is the secret number?", EncodeOptions{false, false});
  ex.target = text_tok_.encode(" " + key, EncodeOptions{false, false});
  if (auto eos = text_tok_.eos_id()) ex.target.push_back(*eos);
  return ex;
}

Example TextExamples::question_about(const std::vector<int32_t>& doc, int64_t begin, int64_t end, TokenIds question,
                                     TokenIds answer, Objective o) const {
  Example ex;
  ex.objective = o;
  if (o == Objective::LookupText || o == Objective::ClozeText) {
    ex.prompt = plain_text_prompt(text_tok_, as_text(doc, begin, end), question);
  } else {
    ex.context.assign(doc.begin() + begin, doc.begin() + end);
    ex.prompt = std::move(question);
  }
  ex.target = std::move(answer);
  if (auto eos = text_tok_.eos_id()) ex.target.push_back(*eos);
  return ex;
}

Example TextExamples::lookup(std::mt19937_64& rng, bool eval, int64_t n_context, bool in_full) const {
  constexpr int64_t kNeed = kLookupCueTokens + kLookupAnswerTokens;
  // Documents are drawn in proportion to their length, so a short one is rare; a cue that decodes to blank text
  // (a run of newlines) quotes nothing and is drawn again.
  for (int attempt = 0; attempt < 64; ++attempt) {
    const auto& doc = docs_[pick_doc(eval ? all_eval_ : all_train_, eval ? split_ : 0, rng)];
    const auto span = draw_lookup_span(doc, n_context, context_tok_, rng);
    if (!span) continue;
    const std::string question =
        lookup_question(context_tok_.decode(TokenIds(doc.begin() + span->cue, doc.begin() + span->answer)));
    if (question.empty()) continue;
    return question_about(doc, span->begin, span->end, text_tok_.encode(question, EncodeOptions{false, false}),
                          as_text(doc, span->answer, span->stop), in_full ? Objective::LookupText : Objective::Lookup);
  }
  fail(ErrorCode::InvalidInput,
       "objective {}: no {} document of at least {} tokens with a quotable cue was found in 64 draws (the "
       "train_files' documents are too short)",
       in_full ? "lookup_text" : "lookup", eval ? "held-out" : "training", kNeed);
}

Example TextExamples::cloze(std::mt19937_64& rng, bool eval, int64_t n_context, bool in_full) const {
  for (int attempt = 0; attempt < 64; ++attempt) {
    const auto& doc = docs_[pick_doc(eval ? all_eval_ : all_train_, eval ? split_ : 0, rng)];
    const int64_t len = static_cast<int64_t>(doc.size()), w = std::min(len, n_context);
    const int64_t s = std::uniform_int_distribution<int64_t>(0, len - w)(rng);
    const auto q = make_cloze_question(context_tok_.decode(TokenIds(doc.begin() + s, doc.begin() + s + w)), rng);
    if (!q) continue;
    TokenIds question = text_tok_.encode(q->question, EncodeOptions{false, false});
    TokenIds answer = text_tok_.encode(" " + q->answer, EncodeOptions{false, false});
    if (static_cast<int64_t>(question.size()) > kClozeQuestionTokens ||
        static_cast<int64_t>(answer.size()) > kClozeExtraTokens - kClozeQuestionTokens - 2)
      continue;
    return question_about(doc, s, s + w, std::move(question), std::move(answer),
                          in_full ? Objective::ClozeText : Objective::Cloze);
  }
  fail(ErrorCode::InvalidInput,
       "objective {}: no {} window of the train_files made a cloze question in 64 draws (it needs prose: finished "
       "sentences of 6-40 words with a capitalised name or a number after their first word)",
       in_full ? "cloze_text" : "cloze", eval ? "held-out" : "training");
}

QaExamples::QaExamples(const std::vector<std::string>& files, const Tokenizer& context_tok,
                       const Tokenizer& text_tok, double eval_fraction, int64_t max_context_tokens,
                       int64_t max_text_positions)
    : text_tok_(&text_tok) {
  COENC_CHECK(eval_fraction > 0 && eval_fraction < 0.5, "eval_fraction must be in (0, 0.5), got {}", eval_fraction);
  const auto eos = text_tok.eos_id();
  for (const auto& file : files) {
    for_each_jsonl(file, read_data_file(file, "QA data"), [&](int64_t line_no, const nlohmann::json& j) {
      for (const char* key : {"context", "question"})
        COENC_CHECK(j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty(),
                    "{}:{}: field \"{}\" must be a non-empty string", file, line_no, key);
      COENC_CHECK(j.contains("answers"), "{}:{}: missing field \"answers\"", file, line_no);
      const nlohmann::json& a = j["answers"];
      std::string answer;
      if (a.is_string()) {
        answer = a.get<std::string>();
      } else {
        COENC_CHECK(a.is_array() && !a.empty() && a[0].is_string(),
                    "{}:{}: field \"answers\" must be a string or a non-empty list of strings, got {}", file,
                    line_no, a.dump());
        answer = a[0].get<std::string>();
      }
      COENC_CHECK(!answer.empty(), "{}:{}: field \"answers\": the first answer is empty", file, line_no);
      Example ex;
      ex.objective = Objective::Qa;
      ex.context = context_tok.encode(j["context"].get<std::string>(), EncodeOptions{false, false});
      COENC_CHECK(!ex.context.empty(), "{}:{}: the context encodes to no tokens", file, line_no);
      if (static_cast<int64_t>(ex.context.size()) > max_context_tokens) ex.context.resize(max_context_tokens);
      TokenIds text_context = text_tok.encode(j["context"].get<std::string>(), EncodeOptions{false, false});
      if (static_cast<int64_t>(text_context.size()) > max_context_tokens)
        text_context.resize(max_context_tokens);
      text_contexts_.push_back(std::move(text_context));
      ex.prompt = text_tok.encode(j["question"].get<std::string>(), EncodeOptions{false, false});
      ex.target = text_tok.encode(" " + answer, EncodeOptions{false, false});
      if (eos) ex.target.push_back(*eos);
      items_.push_back(std::move(ex));
    });
  }
  const int64_t n = static_cast<int64_t>(items_.size());
  COENC_CHECK(n >= 2, "qa_files: {} example(s); need at least 2 (one held out for evaluation)", n);
  split_ = n - std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(n) * eval_fraction));
  for (int64_t i = 0; i < n; ++i) {
    const size_t reading = plain_text_prompt(text_tok, text_contexts_[i], items_[i].prompt).size() +
                           items_[i].target.size();
    fits_.push_back(static_cast<int64_t>(reading) <= max_text_positions);
    if (fits_.back()) (i < split_ ? fits_train_ : fits_eval_).push_back(i);
  }
}

Example QaExamples::sample(Objective o, std::mt19937_64& rng, bool eval, bool full_reading) const {
  COENC_CHECK_CODE(o == Objective::Qa || o == Objective::QaText, Internal, "not a QA objective");
  std::uniform_int_distribution<int64_t> pick(eval ? split_ : 0, eval ? static_cast<int64_t>(items_.size()) - 1 : split_ - 1);
  int64_t i = pick(rng);
  if (o == Objective::QaText) {
    const auto& fits = eval ? fits_eval_ : fits_train_;
    COENC_CHECK(!fits.empty(),
                "qa_files: no {} item's context, question and answer fit the decoder's window as plain text "
                "(objective qa_text)",
                eval ? "held-out" : "training");
    i = fits[std::uniform_int_distribution<size_t>(0, fits.size() - 1)(rng)];
  }
  Example ex = items_[i];
  if (o == Objective::QaText) {
    ex.objective = Objective::QaText;
    ex.context.clear();
    ex.prompt = plain_text_prompt(*text_tok_, text_contexts_[i], ex.prompt);
  } else if (full_reading && fits_[static_cast<size_t>(i)]) {
    ex.teacher_prompt = plain_text_prompt(*text_tok_, text_contexts_[i], ex.prompt);
  }
  return ex;
}

}  // namespace coenc::data
