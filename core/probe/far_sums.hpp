#pragma once
// The probe's far sums from its own CUDA kernel (far_sums_kernel.cu): a causal prefill's row sums T_i = Σ_{j ≤ i−a} p_ij
// and column sums C_j = Σ_{i ≥ j+a, i ≥ R} p_ij in one pass over q·k, given each row's log-sum-exp.
#include <cstdint>
#include <optional>

#include "core/common/tensor.hpp"

namespace mechscope::probe_detail {

/// A far-sums kernel's two outputs.
struct FarSums {
  at::Tensor rowMass;  ///< [head, n] fp64: Σ_{j ≤ i − a} p_ij for rows i ≥ R (0 before R)
  at::Tensor colMass;  ///< [head, n] fp64: Σ_{i ≥ max(j + a, R)} p_ij
};

/// Whether this build has the probe's CUDA kernels (nvcc was found when it was configured).
bool farSumsKernelBuilt();

/// T and C of the causal prefill with queries `q` [n, head, d] and keys `k` [n, kv_head, d] (bf16 or fp16, CUDA),
/// p_ij = exp(q_i·k_j·scale − lse_i) with `lse` [head, n] the rows' log-sum-exps, for pairs i − j ≥ `shift` and rows
/// i ≥ `rowStart`; nullopt where the kernel does not apply (no kernel in this build, CPU, other dtype or head size,
/// compute capability < 8, MECHSCOPE_PROBE_KERNEL=0), and the caller takes its LibTorch passes.
std::optional<FarSums> farSumsOnDevice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& lse, double scale, int64_t shift,
                                       int64_t rowStart);

}  // namespace mechscope::probe_detail
