#include "tokenizer/sentencepiece_tokenizer.h"

#include "coenc/error.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {
constexpr const char kSpaceMark[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path,
                                                                     const TokenizerConfig& config) {
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  auto status = t->processor_.Load(path);
  COENC_CHECK(status.ok(), "{}: not a readable SentencePiece model: {}", path, status.ToString());
  t->add_bos_ = config.add_bos_token.value_or(true);
  t->add_eos_ = config.add_eos_token.value_or(false);
  std::vector<AddedToken> controls;
  for (int id = 0; id < t->processor_.GetPieceSize(); ++id) {
    if (t->processor_.IsControl(id) && !t->processor_.IdToPiece(id).empty()) {
      AddedToken tok;
      tok.id = id;
      tok.content = t->processor_.IdToPiece(id);
      tok.special = true;
      controls.push_back(tok);
    }
  }
  t->control_pieces_ = AddedTokenMatcher(std::move(controls));
  // Whether the model adds a dummy "▁" shows in how it encodes a single letter.
  auto probe = t->processor_.EncodeAsPieces("a");
  t->dummy_prefix_ = !probe.empty() && probe[0].rfind(kSpaceMark, 0) == 0;
  if (t->processor_.bos_id() >= 0) t->bos_id_ = t->processor_.bos_id();
  if (t->processor_.eos_id() >= 0) t->eos_id_ = t->processor_.eos_id();
  if (t->processor_.pad_id() >= 0) t->pad_id_ = t->processor_.pad_id();
  return t;
}

TokenIds SentencePieceTokenizer::encode_plain(std::string_view text) const {
  std::vector<int> ids;
  auto status = processor_.Encode(text, &ids);
  COENC_CHECK_CODE(status.ok(), Internal, "SentencePiece failed to encode: {}", status.ToString());
  return TokenIds(ids.begin(), ids.end());
}

TokenIds SentencePieceTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  TokenIds out;
  if (options.add_special && add_bos_ && bos_id_) out.push_back(*bos_id_);
  std::vector<Segment> segments;
  control_pieces_.split(text, options.parse_special, segments);
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
    } else {
      TokenIds ids = encode_plain(seg.text);
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
  if (options.add_special && add_eos_ && eos_id_) out.push_back(*eos_id_);
  return out;
}

// SentencePiece's own decoder replaces broken UTF-8 at once; streaming needs the raw bytes, so pieces are
// turned into bytes here the way the decoder does: "▁" is a space, <0xAB> pieces are bytes, control pieces
// are dropped, an unknown piece is " ⁇ ", and the dummy prefix's space is removed from the start.
std::string SentencePieceTokenizer::decode_bytes(const TokenIds& ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (TokenId id : ids) {
    COENC_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range (vocabulary size {})", id,
                vocab_size());
    if (processor_.IsControl(id) || (skip_special && is_special(id))) continue;
    std::string piece;
    if (processor_.IsUnknown(id)) {
      piece = " \xE2\x81\x87 ";
    } else if (processor_.IsByte(id)) {
      const std::string& p = processor_.IdToPiece(id);  // "<0xAB>"
      piece.assign(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
    } else {
      piece = processor_.IdToPiece(id);
      for (size_t pos = piece.find(kSpaceMark); pos != std::string::npos;
           pos = piece.find(kSpaceMark, pos + 1)) {
        piece.replace(pos, 3, " ");
      }
      if (first && dummy_prefix_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    }
    first = false;
    out += piece;
  }
  return out;
}

std::string SentencePieceTokenizer::id_to_piece(TokenId id) const {
  COENC_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range (vocabulary size {})", id,
              vocab_size());
  return processor_.IdToPiece(id);
}

std::optional<TokenId> SentencePieceTokenizer::token_to_id(std::string_view piece) const {
  int id = processor_.PieceToId(piece);
  if (id == processor_.unk_id() && processor_.IdToPiece(id) != piece) return std::nullopt;
  return id;
}

bool SentencePieceTokenizer::is_special(TokenId id) const {
  return id >= 0 && id < vocab_size() && (processor_.IsControl(id) || processor_.IsUnknown(id));
}

}  // namespace coenc::tok
