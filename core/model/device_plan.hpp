#pragma once
// Where each part of a model lives when it runs on several devices (`--device cuda:0,cuda:1` or `auto`):
// contiguous runs of blocks per device, the embeddings, final norm and unembedding on the first ("home")
// device, where every analysis also works (docs/multi-gpu.md). One device is the plain case.
#include <cstdint>
#include <string>
#include <vector>

#include "core/common/tensor.hpp"
#include "core/model/model_config.hpp"
#include "core/model/model_weights.hpp"

namespace mechscope {

/// One device per block plus the home device.
struct DevicePlan {
  at::Device home = at::kCPU;      ///< embeddings, final norm, unembedding, and the analyses' tensors
  std::vector<at::Device> layers;  ///< per block, in order; runs of equal devices
  /// Whether some block lives off the home device.
  [[nodiscard]] bool split() const;
  /// The distinct devices in order of first use (home first).
  [[nodiscard]] std::vector<at::Device> devices() const;
  /// "cuda:0" or "cuda:0,cuda:1" (the devices in order): what provenance and timing lines print.
  [[nodiscard]] std::string label() const;
  /// "cuda:0 layers 0-15, cuda:1 layers 16-31" (or the one device).
  [[nodiscard]] std::string describe() const;
};

/// Parses one device name: "cpu", "cuda" (= cuda:0) or "cuda:N", checking that it exists and can allocate.
/// InputError / UnsupportedError name the device and the reason.
at::Device parseDevice(const std::string& name);

/// Parses a --device value into the devices it lists: one name, a comma list ("cuda:0,cuda:1",
/// "cuda:0,cpu"), each checked as parseDevice does; a device listed twice is refused.
/// "auto" is resolved by the loader (it needs the model's size): this returns an empty list for it.
std::vector<at::Device> parseDeviceList(const std::string& spec);

/// Weight bytes of a model in the compute dtype by where they live: the home parts (embeddings, learned
/// positions, final norm, untied unembedding) and each block.
struct WeightBytes {
  int64_t home = 0;
  std::vector<int64_t> layers;
  /// home + every layer.
  [[nodiscard]] int64_t total() const;
};

/// Estimates WeightBytes of `cfg` at `elementBytes` per parameter (every expert of sparse layers counted).
WeightBytes estimateWeightBytes(const ModelConfig& cfg, int64_t elementBytes);

/// Splits blocks into contiguous runs over `devices` (in the order given) so that each device's share of
/// the weights (the home parts count on the first) is as even as possible; every device gets at least one
/// block when there are enough blocks. One device: every block on it.
DevicePlan planLayerSplit(const std::vector<at::Device>& devices, const WeightBytes& bytes);

/// Bytes of `bytes` that `plan` puts on `device`.
int64_t bytesOnDevice(const DevicePlan& plan, const WeightBytes& bytes, at::Device device);

/// Moves weights loaded on the CPU to the plan's devices: the home parts to plan.home, block l to
/// plan.layers[l] (contiguous there); CPU targets keep their tensors (views of the mapping). Tied
/// unembeddings stay tied.
void placeWeights(ModelWeights& weights, const DevicePlan& plan);

}  // namespace mechscope
