#pragma once
// Attention in query tiles whose backward recomputes each tile's scores (as flash attention does) instead
// of autograd keeping every tile's softmax: under autograd (edge attribution, gradients of long prompts)
// memory stays O(pos · d_head) per layer where the explicit path keeps [batch, head, pos, key] per layer.
// The forward keeps q, k, v, z and the rows' log-sum-exp; the backward, per tile, recomputes the scores with
// the caller's own score function (scale, mask, and whatever else it applies), takes P = exp(S − lse) and
// pulls dS = P ∘ (dP − rowsum(dO ∘ O)) back through that function with a small local autograd pass, so any
// differentiable score function (soft-capping, say) is handled without a hand-written derivative.
#include <cstdint>
#include <functional>

#include "core/common/tensor.hpp"

namespace mechscope {

/// How recomputedAttention forms and bounds the scores of one tile.
struct RecomputedAttention {
  /// Masked scores [batch, head, t, keys] (fp32; fp64 in fp64 runs: the softmax is taken in their type) of the query rows [r0, r0 + t) (qTile [batch, head, t, d_head])
  /// over `keys` [batch, kv_head, keys, d_head]; differentiable in qTile and keys. Must outlive nothing:
  /// it is kept for the backward, so it captures by value.
  std::function<at::Tensor(const at::Tensor& qTile, const at::Tensor& keys, int64_t r0)> scores;
  int64_t tile = 128;          ///< query rows per tile
  bool keysUpToRow = true;     ///< causal without window or padding: rows < r1 see keys < past + r1 only
  int64_t past = 0;            ///< cached positions before the queries
  at::ScalarType dtype = at::kFloat;  ///< the model's compute dtype (z's; the pattern is cast to it before · V)
  at::Tensor sinks;            ///< [head] learned sink logits (gpt-oss): one more softmax column without a value
};

/// softmax(scores) · V of qh [batch, head, query, d_head] over kh, vh [batch, kv_head, key, d_head] (query heads
/// h·rep … h·rep + rep − 1 share kv head h) → z [batch, query, head, d_head] in spec.dtype. Fully masked rows
/// (padding) give 0. Differentiable in qh, kh and vh when grad mode is on; the backward recomputes the scores.
at::Tensor recomputedAttention(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh, const RecomputedAttention& spec);

}  // namespace mechscope
