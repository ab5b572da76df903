#include "coenc/coctx.h"

#include <cctype>
#include <numeric>

#include <nlohmann/json.hpp>

#include "coenc/error.h"
#include "coenc/safetensors.h"
#include "core/hash.h"

namespace coenc {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "coenc.coctx";

std::string chunk_name(size_t i) {
  return "chunk." + std::to_string(i);
}

// Everything in the file but the checksum itself: metadata fields (in key order) and tensors (in chunk
// order).
std::string checksum_of(const std::map<std::string, std::string>& metadata,
                        const std::vector<torch::Tensor>& chunks) {
  Hasher h;
  h.update_string("coenc.coctx.checksum.v1");
  for (const auto& [key, value] : metadata) {
    if (key == "checksum") continue;
    h.update_string(key);
    h.update_string(value);
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    const torch::Tensor t = chunks[i].contiguous();
    h.update_string(chunk_name(i));
    h.update_string(torch_dtype_to_safetensors(t.scalar_type()));
    h.update_u64(static_cast<uint64_t>(t.dim()));
    for (int64_t s : t.sizes()) h.update_u64(static_cast<uint64_t>(s));
    h.update(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
  return h.hex();
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool is_hex32(const std::string& s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) &&
                  !std::isupper(static_cast<unsigned char>(c));
         });
}

// Every count in the metadata is at most this (2^32): sums over the per-chunk lists (at most as many entries as
// the 100 MB header holds) then stay far inside int64.
constexpr int64_t kMaxCount = int64_t{1} << 32;

// Reads the metadata of a .coctx file, naming the file and the field in every error.
class MetadataReader {
 public:
  MetadataReader(const std::map<std::string, std::string>& m, std::string where)
      : m_(m), where_(std::move(where)) {}

  const std::string& str(const std::string& key) const {
    auto it = m_.find(key);
    COENC_CHECK(it != m_.end(), "{}: damaged .coctx file: metadata field \"{}\" is missing", where_, key);
    return it->second;
  }
  int64_t integer(const std::string& key, int64_t min) const {
    const std::string& v = str(key);
    const bool digits = !v.empty() && v.size() <= 18 && std::all_of(v.begin(), v.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c));
    });
    COENC_CHECK(digits && std::stoll(v) >= min && std::stoll(v) <= kMaxCount,
                "{}: damaged .coctx file: metadata field \"{}\" must be an integer in [{}, {}], got \"{}\"", where_,
                key, min, kMaxCount, v);
    return std::stoll(v);
  }
  json array(const std::string& key, size_t n) const {
    json j;
    try {
      j = json::parse(str(key));
    } catch (const json::exception&) {
      fail(ErrorCode::InvalidInput, "{}: damaged .coctx file: metadata field \"{}\" is not a JSON array",
           where_, key);
    }
    COENC_CHECK(j.is_array() && j.size() == n,
                "{}: damaged .coctx file: metadata field \"{}\" must list {} entries (n_chunks), got {}",
                where_, key, n, j.is_array() ? j.size() : 0);
    return j;
  }
  std::vector<int64_t> int_array(const std::string& key, size_t n, int64_t min) const {
    std::vector<int64_t> out;
    for (const auto& v : array(key, n)) {
      // A negative value reads as a huge unsigned one and a huge unsigned one as negative: both fail.
      COENC_CHECK(v.is_number_integer() && v.get<int64_t>() >= min &&
                      v.get<uint64_t>() <= static_cast<uint64_t>(kMaxCount),
                  "{}: damaged .coctx file: metadata field \"{}\" must hold integers in [{}, {}], got {}", where_,
                  key, min, kMaxCount, v.dump());
      out.push_back(v.get<int64_t>());
    }
    return out;
  }

 private:
  const std::map<std::string, std::string>& m_;
  std::string where_;
};

}  // namespace

int64_t CompressedDocument::n_tokens() const {
  return std::accumulate(chunk_tokens.begin(), chunk_tokens.end(), int64_t{0});
}

int64_t CompressedDocument::n_vectors() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += c.size(0);
  return n;
}

std::string chunk_hash(const TokenIds& ids) {
  Hasher h;
  h.update_string("coenc.chunk.v1");
  h.update_u64(ids.size());
  for (TokenId id : ids) h.update_u64(static_cast<uint64_t>(static_cast<uint32_t>(id)));
  return h.hex();
}

