// Reading the weights of a Hugging Face model directory into a module, strictly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "coenc/safetensors.h"

namespace coenc {

// All tensors of a model directory: `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
class WeightSet {
 public:
  // Opens `dir`'s weights (validating each file). Throws NotFound if there are none, naming what was looked for.
  static WeightSet open(const std::filesystem::path& dir);
  // Opens explicit files.
  static WeightSet open_files(const std::vector<std::filesystem::path>& files);

  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  torch::Tensor get(const std::string& name) const;  // CPU, stored dtype
  std::vector<std::string> names() const;
  // "path/model-00001-of-00002.safetensors" for error messages.
  std::string file_of(const std::string& name) const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;
};

// Whether `file_name` is one of a model directory's weight files as write_model_weights names them
// (model.safetensors, model.safetensors.index.json, model-0000i-of-0000N.safetensors).
bool is_model_weight_file(const std::string& file_name);

// A shard size limit given in megabytes (`max_shard_mb`, `--max-shard-mb`; 1 MB = 10^6 bytes) in bytes, as
// write_model_weights takes it (0: one file).
inline int64_t shard_limit_bytes(double max_shard_mb) { return static_cast<int64_t>(max_shard_mb * 1e6); }

// Writes a model directory's weights as WeightSet::open reads them: one `model.safetensors`, or, when
// `max_shard_bytes` > 0 and the tensors take more, Hugging Face shards `model-0000i-of-0000N.safetensors` of at
// most that many bytes each (a tensor larger than the limit gets a shard of its own) plus
// `model.safetensors.index.json`. Every file is written atomically; weight files of an earlier save that the new
// layout does not use are removed afterwards, so the directory never holds two answers for one tensor.
void write_model_weights(const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         int64_t max_shard_bytes = 0);

// Which checkpoint names to skip (they are not weights of our modules) and how names map.
struct LoadRules {
  std::string prefix;              // prepended to each module parameter name to form the checkpoint name
  std::set<std::string> optional;  // module parameters that may be absent (left as they are)
  // Checkpoint names ending with one of these are ignored (e.g. "rotary_emb.inv_freq").
  std::vector<std::string> ignore_suffixes = {"rotary_emb.inv_freq"};
  // Checkpoint names that may be present without a module parameter (e.g. a tied lm_head.weight).
  std::set<std::string> tolerated;
  bool allow_unexpected = false;   // ignore checkpoint tensors under `prefix` with no module parameter
};

// Copies every parameter of `module` from `weights` (converting dtype and device). Strict: collects every
// missing, unexpected and mis-shaped tensor and throws one error that names them all.
void load_module_weights(torch::nn::Module& module, const WeightSet& weights, const LoadRules& rules,
                         const std::string& where);

}  // namespace coenc
