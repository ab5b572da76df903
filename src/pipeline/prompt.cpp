// Prompts of the pipeline: the decoder input of a question about compressed documents (the seed's raw layout, or
// the decoder's chat template with the compressed blocks inside the user turn), and its plain-text counterpart.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <string>

#include "coenc/error.h"
#include "coenc/pipeline.h"

namespace coenc {

namespace {

// Document d's mark in the text before it is split (control characters keep it out of real text).
std::string document_mark(size_t d) { return "\x1f\x1e coenc document " + std::to_string(d) + " \x1e\x1f"; }

// The user text with every document's mark: "{docN}" placeholders replaced by document N-1's mark, and the marks
// of documents not named at the start, in order.
std::string mark_documents(const std::string& question, size_t n_documents) {
  std::string body;
  std::vector<bool> named(n_documents, false);
  size_t i = 0;
  while (i < question.size()) {
    const size_t open = question.find("{doc", i);
    if (open == std::string::npos) break;
    size_t j = open + 4;
    while (j < question.size() && std::isdigit(static_cast<unsigned char>(question[j]))) ++j;
    if (j == open + 4 || j >= question.size() || question[j] != '}') {  // not a placeholder: plain text
      body += question.substr(i, open + 4 - i);
      i = open + 4;
      continue;
    }
    const std::string digits = question.substr(open + 4, j - open - 4);
    const size_t n = digits.size() > 6 ? 0 : std::stoul(digits);
    COENC_CHECK(n >= 1 && n <= n_documents, "the question names {{doc{}}}, but {} document(s) were given ({{doc1}} is "
                "the first)", digits, n_documents);
    COENC_CHECK(!named[n - 1], "the question names {{doc{}}} twice: each document's block can stand in one place", n);
    named[n - 1] = true;
    body += question.substr(i, open - i) + document_mark(n - 1);
    i = j + 1;
  }
  body += question.substr(std::min(i, question.size()));
  std::string front;
  for (size_t d = 0; d < n_documents; ++d)
    if (!named[d]) front += document_mark(d);
  return front + body;
}

// Why a prompt is laid out raw (for the error when a system message cannot be placed).
const char* why_raw(const CoEncoderConfig& config, const AskOptions& options) {
  return !options.chat                    ? "the raw layout was asked for"
         : config.prompt_layout == "raw" ? "this checkpoint was trained on the raw layout"
                                          : "the decoder's tokenizer has no chat template";
}

}  // namespace

bool uses_chat_layout(const CoEncoderConfig& config, const Tokenizer& tok, const AskOptions& options) {
  const bool has_template = !tok.chat_template().empty();
  COENC_CHECK(!(options.force_chat && !options.chat), "the chat and raw layouts were both asked for");
  COENC_CHECK(!options.force_chat || has_template || !options.chat_format.empty(),
              "the chat layout was asked for, but the decoder's tokenizer has no chat template (name a chat format)");
  const bool chat = options.force_chat || (options.chat && (!options.chat_format.empty() ||
                                                            (config.prompt_layout != "raw" && has_template)));
  if (chat) resolve_chat_template(tok, options.chat_format);  // an unknown format is an error before any work
  COENC_CHECK(options.system.empty() || chat, "a system message needs the chat layout: {}",
              why_raw(config, options));
  COENC_CHECK(options.chat_template_kwargs.is_null() || chat, "chat template kwargs need the chat layout: {}",
              why_raw(config, options));
  return chat;
}

namespace {

// The decoder input of `messages`, whose text holds document marks (document_mark) where blocks go: rendered with
// the chat template (chat) or joined by newlines (raw), then split at the marks, text pieces becoming token
// segments and marks the documents' blocks.
AskPrompt lay_out(CoEncoderImpl& model, const Tokenizer& tok, const std::vector<std::vector<torch::Tensor>>& documents,
                  const std::vector<ChatMessage>& messages, const AskOptions& options) {
  for (size_t d = 0; d < documents.size(); ++d)
    COENC_CHECK(std::any_of(messages.begin(), messages.end(),
                            [&](const ChatMessage& m) { return m.content.find(document_mark(d)) != std::string::npos; }),
                "document {} is given but no message refers to it", d + 1);
  AskPrompt p;
  append_unique(p.stop_tokens, model.config().text.eos_token_ids);
  std::vector<torch::Tensor> blocks;  // each [2 + sum k, d_text]
  for (const auto& chunks : documents) blocks.push_back(model.context_block(chunks));
  std::vector<bool> placed(documents.size(), false);
  p.document_segments.assign(documents.size(), 0);
  auto add_split = [&](const std::string& text, const EncodeOptions& eo) {
    size_t at = 0;
    while (at <= text.size()) {
      size_t next = std::string::npos, doc = 0;
      for (size_t d = 0; d < documents.size(); ++d) {
        const size_t pos = text.find(document_mark(d), at);
        if (pos < next) next = pos, doc = d;
      }
      TokenIds piece = tok.encode(text.substr(at, next == std::string::npos ? std::string::npos : next - at), eo);
      if (!piece.empty()) p.segments.push_back(Segment::tokens(std::move(piece)));
      if (next == std::string::npos) break;
      if (!placed[doc]) p.document_segments[doc] = p.segments.size();
      placed[doc] = true;
      p.segments.push_back(Segment::embeddings(blocks[doc]));
      at = next + document_mark(doc).size();
    }
  };
  p.chat = uses_chat_layout(model.config(), tok, options);
  if (!p.chat) {
    std::string text;
    for (size_t m = 0; m < messages.size(); ++m) {
      COENC_CHECK(messages[m].role != "system", "a system message needs the chat layout: {}",
                  why_raw(model.config(), options));
      text += (m ? "\n" : "") + messages[m].content;
    }
    EncodeOptions eo;
    eo.add_special = false;
    eo.parse_special = false;  // the question is user text: "<|im_end|>" typed in it is not the special token
    add_split(text, eo);
  } else {
    const ChatTemplate chat = resolve_chat_template(tok, options.chat_format);
    ChatRenderOptions ro;
    ro.template_kwargs = options.chat_template_kwargs;
    if (auto bos = tok.bos_id()) ro.bos_token = tok.id_to_piece(*bos);
    if (auto eos = tok.eos_id()) ro.eos_token = tok.id_to_piece(*eos);
    const std::string text = render_chat(messages, chat, ro);
    for (size_t d = 0; d < documents.size(); ++d)
      COENC_CHECK(text.find(document_mark(d)) != std::string::npos, "the chat template ({}) dropped the user turn's text",
                  chat.name());
    // As encode_chat (Hugging Face's apply_chat_template): special-token text is parsed, nothing is added.
    EncodeOptions eo;
    eo.add_special = false;
    eo.parse_special = true;
    add_split(text, eo);
    append_unique(p.stop_tokens, chat_stop_ids(tok, chat));
  }
  for (const auto& s : p.segments) p.n_positions += s.length();
  return p;
}

void check_no_mark(const std::string& text, const char* what) {
  COENC_CHECK(text.find("\x1f\x1e coenc") == std::string::npos, "the {} contains coenc's document marker", what);
}

}  // namespace

AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& tok, const std::vector<std::vector<torch::Tensor>>& documents,
                     const std::string& question, const AskOptions& options) {
  COENC_CHECK(!documents.empty() || !question.empty(), "nothing to ask: no documents and an empty question");
  check_no_mark(question, "question");
  std::vector<ChatMessage> messages;
  if (!options.system.empty()) messages.push_back({"system", options.system});
  messages.push_back({"user", mark_documents(question, documents.size())});
  return lay_out(model, tok, documents, messages, options);
}