void write_coctx(const fs::path& path, const CompressedDocument& doc) {
  const std::string where = path.string();
  COENC_CHECK(!doc.chunks.empty(), "{}: nothing to write: the document has no chunks", where);
  COENC_CHECK(doc.chunk_tokens.size() == doc.chunks.size() && doc.chunk_hashes.size() == doc.chunks.size(),
              "{}: {} chunks but {} token counts and {} hashes", where, doc.chunks.size(),
              doc.chunk_tokens.size(), doc.chunk_hashes.size());
  const auto dtype = doc.chunks[0].scalar_type();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<torch::Tensor> cpu;
  json vectors = json::array();
  for (size_t i = 0; i < doc.chunks.size(); ++i) {
    const torch::Tensor& v = doc.chunks[i];
    COENC_CHECK(v.dim() == 2 && v.size(0) >= 1 && v.size(1) == doc.d_text && v.scalar_type() == dtype,
                "{}: chunk {} must be [k >= 1, {}] of one dtype, got {}", where, i, doc.d_text, v.sizes());
    cpu.push_back(v.detach().to(torch::kCPU).contiguous());
    tensors.emplace_back(chunk_name(i), cpu.back());
    vectors.push_back(v.size(0));
  }
  std::map<std::string, std::string> m = {
      {"format", kFormat},
      {"format_version", std::to_string(kCoctxFormatVersion)},
      {"model_fingerprint", doc.model_fingerprint},
      {"pooling", doc.pooling},
      {"compression_ratio", std::to_string(doc.ratio)},
      {"chunk_size", std::to_string(doc.chunk_size)},
      {"d_text", std::to_string(doc.d_text)},
      {"dtype", torch_dtype_to_safetensors(dtype)},
      {"n_chunks", std::to_string(doc.chunks.size())},
      {"n_tokens", std::to_string(doc.n_tokens())},
      {"n_vectors", std::to_string(doc.n_vectors())},
      {"chunk_tokens", json(doc.chunk_tokens).dump()},
      {"chunk_vectors", vectors.dump()},
      {"chunk_hashes", json(doc.chunk_hashes).dump()},
      {"source", doc.source},
  };
  m["checksum"] = checksum_of(m, cpu);
  write_safetensors(path, tensors, m);
}

