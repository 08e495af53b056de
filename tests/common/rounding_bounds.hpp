#pragma once
// Tolerances for comparing two fp32 evaluations of the same forward pass that sum in different orders
// (batched vs one-forward-per-cell, chunked vs whole, 1 vs 2 threads, AVX2 vs AVX-512 kernels). They
// come from the arithmetic, not from the last run on one CPU (issue 20).
//
// A dot product of length n evaluated in floating point in ANY order is within γ_n·Σ|x_i·y_i| of the
// exact value, γ_n = n·u/(1 − n·u), u = 2⁻²⁴ for fp32 (Higham, "Accuracy and Stability of Numerical
// Algorithms", Thm 3.5). A forward pass chains such sums: per layer the q/k/v and output projections
// (d_model), the attention-weighted sum over positions (≤ n_pos), the MLP (d_model, then d_mlp), and
// finally the unembedding (d_model). Errors made early are carried forward — normalisations rescale
// them but do not grow them relative to the activations they ride on — so the accumulated relative
// error of an output is at most γ_N with N the summed lengths along that chain. Two orders are each
// within γ_N·S of the exact value, so they differ by at most 2·γ_N·S, where S bounds Σ|terms| of the
// final sum; for logits S is taken as the largest |logit| times a safety factor for cancellation.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/model/model_config.hpp"

namespace mechscope::test {

/// u = 2⁻²⁴: the unit round-off of fp32.
inline constexpr double kFp32UnitRoundoff = 5.9604644775390625e-08;

/// γ_n = n·u / (1 − n·u).
inline double gamma(double n, double u = kFp32UnitRoundoff) { return n * u / (1.0 - n * u); }

/// N: the summed lengths of the sums chained along one forward pass of `c` over `positions` tokens.
inline double forwardChainLength(const ModelConfig& c, int64_t positions) {
  const double perLayer = 4.0 * c.dModel + static_cast<double>(std::max<int64_t>(positions, 1)) + c.dModel + c.dMlp;
  return c.nLayers * perLayer + c.dModel;
}

/// Largest difference two summation orders can make in a logit difference (or any metric that
/// subtracts two outputs of magnitude ≤ `maxAbsOutput`): 2 orders × 2 outputs × γ_N × S, where
/// S = `cancellation` × max(|output|, 1) covers Σ|terms| exceeding the result's magnitude.
inline double logitDifferenceOrderBound(const ModelConfig& c, int64_t positions, double maxAbsOutput,
                                        double cancellation = 4.0) {
  return 2.0 * 2.0 * gamma(forwardChainLength(c, positions)) * cancellation * std::max(maxAbsOutput, 1.0);
}

}  // namespace mechscope::test
