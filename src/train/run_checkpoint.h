// A training run's checkpoint: everything needed to continue it exactly. A directory (out/checkpoint/) holding
//   trainable.safetensors  the trainable parameters, by module name, float32
//   optimizer.pt           the optimizer's state (torch serialisation)
//   state.json             step, data RNG state, running metrics, the run's config; written last
// The directory is replaced as a whole: the new one is written beside it (checkpoint.tmp/, each file flushed to
// disk), the old one renamed to checkpoint.old/, the new one renamed into place, the old one removed. A process
// killed at any point leaves either checkpoint/ or checkpoint.old/ complete; find_run_checkpoint picks it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace coenc {

void save_run_checkpoint(const std::filesystem::path& dir,
                         const std::vector<std::pair<std::string, torch::Tensor>>& weights,
                         torch::optim::Optimizer& optimizer, const nlohmann::json& state);

// The complete checkpoint at `dir` (or, after a kill between the two renames, at `dir`.old), if any.
std::optional<std::filesystem::path> find_run_checkpoint(const std::filesystem::path& dir);

// Reads a checkpoint written by save_run_checkpoint: copies each tensor into the parameter of the same name in
// `params` (every one must be present, with its shape), loads the optimizer state, returns state.json.
nlohmann::json load_run_checkpoint(const std::filesystem::path& dir,
                                   const std::vector<std::pair<std::string, torch::Tensor>>& params,
                                   torch::optim::Optimizer& optimizer);

}  // namespace coenc
