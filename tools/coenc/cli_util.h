// Flags and parsing shared by several subcommands.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "coenc/sampler.h"
#include "coenc/types.h"

namespace coenc::cli {

struct DeviceArgs {
  std::string device = "cpu";  // cpu, cuda, cuda:N
  std::string dtype = "auto";  // f32, bf16, f16, auto (f32 on CPU, bf16 on CUDA)
};

void add_device_options(CLI::App& cmd, DeviceArgs& args);
void add_sampling_options(CLI::App& cmd, SamplingOptions& options);

// "1,2, 3" -> {1, 2, 3}; `flag` names the option in errors.
TokenIds parse_id_list(const std::string& text, const char* flag);

}  // namespace coenc::cli
