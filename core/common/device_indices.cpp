#include "core/common/device_indices.hpp"

#include <ATen/ATen.h>

#include <algorithm>

namespace mechscope {

at::Tensor indicesOn(const std::vector<int64_t>& values, const at::Device& device) {
  const auto n = static_cast<int64_t>(values.size());
  if (!device.is_cuda()) return at::tensor(values, at::TensorOptions().dtype(at::kLong)).to(device);
  at::Tensor host = at::empty({n}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));  // [n]
  std::copy(values.begin(), values.end(), host.data_ptr<int64_t>());
  return host.to(device, /*non_blocking=*/true);
}

}  // namespace mechscope
