#include "train/data_parallel.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>

#include "coenc/error.h"

// c10d's backends are behind these macros in torch's headers (set where this build found them: CMakeLists.txt).
#if defined(COENC_WITH_GLOO) || defined(COENC_WITH_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if defined(COENC_WITH_GLOO)
#ifndef USE_C10D_GLOO  // Debian's Torch config passes it already
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(COENC_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace coenc {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int env_int(const char* name, int fallback) {
  const std::string v = env(name);
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    const int n = std::stoi(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  fail(ErrorCode::InvalidInput, "environment variable {}=\"{}\": expected a non-negative integer", name, v);
}

#if defined(COENC_WITH_GLOO) || defined(COENC_WITH_NCCL)
// Newer backends want an explicit shutdown (PyTorch's destroy_process_group) before exit, and warn without one;
// older ones have no such call.
template <typename Group>
auto shutdown_group(Group& g, int) -> decltype(g.shutdown(), void()) {
  g.shutdown();
}
template <typename Group>
void shutdown_group(Group&, long) {}

// One process group of any backend: both expose allreduce / broadcast over a vector of tensors.
template <typename Group>
class GroupOf final : public DataParallel {
 public:
  GroupOf(int rank, int world, c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<Group> group)
      : DataParallel(rank, world), store_(std::move(store)), group_(std::move(group)) {}
  ~GroupOf() override {
    // Not while an exception unwinds: a peer may be gone, and the launcher stops the rest.
    if (std::uncaught_exceptions() == 0) {
      try {
        shutdown_group(*group_, 0);
      } catch (...) {
      }
    }
  }

  void all_reduce_sum(const std::vector<torch::Tensor>& tensors) override {
    // One flat buffer per dtype: a single collective instead of one per tensor.
    std::map<torch::ScalarType, std::vector<torch::Tensor>> by_dtype;
    for (const auto& t : tensors) by_dtype[t.scalar_type()].push_back(t);
    for (auto& [dtype, list] : by_dtype) {
      std::vector<torch::Tensor> flat_parts;
      for (const auto& t : list) flat_parts.push_back(t.reshape({-1}));
      std::vector<torch::Tensor> buffer = {torch::cat(flat_parts)};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      group_->allreduce(buffer, opts)->wait();
      int64_t at = 0;
      for (auto& t : list) {
        t.copy_(buffer[0].narrow(0, at, t.numel()).view_as(t));
        at += t.numel();
      }
    }
  }

  void broadcast_from_first(const std::vector<torch::Tensor>& tensors) override {
    for (const auto& t : tensors) {
      std::vector<torch::Tensor> one = {t.is_contiguous() ? t : t.contiguous()};
      c10d::BroadcastOptions opts;
      opts.rootRank = 0;
      group_->broadcast(one, opts)->wait();
      if (!one[0].is_same(t)) t.copy_(one[0]);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Group> group_;
};
#endif

}  // namespace

torch::Device data_parallel_device(const torch::Device& configured) {
  const int world = env_int("WORLD_SIZE", 1);
  if (world <= 1 || !configured.is_cuda()) return configured;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env_int("LOCAL_RANK", env_int("RANK", 0))));
}

std::unique_ptr<DataParallel> DataParallel::from_environment(const torch::Device& device) {
  const int world = env_int("WORLD_SIZE", 1);
  if (world <= 1) return nullptr;
  const int rank = env_int("RANK", -1);
  COENC_CHECK(rank >= 0 && rank < world, "environment variable RANK must be set, in [0, WORLD_SIZE = {}), got \"{}\"",
              world, env("RANK"));
  const std::string addr = env("MASTER_ADDR").empty() ? "127.0.0.1" : env("MASTER_ADDR");
  const int port = env_int("MASTER_PORT", 29500);
  COENC_CHECK(port > 0 && port < 65536, "environment variable MASTER_PORT={}: expected a port number", port);
#if defined(COENC_WITH_GLOO) || defined(COENC_WITH_NCCL)
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<size_t>(world);
  so.timeout = std::chrono::minutes(5);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  } catch (const std::exception& e) {
    fail(ErrorCode::Internal, "data parallel: rank {} could not reach the rendezvous at {}:{}: {}", rank, addr, port,
         e.what());
  }
#endif
  if (device.is_cuda()) {
#if defined(COENC_WITH_NCCL)
    c10::cuda::set_device(device.index());
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world);
    return std::make_unique<GroupOf<c10d::ProcessGroupNCCL>>(rank, world, store, group);
#else
    fail(ErrorCode::Unsupported, "data parallel on CUDA needs NCCL, and this build found no nccl.h (CMakeLists.txt: "
         "NCCL_INCLUDE_DIR)");
#endif
  }
#if defined(COENC_WITH_GLOO)
  auto opts = c10d::ProcessGroupGloo::Options::create();
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
  return std::make_unique<GroupOf<c10d::ProcessGroupGloo>>(rank, world, store, group);
#else
  fail(ErrorCode::Unsupported, "data parallel on the CPU needs Gloo, and this build found no gloo headers "
       "(install libgloo-dev)");
#endif
}

namespace {

// A TCP port nobody listens on now (the kernel's pick for port 0).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  COENC_CHECK_CODE(fd >= 0, Internal, "--nproc: cannot open a socket: {}", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  COENC_CHECK_CODE(ok, Internal, "--nproc: cannot find a free local port: {}", std::strerror(errno));
  return ntohs(a.sin_port);
}

}  // namespace

int launch_data_parallel(int nproc, const std::vector<std::string>& argv) {
  COENC_CHECK(nproc >= 1, "--nproc must be at least 1, got {}", nproc);
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> children;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = fork();
    COENC_CHECK_CODE(pid >= 0, Internal, "--nproc: fork failed: {}", std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv("/proc/self/exe", args.data());
      std::fprintf(stderr, "error: --nproc: cannot start %s: %s\n", argv[0].c_str(), std::strerror(errno));
      _exit(127);
    }
    children.push_back(pid);
  }
  // Ctrl-C reaches every process of the terminal's group: the children save and stop; this one waits for them.
  struct sigaction ignore {}, old_int {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, &old_int);
  int result = 0;
  size_t running = children.size();
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      // The others would wait for the failed one in their next collective: stop them.
      for (pid_t c : children)
        if (c != pid) kill(c, SIGTERM);
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  return result;
}

}  // namespace coenc
