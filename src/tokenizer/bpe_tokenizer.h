// The tokenizer of a Hugging Face tokenizer.json with a BPE model:
//   raw text -> added tokens (non-normalized ones) -> normalizer -> added tokens (normalized ones)
//            -> pre-tokenizer -> BPE per piece -> post-processor (add_special)
// and back through the decoder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"

namespace coenc::tok {

class BpeTokenizer : public Tokenizer {
 public:
  // Parses the text of a tokenizer.json; `file` names it in error messages.
  static std::unique_ptr<BpeTokenizer> from_json_text(const std::string& text, const std::string& file);
  static std::unique_ptr<BpeTokenizer> from_json(const nlohmann::json& j, const std::string& file);

  TokenIds encode(std::string_view text, const EncodeOptions& options = {}) const override;
  std::string decode_bytes(const TokenIds& ids, bool skip_special) const override;
  std::string id_to_piece(TokenId id) const override;
  std::optional<TokenId> token_to_id(std::string_view piece) const override;
  int vocab_size() const override { return vocab_size_; }
  bool is_special(TokenId id) const override;

  const BpeModel& model() const { return *model_; }

 private:
  BpeTokenizer() = default;
  // Normalizes, pre-tokenizes and BPE-encodes one text segment that holds no added token.
  void encode_plain(std::string_view text, bool parse_special, TokenIds& out) const;
  void encode_pieces(std::string_view normalized, TokenIds& out) const;

  std::unique_ptr<BpeModel> model_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  PostProcessor post_processor_;
  Decoder decoder_;
  AddedTokenMatcher raw_added_;         // matched in the raw input
  AddedTokenMatcher normalized_added_;  // matched after normalisation
  std::unordered_map<TokenId, AddedToken> added_by_id_;
  std::unordered_map<std::string, TokenId> added_by_content_;
  std::vector<std::string> byte_level_bytes_;  // ByteLevel decoder: the bytes of every id
  int vocab_size_ = 0;
};

}  // namespace coenc::tok
