#include "coenc/safetensors.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"

namespace coenc {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The spec bounds the header at 100 MB so that a corrupt size cannot make a reader allocate without limit.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  torch::ScalarType torch_type;
  size_t bytes;
};

// Dtypes that libtorch can hold. (F8 types exist in the spec but not in libtorch 1.13.)
const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},  {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},      {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const char* kKnownButUnsupported[] = {"F8_E4M3", "F8_E5M2", "U16", "U32", "U64", "F8_E8M0", "F4", "F6_E2M3",
                                      "F6_E3M2", "C64"};

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

}  // namespace

torch::ScalarType safetensors_dtype_to_torch(const std::string& dtype, const std::string& where) {
  if (const DtypeInfo* d = find_dtype(dtype)) return d->torch_type;
  for (const char* k : kKnownButUnsupported)
    if (dtype == k) fail(ErrorCode::Unsupported, "{}: dtype {} is not supported (expected one of F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)", where, dtype);
  fail(ErrorCode::InvalidInput, "{}: unknown dtype \"{}\"", where, dtype);
}

std::string torch_dtype_to_safetensors(torch::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.torch_type == dtype) return d.name;
  fail(ErrorCode::Unsupported, "cannot store torch dtype {} in safetensors", c10::toString(dtype));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  const std::string where = path.string();
  std::error_code ec;
  COENC_CHECK_CODE(fs::exists(path, ec), NotFound, "{}: safetensors file not found", where);
  int fd = ::open(path.c_str(), O_RDONLY);
  COENC_CHECK(fd >= 0, "{}: cannot open: {}", where, std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(ErrorCode::InvalidInput, "{}: not a safetensors file: {} bytes, expected at least an 8-byte header size", where, file_size);
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = file_size;
  // MAP_PRIVATE with write permission: tensors viewing the mapping may be written by libtorch (copy-on-write),
  // never reaching the file.
  mapping->addr = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  COENC_CHECK(mapping->addr != MAP_FAILED, "{}: cannot map file: {}", where, std::strerror(errno));
  const auto* bytes = static_cast<const uint8_t*>(mapping->addr);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  COENC_CHECK(header_size <= kMaxHeaderBytes, "{}: header size {} exceeds the 100 MB limit of the format (corrupt file?)", where, header_size);
  COENC_CHECK(8 + header_size <= file_size, "{}: header size {} runs past the end of the file ({} bytes): truncated file?", where, header_size, file_size);
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  COENC_CHECK(header_size >= 2 && header_begin[0] == '{', "{}: header must be a JSON object starting with '{'", where);

  json header;
  try {
    header = json::parse(header_begin, header_begin + header_size);
  } catch (const json::exception& e) {
    fail(ErrorCode::InvalidInput, "{}: header is not valid JSON: {}", where, e.what());
  }
  COENC_CHECK(header.is_object(), "{}: header must be a JSON object", where);

  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      COENC_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings", where);
      for (auto m = v.begin(); m != v.end(); ++m) {
        COENC_CHECK(m.value().is_string(), "{}: __metadata__ field \"{}\" must be a string", where, m.key());
        file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = where + ": tensor \"" + name + "\"";
    COENC_CHECK(v.is_object(), "{}: entry must be an object", at);
    COENC_CHECK(v.contains("dtype") && v["dtype"].is_string(), "{}: missing string field \"dtype\"", at);
    COENC_CHECK(v.contains("shape") && v["shape"].is_array(), "{}: missing array field \"shape\"", at);
    COENC_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
                "{}: \"data_offsets\" must be an array [begin, end]", at);
    SafetensorsEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    if (!info) safetensors_dtype_to_torch(e.dtype, at);  // throws the right error
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      COENC_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                  "{}: shape entries must be non-negative integers", at);
      const uint64_t dim = d.get<uint64_t>();
      COENC_CHECK(dim <= static_cast<uint64_t>(INT64_MAX), "{}: shape entry {} is out of range", at, dim);
      COENC_CHECK(dim == 0 || numel <= UINT64_MAX / dim, "{}: shape overflows", at);
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const json& o : v["data_offsets"])
      COENC_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0),
                  "{}: data_offsets must be non-negative integers", at);
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    COENC_CHECK(e.begin <= e.end, "{}: data_offsets [{}, {}] are reversed", at, e.begin, e.end);
    // numel x element size computed without wrapping: [2^62 + 1] x F32 must not pass as 4 bytes.
    COENC_CHECK(numel <= UINT64_MAX / info->bytes && numel * info->bytes <= static_cast<uint64_t>(INT64_MAX),
                "{}: shape {} x dtype {} overflows the size of any file", at, v["shape"].dump(), e.dtype);
    COENC_CHECK(e.end - e.begin == numel * info->bytes,
                "{}: holds {} bytes but shape x dtype {} needs {}", at, e.end - e.begin, e.dtype, numel * info->bytes);
    file->entries_.push_back(std::move(e));
  }

  std::sort(file->entries_.begin(), file->entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  for (const auto& e : file->entries_) {
    COENC_CHECK(e.begin == expected,
                "{}: tensor \"{}\" starts at byte {} but the previous one ends at {}: offsets must be contiguous with no holes or overlaps",
                where, e.name, e.begin, expected);
    expected = e.end;
  }
  const uint64_t data_size = file_size - 8 - header_size;
  COENC_CHECK(expected == data_size, "{}: tensors cover {} bytes but the data buffer holds {}: truncated or padded file", where, expected, data_size);

  for (size_t i = 0; i < file->entries_.size(); ++i) file->index_[file->entries_[i].name] = i;
  file->mapping_ = mapping;
  file->data_ = bytes + 8 + header_size;
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  COENC_CHECK_CODE(it != index_.end(), NotFound, "{}: no tensor named \"{}\"", path_.string(), name);
  const SafetensorsEntry& e = entries_[it->second];
  const DtypeInfo* info = find_dtype(e.dtype);
  auto options = torch::TensorOptions().dtype(info->torch_type);
  const uint8_t* ptr = data_ + e.begin;
  if (e.end == e.begin) return torch::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % info->bytes == 0) {
    std::shared_ptr<void> keep = mapping_;
    return torch::from_blob(const_cast<uint8_t*>(ptr), e.shape, [keep](void*) {}, options);
  }
  torch::Tensor t = torch::empty(e.shape, options);
  std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
  return t;
}

void write_safetensors(const fs::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    COENC_CHECK(name != "__metadata__", "{}: \"__metadata__\" is not a valid tensor name", path.string());
    COENC_CHECK(!header.contains(name), "{}: tensor \"{}\" given twice", path.string(), name);
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t n = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", torch_dtype_to_safetensors(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(c);
  }
  std::string text = header.dump();
  // Pad the header with spaces so the data buffer starts 8-byte aligned (enables zero-copy reads).
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomic(path, [&](std::ostream& out) {
    uint64_t n = text.size();
    char size_bytes[8];
    for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(size_bytes, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& c : data)
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
  });
}

}  // namespace coenc
