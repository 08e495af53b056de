// The probe's far sums in one pass over q·k (docs/attention-probe.md, "Far sums kernel"): with each row's
// log-sum-exp known (the forward's), p_ij = exp(s_ij·scale − lse_i) needs no online softmax and no P·V product, so
// one tensor-core pass over the causal half gives both the row sums T_i = Σ_{j ≤ i−a} p_ij and the column sums
// C_j = Σ_{i ≥ j+a, i ≥ R} p_ij. LibTorch has no such kernel: its fused attention gives a row's log-sum-exp only, so
// before this each of T and C was a flash pass of its own, C's at d_head + 8 (a key bias) in a wider tile.
//
// Layout. A block owns kKeysPerBlock keys (16 per warp, held as mma A fragments in registers) and one query head, and
// walks the query tiles (kQueryTile rows, double-buffered in shared memory through cp.async) from its first causal one
// to the end: the tile S^T = K·Qᵀ [keys, queries] comes from mma.sync m16n8k16 with fp32 accumulation. Column sums
// (per key) stay in registers (fp32 per tile, fp64 across tiles) and are written once; row sums (per query) are
// reduced over the block's keys through shared memory and added to fp64 global sums with one atomic per row and tile.
// Blocks run longest first (blockIdx.y = key block, the first ones see every query).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/probe/far_sums_launch.hpp"

namespace mechscope::probe_kernels {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kKeysPerBlock = 16 * kWarps;  // one m16 tile of keys per warp
constexpr int kQueryTile = 64;              // queries per step: eight n8 tiles
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t sharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global → shared without a register round trip; zeros when !valid (src is then not read).
__device__ __forceinline__ void copyAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedAddress(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void commitCopies() { asm volatile("cp.async.commit_group;\n" ::); }
/// Waits until at most `Pending` committed copy groups are still in flight.
template <int Pending>
__device__ __forceinline__ void waitCopies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

/// Four 8×8 b16 matrices from shared memory; lanes 8m … 8m + 7 give matrix m's row addresses.
__device__ __forceinline__ void loadMatrices(uint32_t (&r)[4], const void* rowAddress) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedAddress(rowAddress)));
}

/// c += a·b for one m16n8k16 tile (fp32 accumulators).
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// 2^x (relative error ~2⁻²²; −inf → 0).
__device__ __forceinline__ float exp2Approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// Shared-memory offset of element (row, 8·chunk) of a [kQueryTile, D] tile: 16-byte chunks XOR-swizzled by row, so
/// that ldmatrix's eight rows at one logical chunk fall in eight different bank groups.
template <int D>
__device__ __forceinline__ int tileOffset(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) * 8);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) farSumsKernel(const FarSumsArgs a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per query row
  __shared__ __align__(128) uint16_t queries[2][kQueryTile * D];  // T's bits: 16-byte chunks, swizzled (tileOffset)
  __shared__ float lseLog2[2][kQueryTile];        // each query's lse in log2 units; +inf: row not counted
  __shared__ float rowPartial[kWarps][kQueryTile];  // each warp's 16-key part of the tile's row sums

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, group = lane / 4, inGroup = lane % 4;
  const int h = blockIdx.x;
  const int64_t n = a.n, j0 = static_cast<int64_t>(blockIdx.y) * kKeysPerBlock;
  const int64_t iFirst = j0 + a.shift > a.rowStart ? j0 + a.shift : a.rowStart;  // the block's first counted row
  if (iFirst >= n) return;
  const T* q = static_cast<const T*>(a.q) + static_cast<int64_t>(h) * a.qHeadStride;
  const T* k = static_cast<const T*>(a.k) + static_cast<int64_t>(h / a.group) * a.kHeadStride;
  const float* lse = a.lse + static_cast<int64_t>(h) * n;

  // This warp's keys as A fragments (row-major 16 × 16 per k step): a thread holds keys jA = j0 + 16·warp + group and
  // jB = jA + 8, dims 2·inGroup (+1) and 2·inGroup + 8 (+1) of each step. Keys past n are zero (masked below).
  const int64_t jA = j0 + warp * 16 + group, jB = jA + 8;
  uint32_t keyFrag[D / 16][4];
  {
    const uint32_t* rowA = jA < n ? reinterpret_cast<const uint32_t*>(k + jA * a.kRowStride) : nullptr;
    const uint32_t* rowB = jB < n ? reinterpret_cast<const uint32_t*>(k + jB * a.kRowStride) : nullptr;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const int c = ks * 8 + inGroup;  // in pairs of elements
      keyFrag[ks][0] = rowA ? rowA[c] : 0u;
      keyFrag[ks][1] = rowB ? rowB[c] : 0u;
      keyFrag[ks][2] = rowA ? rowA[c + 4] : 0u;
      keyFrag[ks][3] = rowB ? rowB[c + 4] : 0u;
    }
  }

  const int64_t tFirst = iFirst / kQueryTile, tEnd = (n + kQueryTile - 1) / kQueryTile;
  const float scaleLog2 = a.scale * kLog2e;
  auto issueTile = [&](int buf, int64_t t) {  // query rows of tile t → queries[buf], zeros past n
    const int64_t i0 = t * kQueryTile;
#pragma unroll
    for (int x = tid; x < kQueryTile * kChunks; x += kThreads) {
      const int row = x / kChunks, chunk = x % kChunks;
      const bool inside = i0 + row < n;
      copyAsync16(&queries[buf][tileOffset<D>(row, chunk)], inside ? q + (i0 + row) * a.qRowStride + chunk * 8 : q, inside);
    }
  };
  auto lseOf = [&](int64_t t) {  // row t·kQueryTile + tid's normaliser, log2 units (+inf: not counted, so p = 0)
    const int64_t i = t * kQueryTile + tid;
    return i >= a.rowStart && i < n ? lse[i] * kLog2e : INFINITY;
  };

  issueTile(0, tFirst);
  commitCopies();
  if (tid < kQueryTile) lseLog2[0][tid] = lseOf(tFirst);
  float lseNext = 0.0f;
  double colSumA = 0.0, colSumB = 0.0;  // Σ_i p_{i, jA}, Σ_i p_{i, jB} over this thread's query columns
  for (int64_t t = tFirst; t < tEnd; ++t) {
    const int buf = static_cast<int>((t - tFirst) & 1);
    if (t + 1 < tEnd) {
      issueTile(buf ^ 1, t + 1);
      if (tid < kQueryTile) lseNext = lseOf(t + 1);
    }
    commitCopies();
    waitCopies<1>();  // tile t has landed (t + 1 may still be in flight)
    __syncthreads();

    // S^T [16 keys, 64 queries] of this warp: eight n8 tiles; one ldmatrix.x4 gives two k steps of one tile.
    float acc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
      const int row = nt * 8 + (lane & 7);
#pragma unroll
      for (int kk = 0; kk < D / 32; ++kk) {
        uint32_t b[4];
        loadMatrices(b, &queries[buf][tileOffset<D>(row, kk * 4 + (lane >> 3))]);
        mma16816<T>(acc[nt], keyFrag[2 * kk], b[0], b[1]);
        mma16816<T>(acc[nt], keyFrag[2 * kk + 1], b[2], b[3]);
      }
    }

    // p = 2^(s·scale·log2e − lse·log2e): accumulator c0/c1 are key jA at queries qc, qc + 1; c2/c3 key jB.
    const int64_t i0 = t * kQueryTile;
    const bool unmasked = i0 >= j0 + kKeysPerBlock - 1 + a.shift && j0 + kKeysPerBlock <= n;  // every pair i − j ≥ a
    float colA = 0.0f, colB = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int qc = nt * 8 + inGroup * 2;
      const float l0 = lseLog2[buf][qc], l1 = lseLog2[buf][qc + 1];
      float p0 = exp2Approx(fmaf(acc[nt][0], scaleLog2, -l0));
      float p1 = exp2Approx(fmaf(acc[nt][1], scaleLog2, -l1));
      float p2 = exp2Approx(fmaf(acc[nt][2], scaleLog2, -l0));
      float p3 = exp2Approx(fmaf(acc[nt][3], scaleLog2, -l1));
      if (!unmasked) {
        const int64_t i = i0 + qc;
        if (jA >= n || i - jA < a.shift) p0 = 0.0f;
        if (jA >= n || i + 1 - jA < a.shift) p1 = 0.0f;
        if (jB >= n || i - jB < a.shift) p2 = 0.0f;
        if (jB >= n || i + 1 - jB < a.shift) p3 = 0.0f;
      }
      colA += p0 + p1;
      colB += p2 + p3;
      float r0 = p0 + p2, r1 = p1 + p3;  // queries qc, qc + 1 over keys jA, jB; then over the warp's 16 keys