AskPrompt conversation_prompt(CoEncoderImpl& model, const Tokenizer& tok,
                              const std::vector<std::vector<torch::Tensor>>& documents,
                              const std::vector<ConversationMessage>& conversation, const AskOptions& options) {
  COENC_CHECK(!conversation.empty(), "the conversation has no messages");
  COENC_CHECK(options.system.empty(), "conversation_prompt takes its system message as a message");
  std::vector<ChatMessage> messages;
  for (const auto& m : conversation) {
    std::string content;
    for (const auto& part : m.parts) {
      if (part.document < 0) {
        check_no_mark(part.text, "message");
        content += part.text;
      } else {
        COENC_CHECK(part.document < static_cast<int64_t>(documents.size()),
                    "a message refers to document {}, but {} were given", part.document + 1, documents.size());
        content += document_mark(static_cast<size_t>(part.document));
      }
    }
    messages.push_back({m.role, std::move(content)});
  }
  return lay_out(model, tok, documents, messages, options);
}

AskPrompt ask_prompt(CoEncoderImpl& model, const Tokenizer& tok, const std::vector<torch::Tensor>& chunks,
                     const std::string& question, const AskOptions& options) {
  return ask_prompt(model, tok, std::vector<std::vector<torch::Tensor>>{chunks}, question, options);
}

