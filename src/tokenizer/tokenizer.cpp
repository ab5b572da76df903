// Tokenizer::load (which backend, which files) and the parts of the interface shared by the backends.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "coenc/error.h"
#include "coenc/tokenizer.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "tokenizer/utf8.h"

namespace coenc {

namespace fs = std::filesystem;

namespace {

std::string read_whole_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  COENC_CHECK_CODE(in.good(), NotFound, "{}: cannot open the file", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<TokenId> resolve_token(const Tokenizer& t, const std::optional<std::string>& text,
                                     const fs::path& config, const char* field) {
  if (!text) return std::nullopt;
  auto id = t.token_to_id(*text);
  COENC_CHECK(id.has_value(), "{}: field {} \"{}\" is not a token of the vocabulary", config.string(), field,
              *text);
  return id;
}

}  // namespace

bool Tokenizer::in_directory(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "tokenizer.json", ec) || fs::exists(fs::path(dir) / "tokenizer.model", ec);
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path_text) {
  fs::path path(path_text);
  COENC_CHECK_CODE(fs::exists(path), NotFound,
                   "{}: no such file or directory (expected a model directory, "
                   "tokenizer.json or tokenizer.model)",
                   path_text);
  fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  fs::path file;
  if (fs::is_directory(path)) {
    COENC_CHECK_CODE(in_directory(dir.string()), NotFound, "{}: holds neither tokenizer.json nor tokenizer.model",
                     path_text);
    file = fs::exists(dir / "tokenizer.json") ? dir / "tokenizer.json" : dir / "tokenizer.model";
  } else {
    file = path;
  }

  tok::TokenizerConfig config;
  if (fs::exists(dir / "tokenizer_config.json"))
    config = tok::read_tokenizer_config((dir / "tokenizer_config.json").string());

  std::unique_ptr<Tokenizer> t;
  std::string text = read_whole_file(file);
  bool is_json = file.extension() == ".json" ||
                 (file.extension() != ".model" && text.find_first_not_of(" \t\r\n") != std::string::npos &&
                  text[text.find_first_not_of(" \t\r\n")] == '{');
  if (is_json) {
    t = tok::BpeTokenizer::from_json_text(text, file.string());
  } else {
    t = tok::SentencePieceTokenizer::load(file.string(), config);
  }

  fs::path config_path = dir / "tokenizer_config.json";
  if (auto id = resolve_token(*t, config.bos_token, config_path, "bos_token")) t->bos_id_ = id;
  if (auto id = resolve_token(*t, config.eos_token, config_path, "eos_token")) t->eos_id_ = id;
  if (auto id = resolve_token(*t, config.pad_token, config_path, "pad_token")) t->pad_id_ = id;
  t->chat_template_ = config.chat_template;
  return t;
}

std::string Tokenizer::decode(const TokenIds& ids, bool skip_special) const {
  return tok::sanitize_utf8(decode_bytes(ids, skip_special));
}

std::optional<size_t> first_non_text_byte(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '\0') return i;
    const int len = static_cast<unsigned char>(text[i]) < 0x80 ? 1 : tok::utf8_sequence_length(text, i);
    if (len == 0) return i;
    i += static_cast<size_t>(len);
  }
  return std::nullopt;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

// The window ids_ starts at a token boundary whose text is already out. Decoding the window with and without
// the new id and taking the difference keeps context-dependent decoders (SentencePiece's leading space)
// right; once the difference is complete UTF-8 it is emitted and the window moves up.
std::string StreamDecoder::push(TokenId id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    fail(ErrorCode::InvalidInput, "token id {} is out of range (vocabulary size {})", id,
         tokenizer_.vocab_size());
  }
  if (skip_special_ && tokenizer_.is_special(id)) return "";
  ids_.push_back(id);
  TokenIds before(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(read_));
  std::string old_text = tokenizer_.decode_bytes(before, skip_special_);
  std::string new_text = tokenizer_.decode_bytes(ids_, skip_special_);
  if (new_text.size() <= old_text.size() || new_text.compare(0, old_text.size(), old_text) != 0) {
    read_ = ids_.size();
    return "";
  }
  std::string delta = new_text.substr(old_text.size());
  if (tok::incomplete_utf8_tail(delta) > 0) return "";
  // Keep the last emitted token as context for the next difference, drop the rest.
  ids_.erase(ids_.begin(), ids_.end() - 1);
  read_ = 1;
  return tok::sanitize_utf8(delta);
}

std::string StreamDecoder::finish() {
  TokenIds before(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(read_));
  std::string old_text = tokenizer_.decode_bytes(before, skip_special_);
  std::string new_text = tokenizer_.decode_bytes(ids_, skip_special_);
  ids_.clear();
  read_ = 0;
  if (new_text.size() <= old_text.size()) return "";
  return tok::sanitize_utf8(new_text.substr(old_text.size()));
}

}  // namespace coenc
