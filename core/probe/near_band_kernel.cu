// The probe's near band in one kernel (docs/attention-probe.md, "the probe's own CUDA kernels"): the probabilities of each row's
// 32 nearest keys, p_{i,i−δ} = exp(q_i·k_{i−δ}·scale − lse_i), and their weighted sums along rows (a distance's near
// part, WAAD's window) and along columns (FAI's near horizon). Before this, LibTorch made them in a dozen passes over an
// [n, head, 32] fp64 tensor per layer (a batched product, copies, exp, weights, sums, index_add).
//
// A warp takes one row at a time: lane l holds d/32 dims of q_i and of each key i − δ (coalesced 256-byte reads of a
// key row), the 32 partial dot products are summed across lanes by a transposing reduction (31 shuffles) that leaves
// δ = l in lane l, and each lane finishes its p in fp64 as the LibTorch path did (fp32 dot of exact products, then
// fp64). A block takes 32 consecutive rows of one head (four a warp) and keeps their p in shared memory, so that each
// column's sum over the block's rows is one atomic add.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "core/probe/near_band_launch.hpp"

namespace mechscope::probe_kernels {

namespace {

constexpr int kWidth = kNearBandWidth;
constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 4;
constexpr int kBlockRows = kWarps * kRowsPerWarp;

/// Two consecutive elements (one 32-bit word) as floats.
template <typename T>
__device__ __forceinline__ float2 pairToFloat2(uint32_t w);
template <>
__device__ __forceinline__ float2 pairToFloat2<__nv_bfloat16>(uint32_t w) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
template <>
__device__ __forceinline__ float2 pairToFloat2<__half>(uint32_t w) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(w), "half2 is one word");
  memcpy(&h, &w, sizeof(w));
  return __half22float2(h);
}

/// v[0 … 31] of every lane → Σ over lanes of v[lane], in lane `lane` (31 shuffles: each step halves what a lane keeps).
__device__ __forceinline__ float transposeSum(float (&v)[kWidth], int lane) {
#pragma unroll
  for (int width = kWidth / 2; width >= 1; width /= 2) {
    const bool upper = (lane & width) != 0;
#pragma unroll
    for (int m = 0; m < width; ++m) {
      const float send = upper ? v[m] : v[m + width];
      const float keep = upper ? v[m + width] : v[m];
      v[m] = keep + __shfl_xor_sync(0xffffffffu, send, width);
    }
  }
  return v[0];
}

__device__ __forceinline__ double warpSum(double x) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) x += __shfl_xor_sync(0xffffffffu, x, m);
  return x;
}

template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32) nearBandKernel(const NearBandArgs a) {
  constexpr int kWords = D / 64;  // 32-bit words (element pairs) per lane: D / 32 dims
  __shared__ double p[kBlockRows][kWidth + 1];  // [row in block, δ], padded against bank conflicts
  __shared__ double rowW[kNearBandMaxRowWeights][kWidth];
  __shared__ double colW[kWidth];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int h = blockIdx.x;
  const int64_t n = a.n, i0 = static_cast<int64_t>(blockIdx.y) * kBlockRows;
  for (int x = tid; x < a.rowWeightCount * kWidth; x += kWarps * 32) rowW[x / kWidth][x % kWidth] = a.rowWeights[x];
  if (tid < kWidth) colW[tid] = a.colWeights ? a.colWeights[tid] : 0.0;
  __syncthreads();
  const T* q = static_cast<const T*>(a.q) + static_cast<int64_t>(h) * a.qHeadStride;
  const T* k = static_cast<const T*>(a.k) + static_cast<int64_t>(h / a.group) * a.kHeadStride;

  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int row = warp * kRowsPerWarp + r;
    const int64_t i = i0 + row;
    double pv = 0.0;  // p_{i, i − lane}
    if (i >= a.rowStart && i < n) {  // warp-uniform
      float qv[2 * kWords];
      const uint32_t* qw = reinterpret_cast<const uint32_t*>(q + i * a.qRowStride) + lane * kWords;
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        const float2 f = pairToFloat2<T>(__ldg(qw + w));
        qv[2 * w] = f.x;
        qv[2 * w + 1] = f.y;
      }
      float dot[kWidth];  // this lane's dims of q_i · k_{i−δ}
#pragma unroll
      for (int d = 0; d < kWidth; ++d) {
        float s = 0.0f;
        if (i - d >= 0) {
          const uint32_t* kw = reinterpret_cast<const uint32_t*>(k + (i - d) * a.kRowStride) + lane * kWords;
#pragma unroll
          for (int w = 0; w < kWords; ++w) {
            const float2 f = pairToFloat2<T>(__ldg(kw + w));
            s = fmaf(qv[2 * w], f.x, s);
            s = fmaf(qv[2 * w + 1], f.y, s);
          }
        }
        dot[d] = s;
      }
      const float s = transposeSum(dot, lane);  // q_i · k_{i−lane}
      if (i - lane >= 0) pv = exp(static_cast<double>(s) * a.scale - a.lse[static_cast<int64_t>(h) * n + i]);
#pragma unroll
      for (int m = 0; m < kNearBandMaxRowWeights; ++m) {
        if (m >= a.rowWeightCount) break;
        const double sum = warpSum(rowW[m][lane] * pv);
        if (lane == 0) a.rowSums[(static_cast<int64_t>(m) * a.heads + h) * n + i] = sum;
      }
    }
    p[row][lane] = pv;
  }
  if (!a.colSums) return;
  __syncthreads();
  // Column j = i0 − 31 + tid gathers p_{j+δ, j} from the block's rows j + δ ∈ [i0, i0 + 32).
  if (tid < kBlockRows + kWidth - 1) {
    const int64_t j = i0 - (kWidth - 1) + tid;
    if (j >= 0 && j < n) {
      double c = 0.0;
#pragma unroll
      for (int d = 0; d < kWidth; ++d) {
        const int64_t rr = j + d - i0;
        if (rr >= 0 && rr < kBlockRows) c += colW[d] * p[rr][d];
      }
      if (c != 0.0) atomicAdd(&a.colSums[static_cast<int64_t>(h) * n + j], c);
    }
  }
}

template <typename T>
cudaError_t launchFor(const NearBandArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>((a.n + kBlockRows - 1) / kBlockRows));
  if (a.dHead == 64) nearBandKernel<T, 64><<<grid, kWarps * 32, 0, stream>>>(a);
  else if (a.dHead == 128) nearBandKernel<T, 128><<<grid, kWarps * 32, 0, stream>>>(a);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace

int launchNearBand(const NearBandArgs& args, void* stream) {
  if (args.n <= 0 || args.heads <= 0) return 0;
  if (args.rowWeightCount < 0 || args.rowWeightCount > kNearBandMaxRowWeights) return static_cast<int>(cudaErrorInvalidValue);
  if ((args.n + kBlockRows - 1) / kBlockRows > 65535) return static_cast<int>(cudaErrorInvalidConfiguration);
  const auto s = static_cast<cudaStream_t>(stream);
  return static_cast<int>(args.half ? launchFor<__half>(args, s) : launchFor<__nv_bfloat16>(args, s));
}

}  // namespace mechscope::probe_kernels
