// Data parallel training over several processes of one machine (one per GPU; or several on the CPU, which is how
// the tests check it) through torch's c10d process groups: NCCL between GPUs, Gloo on the CPU.
//
// Each process holds the whole model and takes its share of every optimizer step's micro-batches; gradients are
// summed across processes before the optimizer step, so N processes compute the step of one process with the same
// global batch (tests/e2e: the loss curves agree). The processes find each other as under torchrun: RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; `coenc train --nproc N` starts them with those set.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

namespace coenc {

class DataParallel {
 public:
  // Joins the group described by the environment (see above), NCCL for a CUDA `device`, Gloo for the CPU.
  // Returns nullptr when WORLD_SIZE is unset or 1. Throws InvalidInput for a malformed variable and Unsupported
  // when this build has no backend for the device.
  static std::unique_ptr<DataParallel> from_environment(const torch::Device& device);
  virtual ~DataParallel() = default;

  int rank() const { return rank_; }
  int world_size() const { return world_; }

  // Sums the tensors over all processes, in place (coalesced into one buffer per dtype: one collective).
  virtual void all_reduce_sum(const std::vector<torch::Tensor>& tensors) = 0;
  // Copies rank 0's values into every process's tensors, in place.
  virtual void broadcast_from_first(const std::vector<torch::Tensor>& tensors) = 0;

 protected:
  DataParallel(int rank, int world) : rank_(rank), world_(world) {}

 private:
  int rank_, world_;
};

// The device of this process: for world > 1 on CUDA, "cuda" (or "cuda:N") becomes cuda:LOCAL_RANK.
torch::Device data_parallel_device(const torch::Device& configured);

// launch_data_parallel (`coenc train --nproc N`) is declared in coenc/train.h.

}  // namespace coenc