std::vector<Segment> raw_prompt(CoEncoderImpl& model, const std::vector<std::vector<torch::Tensor>>& documents,
                                const TokenIds& question) {
  std::vector<Segment> segments;
  for (const auto& chunks : documents) segments.push_back(Segment::embeddings(model.context_block(chunks)));
  if (!question.empty()) segments.push_back(Segment::tokens(question));
  return segments;
}

std::string lookup_question(std::string cue) {
  std::replace(cue.begin(), cue.end(), '\n', ' ');
  const size_t first = cue.find_first_not_of(" \t\r"), last = cue.find_last_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return "What follows \"" + cue.substr(first, last - first + 1) + "\" in the text?";
}

bool starts_word(const Tokenizer& tok, const TokenIds& ids, int64_t pos) {
  if (pos <= 0 || pos >= static_cast<int64_t>(ids.size())) return true;
  const std::string before = tok.decode(TokenIds{ids[pos - 1]}), both = tok.decode(TokenIds{ids[pos - 1], ids[pos]});
  if (both.compare(0, before.size(), before) != 0) return false;  // one character split over both: mid-word
  if (both.size() == before.size()) return true;                  // adds no text (a special token)
  const auto edge = [](char ch) {
    const unsigned char c = static_cast<unsigned char>(ch);
    return c < 0x80 && (std::isspace(c) || std::ispunct(c));
  };
  // " word" and ",word" begin a word; so does "word" after "\n" or ","
  return edge(both[before.size()]) || (!before.empty() && edge(before.back()));
}

std::optional<LookupSpan> draw_lookup_span(const TokenIds& doc, int64_t window, const Tokenizer& tok,
                                           std::mt19937_64& rng) {
  constexpr int64_t kNeed = kLookupCueTokens + kLookupAnswerTokens, kSlack = kLookupWordSlack;
  const int64_t doc_len = static_cast<int64_t>(doc.size());
  if (doc_len < kNeed) return std::nullopt;
  LookupSpan s;
  const int64_t w = std::min(doc_len, std::max(window, kNeed));
  s.begin = std::uniform_int_distribution<int64_t>(0, doc_len - w)(rng);
  s.end = s.begin + w;
  // The first word start in [from, limit], else `from` (a word longer than the slack is cut).
  auto word_edge = [&](int64_t from, int64_t limit) {
    for (int64_t p = from; p <= limit; ++p)
      if (starts_word(tok, doc, p)) return p;
    return from;
  };
  // Room for every edge to move by the slack where the window has it.
  const int64_t last = w >= kNeed + 3 * kSlack ? w - kNeed - 3 * kSlack : w - kNeed;
  const int64_t drawn = s.begin + std::uniform_int_distribution<int64_t>(0, last)(rng);
  s.cue = word_edge(drawn, std::min(drawn + kSlack, s.end - kNeed));
  const int64_t cue_end = s.cue + kLookupCueTokens;
  s.answer = word_edge(cue_end, std::min(cue_end + kSlack, s.end - kLookupAnswerTokens));
  s.stop = word_edge(s.answer + kLookupAnswerTokens, std::min(s.answer + kLookupAnswerTokens + kSlack, s.end));
  return s;
}

