// The far-sums CUDA kernel's launch interface (far_sums_kernel.cu): plain pointers and sizes, no LibTorch and no CUDA
// headers, so that nvcc's translation unit and the ATen wrapper (far_sums.cpp) share it.
#pragma once

#include <cstdint>

namespace mechscope::probe_kernels {

/// One call of the far-sums kernel: every head of one layer's causal prefill, p_ij = exp(s_ij·scale − lse_i).
struct FarSumsArgs {
  const void* q = nullptr;     ///< [n, heads, d] bf16 or fp16: rows qRowStride elements apart, heads qHeadStride
  const void* k = nullptr;     ///< [n, kvHeads, d] same dtype: rows kRowStride apart, kv heads kHeadStride
  const float* lse = nullptr;  ///< [heads, n] each row's log-sum-exp over its causal keys (rows before rowStart unread)
  double* rowMass = nullptr;   ///< [heads, n] out, zeroed by the caller: Σ_{j ≤ i − shift} p_ij for rows i ≥ rowStart
  double* colMass = nullptr;   ///< [heads, n] out, zeroed by the caller: Σ_{i ≥ max(j + shift, rowStart)} p_ij
  int64_t n = 0;               ///< sequence length (queries = keys, offset 0)
  int64_t qRowStride = 0, qHeadStride = 0, kRowStride = 0, kHeadStride = 0;  ///< in elements, multiples of 8
  int64_t shift = 0;           ///< a: only pairs with i − j ≥ a count
  int64_t rowStart = 0;        ///< R: only rows i ≥ R count
  int heads = 0;               ///< query heads
  int group = 1;               ///< query heads per kv head (head h reads kv head h / group)
  int dHead = 0;               ///< 64 or 128
  float scale = 1.0f;          ///< softmax scale of q·k
  bool half = false;           ///< fp16 inputs (else bf16)
  int shape = 0;               ///< block shape, for timing: 0 the default, 1: 8 warps × 16 keys, 2: 4 × 32, 3: 8 × 32
};

/// Whether the kernel is built for head size `dHead`.
inline bool farSumsHeadSizeSupported(int64_t dHead) { return dHead == 64 || dHead == 128; }

/// Launches the kernel on `stream` (a cudaStream_t) of the current device; returns the launch's cudaError_t (0: none).
int launchFarSums(const FarSumsArgs& args, void* stream);

}  // namespace mechscope::probe_kernels