#pragma unroll
      for (int m = 4; m < 32; m *= 2) {
        r0 += __shfl_xor_sync(0xffffffffu, r0, m);
        r1 += __shfl_xor_sync(0xffffffffu, r1, m);
      }
      if (lane < 4) {
        rowPartial[warp][qc] = r0;
        rowPartial[warp][qc + 1] = r1;
      }
    }
    colSumA += colA;
    colSumB += colB;
    if (t + 1 < tEnd && tid < kQueryTile) lseLog2[buf ^ 1][tid] = lseNext;
    __syncthreads();
    if (tid < kQueryTile) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += rowPartial[w][tid];
      if (sum != 0.0f) atomicAdd(&a.rowMass[static_cast<int64_t>(h) * n + i0 + tid], static_cast<double>(sum));
    }
  }
  // Column sums over the four threads that share a key pair, written by the first.
  colSumA += __shfl_xor_sync(0xffffffffu, colSumA, 1);
  colSumA += __shfl_xor_sync(0xffffffffu, colSumA, 2);
  colSumB += __shfl_xor_sync(0xffffffffu, colSumB, 1);
  colSumB += __shfl_xor_sync(0xffffffffu, colSumB, 2);
  if (inGroup == 0) {
    if (jA < n) a.colMass[static_cast<int64_t>(h) * n + jA] = colSumA;
    if (jB < n) a.colMass[static_cast<int64_t>(h) * n + jB] = colSumB;
  }
}

template <typename T>
cudaError_t launchFor(const FarSumsArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>((a.n + kKeysPerBlock - 1) / kKeysPerBlock));
  if (a.dHead == 64) farSumsKernel<T, 64><<<grid, kThreads, 0, stream>>>(a);
  else if (a.dHead == 128) farSumsKernel<T, 128><<<grid, kThreads, 0, stream>>>(a);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace

int launchFarSums(const FarSumsArgs& args, void* stream) {
  if (args.n <= 0 || args.heads <= 0) return 0;
  if ((args.n + kKeysPerBlock - 1) / kKeysPerBlock > 65535) return static_cast<int>(cudaErrorInvalidConfiguration);
  const auto s = static_cast<cudaStream_t>(stream);
  return static_cast<int>(args.half ? launchFor<__half>(args, s) : launchFor<__nv_bfloat16>(args, s));
}

const char* farSumsErrorString(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }

}  // namespace mechscope::probe_kernels
