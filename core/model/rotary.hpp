#pragma once
// Rotary position embeddings as Hugging Face computes them (rotate_half convention, fp32 angles,
// partial rotary over the first rotary_dim dims, linear and llama3 frequency scaling).
#include <utility>

#include "core/common/tensor.hpp"
#include "core/model/model_config.hpp"

namespace mechscope {

/// Inverse frequencies [rotary_dim / 2] fp32 on `device`, with the config's scaling applied.
at::Tensor ropeInvFreq(const ModelConfig& config, at::Device device);
/// cos and sin [batch, pos, rotary_dim] in `dtype` for integer positions [batch, pos].
std::pair<at::Tensor, at::Tensor> ropeCosSin(const at::Tensor& invFreq, const at::Tensor& positions, at::ScalarType dtype);
/// Rotates the first rotary_dim dims of x [batch, pos, head, d_head]; the rest pass through.
at::Tensor applyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace mechscope