CompressedDocument read_coctx(const fs::path& path) {
  const std::string where = path.string();
  auto file = SafetensorsFile::open(path);
  const auto& m = file->metadata();
  auto format = m.find("format");
  COENC_CHECK(format != m.end() && format->second == kFormat,
              "{}: not a .coctx file (a safetensors file without \"format\": \"{}\" in its metadata)", where,
              kFormat);
  MetadataReader r(m, where);
  const int64_t version = r.integer("format_version", 0);
  COENC_CHECK(version == kCoctxFormatVersion,
              "{}: .coctx format version {}, but this coenc reads version {}: compress the document again",
              where, version, kCoctxFormatVersion);

  CompressedDocument doc;
  doc.model_fingerprint = r.str("model_fingerprint");
  COENC_CHECK(is_hex32(doc.model_fingerprint),
              "{}: damaged .coctx file: model_fingerprint \"{}\" is not 32 hex digits", where,
              doc.model_fingerprint);
  doc.pooling = r.str("pooling");
  COENC_CHECK(doc.pooling == "dynamic" || doc.pooling == "mean" || doc.pooling == "attn",
              "{}: damaged .coctx file: pooling \"{}\" (expected dynamic, mean or attn)", where, doc.pooling);
  doc.ratio = r.integer("compression_ratio", 1);
  doc.chunk_size = r.integer("chunk_size", 1);
  doc.d_text = r.integer("d_text", 1);
  doc.source = r.str("source");
  const std::string& dtype = r.str("dtype");
  COENC_CHECK(dtype == "F32" || dtype == "BF16" || dtype == "F16",
              "{}: damaged .coctx file: dtype \"{}\" (expected F32, BF16 or F16)", where, dtype);
  const int64_t n_chunks = r.integer("n_chunks", 1), n_tokens = r.integer("n_tokens", 1),
                n_vectors = r.integer("n_vectors", 1);
  doc.chunk_tokens = r.int_array("chunk_tokens", n_chunks, 1);
  const std::vector<int64_t> chunk_vectors = r.int_array("chunk_vectors", n_chunks, 1);
  for (const auto& h : r.array("chunk_hashes", n_chunks)) {
    COENC_CHECK(h.is_string() && is_hex32(h.get<std::string>()),
                "{}: damaged .coctx file: chunk_hashes must hold 32-hex-digit strings, got {}", where,
                h.dump());
    doc.chunk_hashes.push_back(h.get<std::string>());
  }
  for (int64_t i = 0; i < n_chunks; ++i) {
    const int64_t t = doc.chunk_tokens[i];
    COENC_CHECK(
        i + 1 == n_chunks ? t <= doc.chunk_size : t == doc.chunk_size,
        "{}: damaged .coctx file: chunk {} has {} tokens (chunk_size {}: every chunk but the last is full)",
        where, i, t, doc.chunk_size);
  }
  COENC_CHECK(doc.n_tokens() == n_tokens,
              "{}: damaged .coctx file: chunk_tokens add up to {}, n_tokens says {}", where, doc.n_tokens(),
              n_tokens);
  COENC_CHECK(std::accumulate(chunk_vectors.begin(), chunk_vectors.end(), int64_t{0}) == n_vectors,
              "{}: damaged .coctx file: chunk_vectors do not add up to n_vectors {}", where, n_vectors);

  COENC_CHECK(static_cast<int64_t>(file->entries().size()) == n_chunks,
              "{}: damaged .coctx file: {} tensors, but the metadata lists {} chunks", where,
              file->entries().size(), n_chunks);
  for (int64_t i = 0; i < n_chunks; ++i) {
    const std::string name = chunk_name(i);
    COENC_CHECK(file->contains(name),
                "{}: damaged .coctx file: tensor {} is missing (the metadata lists {} chunks)", where, name,
                n_chunks);
    torch::Tensor t = file->tensor(name);
    const std::vector<int64_t> expected = {chunk_vectors[i], doc.d_text};
    COENC_CHECK(t.sizes().vec() == expected,
                "{}: damaged .coctx file: {} has shape {}, but the metadata says {}", where, name,
                shape_str(t.sizes().vec()), shape_str(expected));
    COENC_CHECK(torch_dtype_to_safetensors(t.scalar_type()) == dtype,
                "{}: damaged .coctx file: {} is {}, but the metadata says {}", where, name,
                torch_dtype_to_safetensors(t.scalar_type()), dtype);
    COENC_CHECK(torch::isfinite(t.to(torch::kFloat32)).all().item<bool>(),
                "{}: damaged .coctx file: {} holds non-finite values (NaN or infinity)", where, name);
    doc.chunks.push_back(t);
  }
  COENC_CHECK(checksum_of(m, doc.chunks) == r.str("checksum"),
              "{}: damaged .coctx file: checksum mismatch (the file was changed after it was written)",
              where);
  return doc;
}

CompressedDocument read_coctx(const fs::path& path, const CoEncoderConfig& config, const std::string& fingerprint) {
  CompressedDocument doc = read_coctx(path);
  check_coctx_model(doc, config, fingerprint, path);
  return doc;
}

void check_coctx_model(const CompressedDocument& doc, const CoEncoderConfig& c, const std::string& fingerprint,
                       const fs::path& path) {
  const std::string where = path.string();
  // The same model set to another ratio gives another fingerprint: say so, rather than "another model".
  const int64_t model_ratio = c.ratio;
  COENC_CHECK_CODE(doc.ratio == model_ratio || doc.pooling != pooling_mode_name(c.pooling),
                   ModelMismatch,
                   "{}: compressed at ratio {} (tokens per vector), but the model is set to ratio {}: read it at "
                   "ratio {} (coenc ask --ratio {}), or compress the document again",
                   where, doc.ratio, model_ratio, doc.ratio, doc.ratio);
  COENC_CHECK_CODE(
      doc.model_fingerprint == fingerprint, ModelMismatch,
      "{}: compressed by another model (its model_fingerprint {}, the loaded model's {}): compress the "
      "document again with this model",
      where, doc.model_fingerprint, fingerprint);
  // The fingerprint covers these; checked again so that a mismatch can never reach the decoder.
  COENC_CHECK_CODE(doc.d_text == c.text.hidden_size && doc.chunk_size == c.chunk_size &&
                       doc.pooling == pooling_mode_name(c.pooling) && doc.ratio == c.ratio,
                   ModelMismatch,
                   "{}: made for d_text {}, chunk_size {}, pooling {}, ratio {}; the model has {}, {}, {}, {}", where,
                   doc.d_text, doc.chunk_size, doc.pooling, doc.ratio, c.text.hidden_size, c.chunk_size,
                   pooling_mode_name(c.pooling), c.ratio);
}

}  // namespace coenc
