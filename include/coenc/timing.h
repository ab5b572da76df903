// What benchmarks need to time and size work on any device (`coenc bench`, the trainer's step benchmark):
// device synchronisation, peak memory, TF32, bf16 autocast, medians, random inputs. Thin wrappers of
// src/core/torch_compat.h, so that tools need no private header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "coenc/types.h"

namespace coenc {

// Waits for all queued work on `device` (for timing; nothing to wait for on the CPU).
void synchronize_device(const torch::Device& device);
// Peak bytes allocated on `device` since the last reset (0 on the CPU, where it is not tracked).
int64_t peak_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);
// float32 matrix products through TF32 tensor cores (as training on CUDA runs them).
void allow_tf32(bool on);

// CPU threads for a run in `dtype` on `device`. bf16 / f16 products on the CPU go through oneDNN on torch's own
// intra-op threads, which Debian's libtorch starts at one on the 2-core machine; the OpenBLAS pool beside them
// (libtorch's float32 BLAS) only competes for the cores. So a CPU run in bf16 / f16 gets one torch thread per
// CPU this process may use and one OpenBLAS thread, unless OMP_NUM_THREADS or OPENBLAS_NUM_THREADS chooses:
// a bf16 compress of a 10,000-token document took 1.6 s before, 0.8 s after (docs/benchmarks.md, "CPU").
// float32 and CUDA runs are left as they are (float32 is fastest with one torch thread and OpenBLAS on every
// core). Returns whether it changed anything.
bool tune_cpu_threads(const torch::Device& device, torch::ScalarType dtype);
// OpenBLAS's thread count, or 0 where the process's BLAS is not OpenBLAS.
int openblas_threads();
// The CPUs this process may run on (its affinity mask; at least 1).
int usable_cpus();

// The device's name as its driver reports it ("NVIDIA H200", "NVIDIA H100 80GB HBM3"); "cpu" for the CPU.
std::string device_name(const torch::Device& device);
// The memory bandwidth a card's specification gives, in GB/s (1e9 bytes/s), recognised from its name: H200,
// H100 SXM / PCIe / NVL, GH200, H20, A100 40 / 80 GB SXM / PCIe, L40S, L40, L4, A10, RTX 4090, RTX 6000 Ada,
// V100. 0 when the name is not one of them (and for the CPU).
double spec_bandwidth_gbs(const std::string& device_name);
// Memory bandwidth measured on `device`, in GB/s: the median of `reps` copies of a `bytes`-byte buffer into
// another on the same device, counting the bytes read and the bytes written (as CUDA's bandwidthTest counts a
// device-to-device copy).
double measure_copy_bandwidth_gbs(const torch::Device& device, int64_t bytes, int reps);

// bf16 autocast on `device` for the lifetime of the object (off when `enabled` is false); the state before is
// restored after.
class Bf16Autocast {
 public:
  Bf16Autocast(const torch::Device& device, bool enabled);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The median of `values` (the upper one of the two middle values for an even count); `values` must not be empty.
double median(std::vector<double> values);
// `n` token ids drawn uniformly from [0, vocab) by a generator seeded with `seed` (the same ids every time).
TokenIds random_token_ids(int64_t n, int64_t vocab, uint64_t seed);

}  // namespace coenc
