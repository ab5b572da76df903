#include "coenc/device.h"

#include "coenc/error.h"
#include "core/torch_compat.h"

namespace coenc {

DeviceOptions parse_device_options(const std::string& device, const std::string& dtype) {
  DeviceOptions o;
  if (device == "cpu") {
    o.device = torch::kCPU;
  } else if (device.rfind("cuda", 0) == 0) {
    COENC_CHECK_CODE(compat::cuda_available(), Unsupported,
                     "--device {}: this build or machine has no CUDA (rebuild against a CUDA libtorch)", device);
    try {
      o.device = torch::Device(device);
    } catch (const c10::Error&) {
      fail(ErrorCode::InvalidInput, "--device \"{}\": expected cpu, cuda or cuda:N", device);
    }
    if (!o.device.has_index()) o.device = torch::Device(torch::kCUDA, 0);
    COENC_CHECK(o.device.index() < static_cast<int>(torch::cuda::device_count()),
                "--device {}: this machine has {} CUDA device(s)", device, torch::cuda::device_count());
  } else {
    fail(ErrorCode::InvalidInput, "--device \"{}\": expected cpu, cuda or cuda:N", device);
  }
  if (dtype == "auto") {
    o.dtype = o.device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  } else if (dtype == "f32" || dtype == "float32") {
    o.dtype = torch::kFloat32;
  } else if (dtype == "bf16" || dtype == "bfloat16") {
    o.dtype = torch::kBFloat16;
  } else if (dtype == "f16" || dtype == "float16") {
    o.dtype = torch::kFloat16;
  } else {
    fail(ErrorCode::InvalidInput, "--dtype \"{}\": expected f32, bf16, f16 or auto", dtype);
  }
  return o;
}

}  // namespace coenc
