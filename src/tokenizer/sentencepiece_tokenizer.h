// SentencePiece tokenizer.model files (Llama-2, Mistral, Gemma style) through libsentencepiece, behind the
// Tokenizer interface. Control pieces ("<s>", "</s>") spelled in the input are matched first, as special
// added tokens, when parse_special is on; the text between them is encoded by SentencePiece.
#pragma once

#include <memory>
#include <string>

#include <sentencepiece_processor.h>

#include "coenc/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer_config.h"

namespace coenc::tok {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Loads `path` (a serialized ModelProto). `config` supplies add_bos_token (default true) and add_eos_token
  // (default false). Throws InvalidInput when the file is not a SentencePiece model.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path, const TokenizerConfig& config);

  TokenIds encode(std::string_view text, const EncodeOptions& options = {}) const override;
  std::string decode_bytes(const TokenIds& ids, bool skip_special) const override;
  std::string id_to_piece(TokenId id) const override;
  std::optional<TokenId> token_to_id(std::string_view piece) const override;
  int vocab_size() const override { return processor_.GetPieceSize(); }
  bool is_special(TokenId id) const override;

  // The ids of `text` from SentencePiece alone (no added-token matching, no BOS/EOS).
  TokenIds encode_plain(std::string_view text) const;

 private:
  SentencePieceTokenizer() = default;

  sentencepiece::SentencePieceProcessor processor_;
  AddedTokenMatcher control_pieces_;
  bool add_bos_ = true, add_eos_ = false;
  bool dummy_prefix_ = true;  // the model prepends "▁" to the text, which decoding removes again
};

}  // namespace coenc::tok
