// Where a model lives and computes: the device and dtype every layer above core is given, parsed once from the
// CLI's and the server's `--device` / `--dtype` strings.
#pragma once

#include <string>

#include <torch/torch.h>

namespace coenc {

// Where a model lives and the dtype it computes in (f32 on CPU; bf16 or f16 on GPU).
struct DeviceOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};

// Parses "cpu" / "cuda" / "cuda:1" and "f32" / "bf16" / "f16" (also "float32", "bfloat16", "float16", "auto":
// f32 on CPU, bf16 on CUDA). Throws InvalidInput / Unsupported (e.g. CUDA in a CPU-only build).
DeviceOptions parse_device_options(const std::string& device, const std::string& dtype);

}  // namespace coenc
