#pragma once
// WeightSource: what a family's loader reads from. Every tensor comes out in the compute dtype on
// the target device, with its shape checked; errors name the file, tensor, expected and actual shape.
#include <functional>
#include <string>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

class SafetensorsSet;

/// Reads, checks and converts checkpoint tensors for a family loader.
class WeightSource {
 public:
  /// `set` must outlive the source.
  WeightSource(const SafetensorsSet& set, at::ScalarType dtype, at::Device device);
  /// Makes each requested tensor with `factory(name, hfShape)` instead of reading a file: running a
  /// family's loader on such a source yields the checkpoint's tensor names and shapes, so writers of
  /// synthetic checkpoints reuse the family tables (no second copy of the name mapping). `has()` is
  /// true for every name, i.e. the canonical prefixed layout with an untied head when untied.
  using TensorFactory = std::function<at::Tensor(const std::string& name, const std::vector<int64_t>& shape)>;
  WeightSource(TensorFactory factory, at::ScalarType dtype);

  /// Tensor `name` with exactly `shape`, in the compute dtype on the device.
  [[nodiscard]] at::Tensor get(const std::string& name, const std::vector<int64_t>& shape) const;
  /// As get(), but only checked and converted on CPU: for tensors that a loader splits or
  /// transposes before they go to the device.
  [[nodiscard]] at::Tensor getCpu(const std::string& name, const std::vector<int64_t>& shape) const;
  /// Whether the checkpoint holds `name`.
  [[nodiscard]] bool has(const std::string& name) const;
  /// Moves a CPU tensor made by a loader to the device and dtype (contiguous).
  [[nodiscard]] at::Tensor place(const at::Tensor& cpu) const;
  /// Moves a CPU tensor made by a loader to the device in its own dtype (e.g. fp32 norm scales of a
  /// bf16 model, which HF applies in fp32).
  [[nodiscard]] at::Tensor placeKeepingDtype(const at::Tensor& cpu) const;
  /// The compute dtype.
  [[nodiscard]] at::ScalarType dtype() const { return m_dtype; }

 private:
  const SafetensorsSet* m_set = nullptr;
  TensorFactory m_factory;
  at::ScalarType m_dtype;
  at::Device m_device;
};

}  // namespace mechscope