namespace {

// ---- the cloze drill

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_punct(char c) { return static_cast<unsigned char>(c) < 0x80 && std::ispunct(static_cast<unsigned char>(c)); }

// Titles and initials a full stop follows without ending the sentence (or a run of names: "Mr. Darcy").
bool is_abbreviation(std::string_view word) {
  static const char* const kTitles[] = {"Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Mt", "Col", "Gen", "Capt", "Rev"};
  if (word.size() == 1 && is_upper(word[0])) return true;  // an initial: "J. Smith"
  return std::any_of(std::begin(kTitles), std::end(kTitles), [&](const char* t) { return word == t; });
}

// A word of a sentence: the punctuation before it, its core, the punctuation after it (with a possessive 's).
struct ClozeWord {
  std::string lead, core, trail;
};

ClozeWord split_cloze_word(const std::string& w) {
  size_t a = 0, b = w.size();
  while (a < b && is_punct(w[a])) ++a;
  while (b > a && is_punct(w[b - 1])) --b;
  ClozeWord out{w.substr(0, a), w.substr(a, b - a), w.substr(b)};
  for (const std::string s : {"'s", "\xE2\x80\x99s"}) {  // "'s" and "’s"
    if (out.core.size() > s.size() && out.core.compare(out.core.size() - s.size(), s.size(), s) == 0) {
      out.trail = out.core.substr(out.core.size() - s.size()) + out.trail;
      out.core.resize(out.core.size() - s.size());
      break;
    }
  }
  return out;
}

// Words written with a capital that are not names (after a quote, a colon or a heading): never an answer.
bool is_capitalised_function_word(const std::string& core) {
  static const std::set<std::string> kWords = {
      "The", "A", "An", "And", "But", "Or", "Nor", "If", "In", "On", "At", "By", "For", "Of", "To", "From", "With",
      "As", "So", "Not", "No", "Yes", "Oh", "Ah", "O", "It", "Its", "He", "She", "We", "They", "You", "Me", "Him",
      "Her", "Us", "Them", "His", "Hers", "Our", "Your", "Their", "My", "Mine", "This", "That", "These", "Those",
      "There", "Here", "Then", "Now", "When", "Where", "What", "Who", "Whom", "Whose", "Which", "Why", "How", "Well",
      "Let", "Do", "Did", "Is", "Are", "Was", "Were", "Be", "Have", "Has", "Had", "Will", "Would", "Shall", "Should",
      "Can", "Could", "Might", "Must", "All", "Some", "Any", "One", "Every", "Each", "After", "Before",
      "While", "Though", "Although", "Because", "Since", "Until", "Yet", "Still", "Perhaps", "Indeed", "Good"};
  return kWords.count(core) > 0;
}

// A name's word: capitalised, with a lower-case letter (an all-caps heading is not a name), letters and ' - . only,
// not a function word.
bool is_name_word(const std::string& core) {
  if (core.size() < 2 || !is_upper(core[0]) || is_capitalised_function_word(core)) return false;
  bool lower = false;
  for (char c : core) {
    if (is_lower(c)) lower = true;
    else if (!is_upper(c) && c != '\'' && c != '-' && c != '.') return false;
  }
  return lower;
}

bool is_month(const std::string& core) {
  static const std::set<std::string> kMonths = {"January", "February", "March",     "April",   "May",      "June",
                                                "July",    "August",   "September", "October", "November", "December"};
  return kMonths.count(core) > 0;
}

// "1066", "12", "1,200": digits, commas between them.
bool is_number_word(const std::string& core) {
  if (core.empty() || !is_digit(core.front()) || !is_digit(core.back())) return false;
  return std::all_of(core.begin(), core.end(), [](char c) { return is_digit(c) || c == ','; });
}

// The finished sentences of a window of text, whitespace collapsed: the first (cut by the window) and an
// unfinished last one left out.
std::vector<std::string> cloze_sentences(std::string_view text) {
  std::vector<std::string> out;
  const size_t n = text.size();
  size_t start = 0;
  bool first = true;
  auto keep = [&](size_t from, size_t to, bool finished) {
    std::string sentence;
    for (size_t i = from; i < to; ++i) {
      if (!is_space(text[i])) sentence += text[i];
      else if (!sentence.empty() && sentence.back() != ' ') sentence += ' ';
    }
    while (!sentence.empty() && sentence.back() == ' ') sentence.pop_back();
    if (finished && !first && !sentence.empty()) out.push_back(sentence);
    if (!sentence.empty()) first = false;
  };
  for (size_t i = 0; i < n; ++i) {
    if (text[i] == '\n' && i + 1 < n && text[i + 1] == '\n') {  // a blank line ends a paragraph
      keep(start, i, false);
      first = false;  // the next sentence starts a paragraph: whole
      start = i + 2;
      ++i;
      continue;
    }
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') continue;
    size_t j = i + 1;  // closing quotes and brackets belong to the sentence
    while (j < n) {
      if (text[j] == '"' || text[j] == '\'' || text[j] == ')' || text[j] == ']') {
        ++j;
      } else if (text.compare(j, 3, "\xE2\x80\x9D") == 0 || text.compare(j, 3, "\xE2\x80\x99") == 0) {
        j += 3;
      } else {
        break;
      }
    }
    if (j < n && !is_space(text[j])) continue;  // "3.5", "e.g.x"
    if (text[i] == '.') {
      size_t w = i;
      while (w > start && !is_space(text[w - 1]) && !is_punct(text[w - 1])) --w;
      if (is_abbreviation(text.substr(w, i - w))) continue;
    }
    keep(start, j, true);
    start = j;
    i = j - 1;
  }
  keep(start, n, false);
  return out;
}

struct ClozeSlot {
  size_t sentence, first, last;  // words [first, last] of sentence number `sentence`
  const char* wh;
};

}  // namespace

