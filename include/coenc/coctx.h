// .coctx: a compressed document. Compress once, ask many times, across processes.
//
// A .coctx file is a safetensors file (docs/co_encoder.md, ".coctx files"): one tensor `chunk.N` [k_N,
// d_text] per chunk of the document (N = 0, 1, ...; the vectors the connector produced, in the dtype they
// were computed in), and `__metadata__` strings that say what made it and let a reader check it:
//   format "coenc.coctx", format_version "1", model_fingerprint (CoEncoderImpl::fingerprint), pooling,
//   compression_ratio, chunk_size, d_text, dtype, n_chunks, n_tokens, n_vectors, chunk_tokens / chunk_vectors
//   / chunk_hashes (JSON arrays: each chunk's token count, vector count and content hash of its token ids),
//   source (the document's file name), checksum (a hash over every other metadata field and every tensor's
//   name, shape, dtype and bytes).
// Reading validates all of it and refuses, in one line naming the file, a file made by another model, a
// damaged or edited one, and one of another format version.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "coenc/co_encoder_config.h"
#include "coenc/types.h"

namespace coenc {

constexpr int kCoctxFormatVersion = 1;

struct CompressedDocument {
  std::vector<torch::Tensor> chunks;      // each chunk's vectors [k_i, d_text], on the CPU
  std::vector<int64_t> chunk_tokens;      // tokens of each chunk (all chunk_size but the last)
  std::vector<std::string> chunk_hashes;  // content hash of each chunk's token ids (32 hex digits)
  std::string model_fingerprint;          // CoEncoderImpl::fingerprint() of the model that compressed it
  std::string pooling;                    // "dynamic", "mean" or "attn"
  int64_t ratio = 0, chunk_size = 0, d_text = 0;
  std::string source;  // the document's file name (informational)

  int64_t n_tokens() const;
  int64_t n_vectors() const;
};

// The content hash of a chunk's token ids (32 hex digits): equal chunks compress to equal vectors, so this
// keys a cache of compressed chunks.
std::string chunk_hash(const TokenIds& ids);

// Writes `doc` to `path` atomically (a reader sees the old file or the new one, whole).
void write_coctx(const std::filesystem::path& path, const CompressedDocument& doc);

// Reads and validates `path` on its own (format, version, metadata, shapes, values, checksum). Throws
// InvalidInput naming the file and what is wrong.
CompressedDocument read_coctx(const std::filesystem::path& path);

// As above, and checks that the model of `config` and `fingerprint` (CoEncoderImpl::config(), fingerprint()) made
// it: fingerprint, pooling, ratio, chunk size, d_text.
CompressedDocument read_coctx(const std::filesystem::path& path, const CoEncoderConfig& config,
                              const std::string& fingerprint);

// The model check of read_coctx(path, config, fingerprint) alone, for a file already read with read_coctx(path)
// (e.g. before the model was loaded). Throws ModelMismatch naming `path` when another model made `doc`.
void check_coctx_model(const CompressedDocument& doc, const CoEncoderConfig& config, const std::string& fingerprint,
                       const std::filesystem::path& path);

}  // namespace coenc
