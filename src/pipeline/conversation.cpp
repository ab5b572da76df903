// Conversations in the pipeline: several turns about compressed documents in one session, each turn feeding the
// decoder only what its cache does not already hold.
#include <algorithm>

#include "coenc/error.h"
#include "coenc/pipeline.h"
#include "coenc/session.h"

namespace coenc {

namespace {

// How many leading positions `held` (what a session holds) and `wanted` (a new prompt) share: token positions by
// id, embedding segments whole (same length and values: a document's block is rebuilt for every prompt).
int64_t common_positions(const std::vector<Segment>& held, const std::vector<Segment>& wanted) {
  int64_t common = 0;
  size_t a = 0, b = 0;      // segment indices
  size_t ai = 0, bi = 0;    // token offsets inside token segments
  while (a < held.size() && b < wanted.size()) {
    const Segment& x = held[a];
    const Segment& y = wanted[b];
    if (x.is_tokens() != y.is_tokens()) break;
    if (!x.is_tokens()) {
      if (x.rows.sizes() != y.rows.sizes() || !torch::equal(x.rows, y.rows)) break;
      common += x.length();
      ++a, ++b;
      continue;
    }
    while (ai < x.ids.size() && bi < y.ids.size() && x.ids[ai] == y.ids[bi]) ++ai, ++bi, ++common;
    if (ai < x.ids.size() && bi < y.ids.size()) break;  // a token differs
    if (ai == x.ids.size()) ++a, ai = 0;
    if (bi == y.ids.size()) ++b, bi = 0;
  }
  return common;
}

// `segments` from position `from` on.
std::vector<Segment> positions_from(const std::vector<Segment>& segments, int64_t from) {
  std::vector<Segment> out;
  int64_t at = 0;
  for (const Segment& s : segments) {
    const int64_t end = at + s.length();
    if (end > from) {
      if (at >= from)
        out.push_back(s);
      else if (s.is_tokens())
        out.push_back(Segment::tokens(TokenIds(s.ids.begin() + (from - at), s.ids.end())));
      else
        out.push_back(Segment::embeddings(s.rows.slice(0, from - at)));
    }
    at = end;
  }
  return out;
}

}  // namespace

Conversation::Conversation(CoEncoderImpl& model, const Tokenizer& text_tokenizer, std::vector<PreparedDocument> docs,
                           AskOptions options)
    : model_(model), tok_(text_tokenizer), docs_(std::move(docs)), options_(std::move(options)) {
  for (const auto& d : docs_)
    COENC_CHECK_CODE(!d.doc.chunks.empty(), Internal,
                     "{}: a conversation needs compressed documents (compress_documents)", d.name);
  uses_chat_layout(model_.config(), tok_, options_);  // contradictory options are reported before the first turn
  SessionOptions so;
  so.n_ctx = options_.n_ctx;
  session_ = std::make_unique<Session>(model_.language_model, so);
  int64_t n_vectors = 0, n_blocks = 0;  // each document is [BOC] v_1 .. v_k [EOC]
  for (const auto& d : docs_) n_vectors += d.doc.n_vectors(), n_blocks += 2 + d.doc.n_vectors();
  if (n_blocks + 2 > session_->n_ctx())
    fail(ErrorCode::ExceedsContext,
         "the compressed {} ({} vectors) {} {} positions, which leaves no room for a message in the decoder's {}{}",
         docs_.size() == 1 ? "document" : "documents", n_vectors, docs_.size() == 1 ? "takes" : "take", n_blocks,
         session_->n_ctx(),
         options_.n_ctx > 0 ? " (the context size asked for)" : "");
}

Conversation::~Conversation() = default;

void Conversation::reset() {
  exchanges_.clear();
  first_kept_ = 0;
  session_->truncate(0);
  fed_.clear();
  cost_ = {};
}

AskPrompt Conversation::lay_out(size_t first, const std::string& user_text) {
  std::vector<std::vector<torch::Tensor>> documents;
  for (const auto& d : docs_) documents.push_back(d.doc.chunks);
  auto user = [&](const std::string& text, bool with_documents) {
    ConversationMessage m{"user", {}};
    if (with_documents)
      for (size_t d = 0; d < docs_.size(); ++d) m.parts.push_back({"", static_cast<int64_t>(d)});
    m.parts.push_back({text, -1});
    return m;
  };
  std::vector<ConversationMessage> messages;
  if (!options_.system.empty()) messages.push_back({"system", {{options_.system, -1}}});
  for (size_t e = first; e < exchanges_.size(); ++e) {
    messages.push_back(user(exchanges_[e].user, e == first));
    messages.push_back({"assistant", {{exchanges_[e].assistant, -1}}});
  }
  messages.push_back(user(user_text, first == exchanges_.size()));
  AskOptions o = options_;
  o.system.clear();  // a message of its own above
  return conversation_prompt(model_, tok_, documents, messages, o);
}

GenerationResult Conversation::reply(const std::string& user_text, GenerationOptions go,
                                     const TokenCallback& on_token) {
  COENC_CHECK(!user_text.empty(), "the message is empty");
  const int64_t n_ctx = session_->n_ctx();
  const int64_t room = std::max<int64_t>(1, go.max_new_tokens);
  size_t first = first_kept_;
  AskPrompt prompt = lay_out(first, user_text);
  while (prompt.n_positions + room > n_ctx && first < exchanges_.size()) prompt = lay_out(++first, user_text);
  if (prompt.n_positions >= n_ctx) {
    int64_t n_vectors = 0;
    for (const auto& d : docs_) n_vectors += d.doc.n_vectors();
    fail(ErrorCode::ExceedsContext,
         "the compressed documents ({} vectors) and this message need {} positions, but the decoder holds {}{}",
         n_vectors, prompt.n_positions, n_ctx, options_.n_ctx > 0 ? " (the context size asked for)" : "");
  }
  cost_.n_dropped += static_cast<int64_t>(first - first_kept_);
  first_kept_ = first;

  // Keep what the cache shares with the new prompt; at least the last position is fed again for its logits.
  const int64_t common = std::min(common_positions(fed_, prompt.segments), prompt.n_positions - 1);
  if (!options_.ignore_eos) append_unique(go.stop_tokens, prompt.stop_tokens);
  if (!go.detokenize)
    go.detokenize = [this](const TokenIds& out) { return tok_.decode_bytes(out, /*skip_special=*/true); };
  GenerationResult r;
  try {
    session_->truncate(common);
    r = generate(*session_, positions_from(prompt.segments, common), go, on_token);
  } catch (...) {
    session_->truncate(0);  // the cache no longer says what fed_ says
    fed_.clear();
    throw;
  }
  cost_.n_fed = prompt.n_positions - common;
  cost_.n_reused = common;
  r.n_prompt = prompt.n_positions;

  // The session now holds the prompt and the answer tokens that were fed back (not the one that ended it).
  fed_ = std::move(prompt.segments);
  const int64_t n_answer_fed = std::min<int64_t>(session_->n_past() - r.n_prompt, r.ids.size());
  if (n_answer_fed > 0) fed_.push_back(Segment::tokens(TokenIds(r.ids.begin(), r.ids.begin() + n_answer_fed)));
  exchanges_.push_back({user_text, r.text});
  return r;
}

}  // namespace coenc
