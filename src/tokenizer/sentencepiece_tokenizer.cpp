#include "tokenizer/sentencepiece_tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "coenc/error.h"
#include "tokenizer/sentencepiece_module.h"
#include "tokenizer/utf8.h"

// gcc says -fsanitize=address with __SANITIZE_ADDRESS__, clang (before 16) only through __has_feature.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COENC_HAS_ASAN_FEATURE 1
#endif
#endif
#ifndef COENC_HAS_ASAN_FEATURE
#define COENC_HAS_ASAN_FEATURE 0
#endif

namespace coenc::tok {

struct SpmModule {
  CoencSpmLoadFn load;
  CoencSpmFreeFn free;
  CoencSpmSizeFn size;
  CoencSpmEncodeFn encode;
  CoencSpmPieceFn piece;
  CoencSpmPieceToIdFn piece_to_id;
  CoencSpmTypeFn type;
  CoencSpmSpecialIdFn special_id;
};

namespace {

constexpr const char kModuleName[] = "libcoenc_sentencepiece.so";
constexpr const char kSpaceMark[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Loaded once per process and never unloaded (models may live until exit).
const SpmModule& spm_module() {
  static std::once_flag once;
  static SpmModule module;
  static std::string error;
  std::call_once(once, [] {
    std::string path = find_sentencepiece_module();
    if (path.empty()) {
      error = format(
          "the SentencePiece module {} was not found beside the executable or in the build tree; set "
          "COENC_SENTENCEPIECE_MODULE to its path",
          kModuleName);
      return;
    }
    int flags = RTLD_NOW | RTLD_LOCAL;
#if !defined(__SANITIZE_ADDRESS__) && !COENC_HAS_ASAN_FEATURE
    // Own protobuf copy first for libsentencepiece (the sanitizer runtimes refuse this flag).
    flags |= RTLD_DEEPBIND;
#endif
    void* handle = dlopen(path.c_str(), flags);
    if (!handle) {
      error = format("cannot load the SentencePiece module {}: {}", path, dlerror());
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(handle, name);
      if (!p && error.empty()) error = format("{}: missing symbol {}", path, name);
      return p;
    };
    module.load = reinterpret_cast<CoencSpmLoadFn>(sym("coenc_spm_load"));
    module.free = reinterpret_cast<CoencSpmFreeFn>(sym("coenc_spm_free"));
    module.size = reinterpret_cast<CoencSpmSizeFn>(sym("coenc_spm_size"));
    module.encode = reinterpret_cast<CoencSpmEncodeFn>(sym("coenc_spm_encode"));
    module.piece = reinterpret_cast<CoencSpmPieceFn>(sym("coenc_spm_piece"));
    module.piece_to_id = reinterpret_cast<CoencSpmPieceToIdFn>(sym("coenc_spm_piece_to_id"));
    module.type = reinterpret_cast<CoencSpmTypeFn>(sym("coenc_spm_type"));
    module.special_id = reinterpret_cast<CoencSpmSpecialIdFn>(sym("coenc_spm_special_id"));
  });
  COENC_CHECK_CODE(error.empty(), NotFound, "{}", error);
  return module;
}

}  // namespace

std::string find_sentencepiece_module() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* env = std::getenv("COENC_SENTENCEPIECE_MODULE"); env && *env) return env;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(exe.parent_path() / kModuleName, ec))
    return (exe.parent_path() / kModuleName).string();
#ifdef COENC_SPM_MODULE_PATH
  if (fs::exists(COENC_SPM_MODULE_PATH, ec)) return COENC_SPM_MODULE_PATH;
#endif
  return "";
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path,
                                                                     const TokenizerConfig& config) {
  const SpmModule& m = spm_module();
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  t->module_ = &m;
  char err[512] = "";
  t->model_ = m.load(path.c_str(), err, sizeof(err));
  COENC_CHECK(t->model_ != nullptr, "{}: not a readable SentencePiece model: {}", path, err);
  t->add_bos_ = config.add_bos_token.value_or(true);
  t->add_eos_ = config.add_eos_token.value_or(false);
  int n = m.size(t->model_);
  t->pieces_.resize(n);
  t->types_.resize(n);
  std::vector<AddedToken> controls;
  for (int id = 0; id < n; ++id) {
    size_t len = 0;
    const char* p = m.piece(t->model_, id, &len);
    t->pieces_[id].assign(p, len);
    t->types_[id] = m.type(t->model_, id);
    if ((t->types_[id] & kCoencSpmControl) && len > 0) {
      AddedToken tok;
      tok.id = id;
      tok.content = t->pieces_[id];
      tok.special = true;
      controls.push_back(tok);
    }
  }
  t->control_pieces_ = AddedTokenMatcher(std::move(controls));
  // Whether the model adds a dummy "▁" shows in how it encodes a single letter.
  TokenIds probe = t->encode_plain("a");
  t->dummy_prefix_ = !probe.empty() && t->pieces_[probe[0]].rfind(kSpaceMark, 0) == 0;
  for (auto [which, field] :
       {std::pair<int, std::optional<TokenId>*>{0, &t->bos_id_}, {1, &t->eos_id_}, {2, &t->pad_id_}}) {
    int id = m.special_id(t->model_, which);
    if (id >= 0) *field = id;
  }
  return t;
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (model_) module_->free(model_);
}

TokenIds SentencePieceTokenizer::encode_plain(std::string_view text) const {
  std::vector<int> ids(text.size() + 16);
  char err[512] = "";
  long n = module_->encode(model_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof(err));
  if (n < -1) {
    ids.resize(static_cast<size_t>(-n - 2));
    n = module_->encode(model_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof(err));
  }
  COENC_CHECK_CODE(n >= 0, Internal, "SentencePiece failed to encode: {}", err);
  return TokenIds(ids.begin(), ids.begin() + n);
}

TokenIds SentencePieceTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  TokenIds out;
  if (options.add_special && add_bos_ && bos_id_) out.push_back(*bos_id_);
  std::vector<AddedTokenSplit> segments;
  control_pieces_.split(text, options.parse_special, segments);
  for (const AddedTokenSplit& seg : segments) {
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
    if ((types_[id] & kCoencSpmControl) || (skip_special && is_special(id))) continue;
    std::string piece;
    if (types_[id] & kCoencSpmUnknown) {
      piece = " \xE2\x81\x87 ";
    } else if (types_[id] & kCoencSpmByte) {
      piece.assign(1, static_cast<char>(std::stoi(pieces_[id].substr(3, 2), nullptr, 16)));  // "<0xAB>"
    } else {
      piece = pieces_[id];
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
  return pieces_[id];
}

std::optional<TokenId> SentencePieceTokenizer::token_to_id(std::string_view piece) const {
  int id = module_->piece_to_id(model_, piece.data(), piece.size());
  if (id < 0) return std::nullopt;
  return id;
}

bool SentencePieceTokenizer::is_special(TokenId id) const {
  return id >= 0 && id < vocab_size() && (types_[id] & (kCoencSpmControl | kCoencSpmUnknown));
}

}  // namespace coenc::tok