std::optional<ClozeQuestion> make_cloze_question(std::string_view text, std::mt19937_64& rng) {
  constexpr size_t kMinWords = 6, kMaxWords = 40, kMaxNameWords = 4;
  std::vector<std::vector<std::string>> sentences;
  std::vector<ClozeSlot> slots;
  for (const std::string& s : cloze_sentences(text)) {
    std::vector<std::string> words;
    for (size_t a = 0; a < s.size();) {
      const size_t b = std::min(s.find(' ', a), s.size());
      words.push_back(s.substr(a, b - a));
      a = b + 1;
    }
    if (words.size() < kMinWords || words.size() > kMaxWords) continue;
    const size_t k = sentences.size();
    std::vector<ClozeWord> parts;
    for (const auto& w : words) parts.push_back(split_cloze_word(w));
    for (size_t i = 0; i < parts.size();) {
      if (is_number_word(parts[i].core) && i > 0) {
        const std::string& c = parts[i].core;
        const bool year = c.size() == 4 && c >= "1000" && c <= "2099";
        const bool day = c.size() <= 2 && std::stoi(c) >= 1 && std::stoi(c) <= 31 &&
                         (is_month(parts[i - 1].core) || (i + 1 < parts.size() && is_month(parts[i + 1].core)));
        slots.push_back({k, i, i, year ? "what year" : day ? "what day" : "how many"});
        ++i;
        continue;
      }
      if (!is_name_word(parts[i].core)) {
        ++i;
        continue;
      }
      // A run of names: the next word goes on it when nothing but an abbreviation's full stop stands between.
      size_t j = i;
      while (j + 1 < parts.size() && is_name_word(parts[j + 1].core) && parts[j + 1].lead.empty() &&
             (parts[j].trail.empty() || (parts[j].trail == "." && is_abbreviation(parts[j].core))))
        ++j;
      if (i > 0 && j - i + 1 <= kMaxNameWords)  // not the sentence's first word
        slots.push_back({k, i, j, i == j && is_month(parts[i].core) ? "what month" : "what"});
      i = j + 1;
    }
    sentences.push_back(std::move(words));
  }
  if (slots.empty()) return std::nullopt;
  const ClozeSlot& slot = slots[std::uniform_int_distribution<size_t>(0, slots.size() - 1)(rng)];
  const auto& words = sentences[slot.sentence];
  const ClozeWord head = split_cloze_word(words[slot.first]), tail = split_cloze_word(words[slot.last]);
  ClozeQuestion q;
  for (size_t i = slot.first; i <= slot.last; ++i) q.answer += (i > slot.first ? " " : "") + words[i];
  q.answer = q.answer.substr(head.lead.size(), q.answer.size() - head.lead.size() - tail.trail.size());
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > slot.first && i <= slot.last) continue;
    if (!q.question.empty()) q.question += ' ';
    q.question += i == slot.first ? head.lead + slot.wh + tail.trail : words[i];
  }
  // the sentence's end (its full stop, closing quotes) becomes a question mark
  while (!q.question.empty()) {
    const char c = q.question.back();
    if (c == '.' || c == '!' || c == '?' || c == '"' || c == '\'' || c == ')' || c == ']' || c == ',' || c == ';' ||
        c == ':') {
      q.question.pop_back();
    } else if (q.question.size() >= 3 && (q.question.compare(q.question.size() - 3, 3, "\xE2\x80\x9D") == 0 ||
                                          q.question.compare(q.question.size() - 3, 3, "\xE2\x80\x99") == 0)) {
      q.question.resize(q.question.size() - 3);
    } else {
      break;
    }
  }
  q.question += '?';
  return q;
}

TokenIds plain_text_prompt(const Tokenizer& tok, const TokenIds& context_text_ids,
                           const TokenIds& question_ids) {
  TokenIds out = context_text_ids;
  const TokenIds newline = tok.encode("\n", EncodeOptions{false, false});
  out.insert(out.end(), newline.begin(), newline.end());
  out.insert(out.end(), question_ids.begin(), question_ids.end());
  return out;
}

}  // namespace coenc
