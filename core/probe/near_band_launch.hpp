// The near-band CUDA kernel's launch interface (near_band_kernel.cu): plain pointers and sizes, no LibTorch and no CUDA
// headers, shared by nvcc's translation unit and the ATen wrapper (near_band.cpp).
#pragma once

#include <cstdint>

namespace mechscope::probe_kernels {

/// Offsets δ = 0 … kNearBandWidth − 1 the kernel covers: one per lane of a warp.
inline constexpr int kNearBandWidth = 32;
/// Most row weightings one call sums.
inline constexpr int kNearBandMaxRowWeights = 4;

/// One call of the near-band kernel: for every head and row i ≥ rowStart of a causal prefill, p_{i,i−δ} =
/// exp(q_i·k_{i−δ}·scale − lse_i) for δ < kNearBandWidth (keys i − δ ≥ 0), summed with weights along rows and columns.
struct NearBandArgs {
  const void* q = nullptr;            ///< [n, heads, d] bf16 or fp16: rows qRowStride elements apart, heads qHeadStride
  const void* k = nullptr;            ///< [n, kvHeads, d] same dtype
  const double* lse = nullptr;        ///< [heads, n] each row's log-sum-exp over its causal keys
  const double* rowWeights = nullptr; ///< [rowWeightCount, kNearBandWidth] w_m(δ)
  const double* colWeights = nullptr; ///< [kNearBandWidth] w(δ), or null: no column sums
  double* rowSums = nullptr;          ///< [rowWeightCount, heads, n] out: Σ_δ w_m(δ) p_{i,i−δ} (rows before rowStart untouched)
  double* colSums = nullptr;          ///< [heads, n] out, zeroed by the caller: Σ_δ w(δ) p_{j+δ,j} over rows j + δ ≥ rowStart
  int64_t n = 0;
  int64_t qRowStride = 0, qHeadStride = 0, kRowStride = 0, kHeadStride = 0;  ///< in elements, even
  int64_t rowStart = 0;
  int rowWeightCount = 0;             ///< 0 … kNearBandMaxRowWeights
  int heads = 0, group = 1, dHead = 0;  ///< dHead 64 or 128
  double scale = 1.0;
  bool half = false;                  ///< fp16 inputs (else bf16)
};

/// Launches the kernel on `stream` (a cudaStream_t); returns the launch's cudaError_t (0: none).
int launchNearBand(const NearBandArgs& args, void* stream);

}  // namespace mechscope::probe_kernels
