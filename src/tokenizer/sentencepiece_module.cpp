// libcoenc_sentencepiece.so: libsentencepiece behind a C interface (see sentencepiece_module.h for why).
// Built as its own module, never part of coenc_lib.
#include "tokenizer/sentencepiece_module.h"

#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include <sentencepiece_processor.h>

struct CoencSpm {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

void write_error(const std::string& message, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

}  // namespace

extern "C" {

// libsentencepiece (and darts_clone inside it) may throw on a damaged model or input; a C++ exception must not
// cross this C interface (std::terminate): the two calls that read outside bytes report it through err instead
// (docs/reliability.md, finding 5).
__attribute__((visibility("default"))) CoencSpm* coenc_spm_load(const char* path, char* err, size_t err_len) {
  try {
    auto model = std::make_unique<CoencSpm>();
    auto status = model->processor.Load(path);
    if (!status.ok()) {
      write_error(status.ToString(), err, err_len);
      return nullptr;
    }
    return model.release();
  } catch (const std::exception& e) {
    write_error(std::string("libsentencepiece failed: ") + e.what(), err, err_len);
  } catch (...) {
    write_error("libsentencepiece failed with an unknown exception", err, err_len);
  }
  return nullptr;
}

__attribute__((visibility("default"))) void coenc_spm_free(CoencSpm* model) {
  delete model;
}

__attribute__((visibility("default"))) int coenc_spm_size(const CoencSpm* model) {
  return model->processor.GetPieceSize();
}

__attribute__((visibility("default"))) long coenc_spm_encode(const CoencSpm* model, const char* text,
                                                             size_t len, int* ids, size_t cap, char* err,
                                                             size_t err_len) {
  std::vector<int> out;
  try {
    auto status = model->processor.Encode(std::string_view(text, len), &out);
    if (!status.ok()) {
      write_error(status.ToString(), err, err_len);
      return -1;
    }
  } catch (const std::exception& e) {
    write_error(std::string("libsentencepiece failed: ") + e.what(), err, err_len);
    return -1;
  } catch (...) {
    write_error("libsentencepiece failed with an unknown exception", err, err_len);
    return -1;
  }
  if (out.size() > cap) return -static_cast<long>(out.size()) - 2;
  std::copy(out.begin(), out.end(), ids);
  return static_cast<long>(out.size());
}

__attribute__((visibility("default"))) const char* coenc_spm_piece(const CoencSpm* model, int id,
                                                                   size_t* len) {
  const std::string& piece = model->processor.IdToPiece(id);
  *len = piece.size();
  return piece.data();
}

__attribute__((visibility("default"))) int coenc_spm_piece_to_id(const CoencSpm* model, const char* piece,
                                                                 size_t len) {
  std::string_view p(piece, len);
  int id = model->processor.PieceToId(p);
  // PieceToId answers unk for anything unknown; only the unk piece itself maps to unk.
  if (id == model->processor.unk_id() && model->processor.IdToPiece(id) != p) return -1;
  return id;
}

__attribute__((visibility("default"))) int coenc_spm_type(const CoencSpm* model, int id) {
  const auto& p = model->processor;
  return (p.IsControl(id) ? kCoencSpmControl : 0) | (p.IsUnknown(id) ? kCoencSpmUnknown : 0) |
         (p.IsByte(id) ? kCoencSpmByte : 0);
}

__attribute__((visibility("default"))) int coenc_spm_special_id(const CoencSpm* model, int which) {
  const auto& p = model->processor;
  switch (which) {
    case 0:
      return p.bos_id();
    case 1:
      return p.eos_id();
    case 2:
      return p.pad_id();
    default:
      return p.unk_id();
  }
}

}  // extern "C"
