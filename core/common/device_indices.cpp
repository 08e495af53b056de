#include "core/common/device_indices.hpp"

#include <ATen/ATen.h>

#include <algorithm>

namespace mechscope {

namespace {

template <typename T>
at::Tensor onDevice(const std::vector<T>& values, at::ScalarType dtype, const at::Device& device) {
  const auto n = static_cast<int64_t>(values.size());
  const auto opt = at::TensorOptions().dtype(dtype);
  if (!device.is_cuda()) return at::tensor(values, opt).to(device);
  at::Tensor host = at::empty({n}, opt.pinned_memory(true));  // [n]
  std::copy(values.begin(), values.end(), host.data_ptr<T>());
  return host.to(device, /*non_blocking=*/true);
}

}  // namespace

at::Tensor indicesOn(const std::vector<int64_t>& values, const at::Device& device) { return onDevice(values, at::kLong, device); }

at::Tensor valuesOn(const std::vector<double>& values, const at::Device& device) { return onDevice(values, at::kDouble, device); }

}  // namespace mechscope
