// Activation checkpointing (gradient checkpointing): run a block without keeping its activations, and run it again
// during the backward pass to get its gradients. Memory for a big tower's activations drops from one set per
// layer to one layer's, for about one more forward pass of compute. libtorch's C++ API has no
// torch.utils.checkpoint; this is the same idea as its non-reentrant form, for blocks without randomness.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

namespace coenc {

// y = block(x), keeping only x. On backward, block(x) runs again with gradients on and the gradient flows to x
// and to `params` (the block's parameters that require gradients; others need not be listed). The autocast state
// of the call is restored for the recomputation (the autograd engine runs it on its own thread).
torch::Tensor checkpointed(const std::function<torch::Tensor(const torch::Tensor&)>& block, const torch::Tensor& x,
                           const std::vector<torch::Tensor>& params);

}  // namespace coenc
