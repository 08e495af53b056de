#pragma once
// Small index tensors made on the host and used on a device, without a stream wait: a plain host-to-CUDA copy of
// pageable memory waits for every queued kernel, and a per-layer one of those drains the GPU once a layer.
#include <cstdint>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

/// `values` as an int64 [n] tensor on `device`; on CUDA copied from pinned memory without waiting for the stream
/// (LibTorch keeps the pinned block until the copy has run).
at::Tensor indicesOn(const std::vector<int64_t>& values, const at::Device& device);

/// `values` as an fp64 [n] tensor on `device`, copied as indicesOn does (small weight tables).
at::Tensor valuesOn(const std::vector<double>& values, const at::Device& device);

}  // namespace mechscope
