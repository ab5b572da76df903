#include "coenc/timing.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <dlfcn.h>
#include <sched.h>

#include "coenc/error.h"
#include "core/torch_compat.h"

namespace coenc {

void synchronize_device(const torch::Device& device) { compat::synchronize(device); }
int64_t peak_memory_bytes(const torch::Device& device) { return compat::peak_memory_bytes(device); }
void reset_peak_memory(const torch::Device& device) { compat::reset_peak_memory(device); }
void allow_tf32(bool on) { compat::allow_tf32(on); }

namespace {

// OpenBLAS's own thread controls, found at run time: libtorch reaches the system BLAS through libblas.so.3, which
// may be OpenBLAS, the reference BLAS or (PyTorch's builds) MKL.
using SetThreads = void (*)(int);
using GetThreads = int (*)();

}  // namespace

int openblas_threads() {
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get ? get() : 0;
}

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

bool tune_cpu_threads(const torch::Device& device, torch::ScalarType dtype) {
  if (!device.is_cpu() || dtype == torch::kFloat32) return false;
  if (std::getenv("OPENBLAS_NUM_THREADS") || std::getenv("OMP_NUM_THREADS")) return false;
  bool changed = false;
  const int cpus = usable_cpus();
  if (torch::get_num_threads() != cpus) {
    torch::set_num_threads(cpus);
    changed = true;
  }
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set && openblas_threads() != 1) {
    set(1);
    changed = true;
  }
  return changed;
}

std::string device_name(const torch::Device& device) {
  return compat::device_name(device);
}

double spec_bandwidth_gbs(const std::string& name) {
  // Vendors' data sheets. The first entry whose every word occurs in the name wins: longer names come first.
  struct Card {
    std::vector<const char*> words;
    double gbs;
  };
  static const std::vector<Card> cards = {
      {{"GH200"}, 4900},
      {{"H200"}, 4800},
      {{"H100", "NVL"}, 3900},
      {{"H100", "PCIe"}, 2000},
      {{"H100"}, 3350},
      {{"H20"}, 4000},
      {{"A100", "80GB", "PCIe"}, 1935},
      {{"A100", "80GB"}, 2039},
      {{"A100"}, 1555},
      {{"L40S"}, 864},
      {{"L40"}, 864},
      {{"L4"}, 300},
      {{"A10"}, 600},
      {{"RTX 4090"}, 1008},
      {{"RTX 6000 Ada"}, 960},
      {{"V100"}, 900},
  };
  auto has_word = [&](const char* w) {
    // a whole word: "L4" is not found in "L40S", "H20" not in "H200"
    for (size_t at = name.find(w); at != std::string::npos; at = name.find(w, at + 1)) {
      const size_t end = at + std::strlen(w);
      const bool left = at == 0 || !std::isalnum(static_cast<unsigned char>(name[at - 1]));
      const bool right = end == name.size() || !std::isalnum(static_cast<unsigned char>(name[end]));
      if (left && right) return true;
    }
    return false;
  };
  for (const Card& c : cards)
    if (std::all_of(c.words.begin(), c.words.end(), has_word)) return c.gbs;
  return 0;
}

double measure_copy_bandwidth_gbs(const torch::Device& device, int64_t bytes, int reps) {
  COENC_CHECK(bytes > 0 && reps > 0, "measure_copy_bandwidth_gbs: bytes and reps must be positive");
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().dtype(torch::kUInt8).device(device);
  torch::Tensor src = torch::ones({bytes}, opts), dst = torch::empty({bytes}, opts);
  std::vector<double> times;
  for (int r = 0; r < reps + 1; ++r) {  // the first copy warms up
    compat::synchronize(device);
    const auto t0 = std::chrono::steady_clock::now();
    dst.copy_(src);
    compat::synchronize(device);
    if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(bytes) / median(times) / 1e9;
}

struct Bf16Autocast::State {
  compat::AutocastScope scope;
};

Bf16Autocast::Bf16Autocast(const torch::Device& device, bool enabled)
    : state_(new State{{device.type(), compat::AutocastState{enabled, torch::kBFloat16}}}) {}
Bf16Autocast::~Bf16Autocast() = default;

double median(std::vector<double> values) {
  COENC_CHECK_CODE(!values.empty(), Internal, "median of no values");
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

TokenIds random_token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  auto t = torch::randint(vocab, {n}, at::detail::createCPUGenerator(seed), torch::kInt64);
  TokenIds ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<TokenId>(t[i].item<int64_t>());
  return ids;
}

}  // namespace coenc
