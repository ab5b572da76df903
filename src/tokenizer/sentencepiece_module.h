// The C interface of the SentencePiece module (libcoenc_sentencepiece.so).
//
// Why a module: Debian's libsentencepiece carries its own copy of protobuf (3.14) and exports its symbols,
// while libtorch loads the system libprotobuf (3.21); linked into one program the two copies resolve into
// each other and the process dies at start-up. So libsentencepiece is never linked into coenc: this small
// module links it, and is loaded at run time with RTLD_LOCAL | RTLD_DEEPBIND, which keeps each protobuf copy
// to its own users.
#pragma once

#include <cstddef>

extern "C" {

struct CoencSpm;  // one loaded model

// Loads a serialized ModelProto. On failure returns null and writes a message into err.
typedef CoencSpm* (*CoencSpmLoadFn)(const char* path, char* err, size_t err_len);
typedef void (*CoencSpmFreeFn)(CoencSpm* model);
// Number of pieces.
typedef int (*CoencSpmSizeFn)(const CoencSpm* model);
// Encodes `len` bytes of valid UTF-8 into at most `cap` ids; returns the count, or -1 (message in err), or
// -(needed + 2) when cap is too small.
typedef long (*CoencSpmEncodeFn)(const CoencSpm* model, const char* text, size_t len, int* ids, size_t cap,
                                 char* err, size_t err_len);
// The piece of `id` (valid while the model lives), its length in *len.
typedef const char* (*CoencSpmPieceFn)(const CoencSpm* model, int id, size_t* len);
// The id of a piece, or -1 when the model does not have it.
typedef int (*CoencSpmPieceToIdFn)(const CoencSpm* model, const char* piece, size_t len);
// Bit mask of kCoencSpmControl, kCoencSpmUnknown, kCoencSpmByte.
typedef int (*CoencSpmTypeFn)(const CoencSpm* model, int id);
// bos, eos, pad, unk ids (-1 when absent) for which = 0, 1, 2, 3.
typedef int (*CoencSpmSpecialIdFn)(const CoencSpm* model, int which);

}  // extern "C"

enum : int { kCoencSpmControl = 1, kCoencSpmUnknown = 2, kCoencSpmByte = 4 };
