#pragma once
// Rotary position embeddings as Hugging Face computes them (rotate_half convention, fp32 angles,
// partial rotary over the first rotary_dim dims, linear, llama3 and longrope frequency scaling).
#include <utility>

#include "core/common/tensor.hpp"
#include "core/model/model_config.hpp"

namespace mechscope {

/// Inverse frequencies [rotary_dim / 2] fp32 on `device` for `theta` with `scaling` applied; `longFactors`
/// picks LongRope's long factors (else its short ones).
at::Tensor ropeInvFreq(int rotaryDim, double theta, const RopeScaling& scaling, at::Device device, bool longFactors = false);
/// The same for the config's (global) rotary.
at::Tensor ropeInvFreq(const ModelConfig& config, at::Device device, bool longFactors = false);
/// cos and sin [batch, pos, rotary_dim] in `dtype` for integer positions [batch, pos], multiplied by
/// `attentionFactor` in fp32 before the cast (LongRope).
std::pair<at::Tensor, at::Tensor> ropeCosSin(const at::Tensor& invFreq, const at::Tensor& positions, at::ScalarType dtype,
                                             double attentionFactor = 1.0);
/// Rotates the first rotary_dim dims of x [batch, pos, head, d_head]; the rest pass through.
at::Tensor applyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace mechscope
