// safetensors reader and writer (https://github.com/huggingface/safetensors, "Format").
//
// File layout: 8-byte little-endian header size N, N bytes of JSON header, then the data buffer. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data buffer) and
// may hold "__metadata__", a string-to-string map. We validate everything the spec requires and name the file
// and tensor in every error.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace coenc {

// One tensor's header entry.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // safetensors dtype string: F32, F16, BF16, I64, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer
};

class SafetensorsFile {
 public:
  // Opens and validates `path`. The file is memory-mapped; tensors whose data is aligned to their element size
  // are views of the mapping (zero-copy), the rest are copied. Throws coenc::Error naming the file on any
  // violation of the format.
  static std::shared_ptr<SafetensorsFile> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Entries in file order (ascending offsets).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }

  // The tensor `name` on the CPU in its stored dtype. Views keep the mapping alive. Throws NotFound.
  torch::Tensor tensor(const std::string& name) const;

  ~SafetensorsFile();

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<void> mapping_;  // the whole file, mmap'ed
  const uint8_t* data_ = nullptr;  // start of the data buffer
};

// Maps between safetensors dtype strings and torch dtypes. Throws Unsupported for dtypes we cannot hold.
torch::ScalarType safetensors_dtype_to_torch(const std::string& dtype, const std::string& where);
std::string torch_dtype_to_safetensors(torch::ScalarType dtype);

// Writes `tensors` (name -> tensor, any device, made contiguous) and `metadata` to `path` atomically: the file
// is written to a temporary name in the same folder, flushed, and renamed over `path`.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace coenc
