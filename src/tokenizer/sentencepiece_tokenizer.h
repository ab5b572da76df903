// SentencePiece tokenizer.model files (Llama-2, Mistral, Gemma style) through libsentencepiece, behind the
// Tokenizer interface. libsentencepiece is reached through the run-time module libcoenc_sentencepiece.so (see
// sentencepiece_module.h for why). Control pieces ("<s>", "</s>") spelled in the input are matched first, as
// special added tokens, when parse_special is on; the text between them is encoded by SentencePiece.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "coenc/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer_config.h"

struct CoencSpm;

namespace coenc::tok {

struct SpmModule;

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Loads `path` (a serialized ModelProto). `config` supplies add_bos_token (default true) and add_eos_token
  // (default false). Throws InvalidInput when the file is not a SentencePiece model, NotFound when the
  // SentencePiece module cannot be found.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& path, const TokenizerConfig& config);
  ~SentencePieceTokenizer() override;

  TokenIds encode(std::string_view text, const EncodeOptions& options = {}) const override;
  std::string decode_bytes(const TokenIds& ids, bool skip_special) const override;
  std::string id_to_piece(TokenId id) const override;
  std::optional<TokenId> token_to_id(std::string_view piece) const override;
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  bool is_special(TokenId id) const override;

  // The ids of `text` (valid UTF-8) from SentencePiece alone (no added-token matching, no BOS/EOS).
  TokenIds encode_plain(std::string_view text) const;

 private:
  SentencePieceTokenizer() = default;

  const SpmModule* module_ = nullptr;
  CoencSpm* model_ = nullptr;
  std::vector<std::string> pieces_;
  std::vector<int> types_;  // kCoencSpm* bits per id
  AddedTokenMatcher control_pieces_;
  bool add_bos_ = true, add_eos_ = false;
  bool dummy_prefix_ = true;  // the model prepends "▁" to the text, which decoding removes again
};

// Where the module is looked for, in order: $COENC_SENTENCEPIECE_MODULE; libcoenc_sentencepiece.so beside the
// running executable; the build tree's copy. Returns the first that exists ("" if none).
std::string find_sentencepiece_module();

}  // namespace coenc::tok
