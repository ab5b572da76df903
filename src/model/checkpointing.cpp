#include "model/checkpointing.h"

#include "core/torch_compat.h"

namespace coenc {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the backward pass needs besides the saved input, carried through AutogradContext::saved_data as a capsule.
struct Recompute : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> block;
  std::vector<torch::Tensor> params;  // leaves: holding them keeps no graph alive
  compat::AutocastState cpu_autocast, cuda_autocast;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // `params` are inputs of this node so that autograd routes their gradients through it; the block reads them
  // itself, so they are not saved.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, torch::TensorList params,
                               const c10::intrusive_ptr<Recompute>& recompute) {
    (void)params;
    torch::Tensor y;
    {
      torch::NoGradGuard no_grad;
      y = recompute->block(x);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["recompute"] = c10::IValue::make_capsule(recompute);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto recompute = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    const auto& params = recompute->params;
    torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    torch::Tensor y;
    {
      torch::AutoGradMode grad(true);
      compat::AutocastScope cpu(torch::kCPU, recompute->cpu_autocast);
      compat::AutocastScope cuda(torch::kCUDA, recompute->cuda_autocast);
      y = recompute->block(x);
    }
    std::vector<torch::Tensor> inputs = {x};
    inputs.insert(inputs.end(), params.begin(), params.end());
    variable_list grads = torch::autograd::grad({y}, inputs, {grad_out[0]}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true);
    grads.emplace_back();  // the capsule
    return grads;
  }
};

}  // namespace

torch::Tensor checkpointed(const std::function<torch::Tensor(const torch::Tensor&)>& block, const torch::Tensor& x,
                           const std::vector<torch::Tensor>& params) {
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->block = block;
  for (const auto& p : params)
    if (p.requires_grad()) recompute->params.push_back(p);
  recompute->cpu_autocast = compat::autocast_state(torch::kCPU);
  recompute->cuda_autocast = compat::autocast_state(torch::kCUDA);
  return CheckpointFunction::apply(x, torch::TensorList(recompute->params), recompute);
}

}  // namespace coenc
