#include "tokenizer/bpe_tokenizer.h"

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json_text(const std::string& text, const std::string& file) {
  return from_json(parse_json(text, file), file);
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json(const nlohmann::json& j, const std::string& file) {
  JsonPath root{file, ""};
  COENC_CHECK(j.is_object(), "{}: expected a JSON object at the top level, got {}", file, json_type_name(j));
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());

  const auto& model = json_object(j, "model", root);
  auto pre = j.find("pre_tokenizer");
  t->pre_tokenizer_ =
      PreTokenizer::from_json(pre == j.end() ? nlohmann::json() : *pre, root / "pre_tokenizer");
  t->model_ = BpeModel::from_json(model, root / "model", t->pre_tokenizer_.byte_level());
  auto norm = j.find("normalizer");
  t->normalizer_ = Normalizer::from_json(norm == j.end() ? nlohmann::json() : *norm, root / "normalizer");
  auto dec = j.find("decoder");
  t->decoder_ = Decoder::from_json(dec == j.end() ? nlohmann::json() : *dec, root / "decoder");

  std::vector<AddedToken> raw, normalized;
  t->vocab_size_ = t->model_->size();
  auto added = j.find("added_tokens");
  if (added != j.end() && !added->is_null()) {
    COENC_CHECK(added->is_array(), "{} must be an array, got {}", (root / "added_tokens").str(),
                json_type_name(*added));
    for (size_t k = 0; k < added->size(); ++k) {
      JsonPath at = (root / "added_tokens").at(k);
      const auto& a = (*added)[k];
      COENC_CHECK(a.is_object(), "{} must be an object, got {}", at.str(), json_type_name(a));
      COENC_CHECK(a.contains("id"), "{} is missing (expected an integer)", (at / "id").str());
      AddedToken tok;
      tok.id = json_token_id(a["id"], at / "id");
      tok.content = json_string(a, "content", at);
      COENC_CHECK(!tok.content.empty(), "{} must not be empty", (at / "content").str());
      tok.special = json_bool(a, "special", false, at);
      tok.lstrip = json_bool(a, "lstrip", false, at);
      tok.rstrip = json_bool(a, "rstrip", false, at);
      tok.single_word = json_bool(a, "single_word", false, at);
      tok.normalized = json_bool(a, "normalized", !tok.special, at);
      (tok.normalized ? normalized : raw).push_back(tok);
      t->added_by_content_[tok.content] = tok.id;
      t->added_by_id_[tok.id] = tok;
      t->vocab_size_ = std::max(t->vocab_size_, tok.id + 1);
    }
  }
  t->raw_added_ = AddedTokenMatcher(std::move(raw));
  t->normalized_added_ = AddedTokenMatcher(std::move(normalized));

  auto lookup = [&t](const std::string& s) { return t->token_to_id(s); };
  auto post = j.find("post_processor");
  t->post_processor_ =
      PostProcessor::from_json(post == j.end() ? nlohmann::json() : *post, root / "post_processor", lookup,
                                                 t->vocab_size_);

  if (t->decoder_.is_byte_level()) {
    t->byte_level_bytes_.resize(t->vocab_size_);
    for (TokenId id = 0; id < t->vocab_size_; ++id) {
      t->byte_level_bytes_[id] = byte_level_token_bytes(t->id_to_piece(id));
    }
  }
  return t;
}

TokenIds BpeTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  TokenIds ids;
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  ids.reserve(text.size() / 3 + 4);
  std::vector<AddedTokenSplit> segments;
  raw_added_.split(text, options.parse_special, segments);
  for (const AddedTokenSplit& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else {
      encode_plain(seg.text, options.parse_special, ids);
    }
  }
  if (options.add_special) post_processor_.apply(ids);
  return ids;
}

void BpeTokenizer::encode_plain(std::string_view text, bool parse_special, TokenIds& out) const {
  std::string storage;
  std::string_view normalized = text;
  if (!normalizer_.is_identity()) {
    storage = normalizer_.apply(text);
    normalized = storage;
  }
  if (normalized_added_.empty()) {
    encode_pieces(normalized, out);
    return;
  }
  // Added tokens flagged "normalized" are looked for in the normalized text, after the others.
  std::vector<AddedTokenSplit> segments;
  normalized_added_.split(normalized, parse_special, segments);
  for (const AddedTokenSplit& seg : segments) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
    } else {
      encode_pieces(seg.text, out);
    }
  }
}

void BpeTokenizer::encode_pieces(std::string_view normalized, TokenIds& out) const {
  thread_local std::vector<std::string_view> pieces;
  std::list<std::string> storage;  // std::list: no allocation unless used
  pieces.clear();
  pre_tokenizer_.split(normalized, pieces, storage);
  for (std::string_view piece : pieces) model_->encode(piece, out);
}

std::string BpeTokenizer::decode_bytes(const TokenIds& ids, bool skip_special) const {
  for (TokenId id : ids) {
    COENC_CHECK(id >= 0 && id < vocab_size_, "token id {} is out of range (vocabulary size {})", id,
                vocab_size_);
  }
  if (!byte_level_bytes_.empty()) {
    std::string out;
    for (TokenId id : ids) {
      if (!(skip_special && is_special(id))) out += byte_level_bytes_[id];
    }
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (TokenId id : ids) {
    if (!(skip_special && is_special(id))) tokens.push_back(id_to_piece(id));
  }
  return decoder_.decode(std::move(tokens));
}

std::string BpeTokenizer::id_to_piece(TokenId id) const {
  COENC_CHECK(id >= 0 && id < vocab_size_, "token id {} is out of range (vocabulary size {})", id,
              vocab_size_);
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return it->second.content;
  return id < model_->size() ? model_->token(id) : std::string();
}

std::optional<TokenId> BpeTokenizer::token_to_id(std::string_view piece) const {
  auto it = added_by_content_.find(std::string(piece));
  if (it != added_by_content_.end()) return it->second;
  return model_->find(piece);
}

bool BpeTokenizer::is_special(TokenId id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && it->second.special;
}

}  // namespace coenc::tok
