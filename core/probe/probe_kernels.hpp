#pragma once
// The probe's own CUDA kernels behind ATen tensors (far_sums_kernel.cu, near_band_kernel.cu): each returns nullopt
// where it does not apply, and the caller takes its LibTorch passes (the same numbers, slower).
#include <cstdint>
#include <optional>

#include "core/common/tensor.hpp"

namespace mechscope::probe_detail {

/// Whether this build has the probe's CUDA kernels (nvcc was found when it was configured).
bool probeKernelsBuilt();

/// A far-sums kernel's two outputs.
struct FarSums {
  at::Tensor rowMass;  ///< [head, n] fp64: Σ_{j ≤ i − a} p_ij for rows i ≥ R (0 before R)
  at::Tensor colMass;  ///< [head, n] fp64: Σ_{i ≥ max(j + a, R)} p_ij
};

/// T and C of the causal prefill with queries `q` [n, head, d] and keys `k` [n, kv_head, d] (bf16 or fp16, CUDA),
/// p_ij = exp(q_i·k_j·scale − lse_i) with `lse` [head, n] the rows' log-sum-exps, for pairs i − j ≥ `shift` and rows
/// i ≥ `rowStart`; nullopt where the kernel does not apply (no kernel in this build, CPU, other dtype or head size,
/// compute capability < 8, MECHSCOPE_PROBE_KERNEL=0).
std::optional<FarSums> farSumsOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale, int64_t shift,
                                       int64_t rowStart);

/// Offsets the near-band kernel covers: δ = 0 … nearBandWidth() − 1 (0 in a build without the kernels, unless
/// MECHSCOPE_NEAR_BAND_EMULATE=1 has nearBandOnDevice compute its sums with LibTorch ops, for the CPU tests).
int64_t nearBandWidth();

/// Whether nearBandOnDevice applies to these q/k (same conditions as farSumsOnDevice).
bool nearBandApplies(const at::Tensor& q, const at::Tensor& k);

/// A near-band kernel's outputs.
struct NearBand {
  at::Tensor rowSums;  ///< [m, head, n] fp64: Σ_δ w_m(δ) p_{i,i−δ} for rows i ≥ R (0 before R)
  at::Tensor colSums;  ///< [head, n] fp64: Σ_δ w(δ) p_{j+δ,j} over rows j + δ ≥ R; undefined without column weights
};

/// Weighted sums of p_{i,i−δ} = exp(q_i·k_{i−δ}·scale − lse_i) over δ < nearBandWidth() (keys i − δ ≥ 0): along rows with
/// `rowWeights` [m ≤ 4, width] fp64 (may be undefined: no row sums) and along columns with `colWeights` [width] fp64 (may be
/// undefined); q, k and lse as farSumsOnDevice. nullopt where the kernel does not apply.
std::optional<NearBand> nearBandOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale,
                                         int64_t rowStart, const at::Tensor& rowWeights, const at::Tensor& colWeights);

}  // namespace mechscope::probe_detail
