// The probe's far sums in one pass over q·k (docs/attention-probe.md, "the probe's own CUDA kernels"): with each row's
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

/// A kernel shape: warps per block, m16 key tiles per warp, and how row sums leave the block (fp64 atomics; Skip
/// only in scripts/device/far_sums_bench.cu, to time what they cost).
template <int Warps, int KeyTiles, bool RowSums = true>
struct FarSumsShape {
  static constexpr int kWarps = Warps, kKeyTiles = KeyTiles, kThreads = Warps * 32;
  static constexpr int kKeysPerBlock = 16 * KeyTiles * Warps;
  // 16 warps per multiprocessor (≤ 128 registers a thread) with one key tile a warp; 8 (≤ 255) with two.
  static constexpr int kMinBlocks = (KeyTiles == 1 ? 16 : 8) / Warps;
  static constexpr bool kRowSums = RowSums;
};

template <typename T, int D, typename Shape>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinBlocks) farSumsKernel(const FarSumsArgs a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per query row
  constexpr int kWarps = Shape::kWarps, kKeyTiles = Shape::kKeyTiles, kThreads = Shape::kThreads;
  constexpr int kKeysPerBlock = Shape::kKeysPerBlock;
  constexpr int kTilesPerPass = 8 / kKeyTiles;  // n8 query tiles per pass: the accumulators stay at 32 registers
  __shared__ __align__(128) uint16_t queries[2][kQueryTile * D];  // T's bits: 16-byte chunks, swizzled (tileOffset)
  __shared__ float lseLog2[2][kQueryTile];          // each query's lse in log2 units; +inf: row not counted
  __shared__ float rowPartial[2][kWarps][kQueryTile];  // each warp's part of a tile's row sums

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, group = lane / 4, inGroup = lane % 4;
  const int h = blockIdx.x;
  const int64_t n = a.n, j0 = static_cast<int64_t>(blockIdx.y) * kKeysPerBlock;
  const int64_t iFirst = j0 + a.shift > a.rowStart ? j0 + a.shift : a.rowStart;  // the block's first counted row
  if (iFirst >= n) return;
  const T* q = static_cast<const T*>(a.q) + static_cast<int64_t>(h) * a.qHeadStride;
  const T* k = static_cast<const T*>(a.k) + static_cast<int64_t>(h / a.group) * a.kHeadStride;
  const float* lse = a.lse + static_cast<int64_t>(h) * n;

  // This warp's keys as A fragments (row-major 16 × 16 per k step): in key tile mt a thread holds keys
  // key[mt][0] = j0 + 16·(kKeyTiles·warp + mt) + group and key[mt][1] = that + 8, dims 2·inGroup (+1) and 2·inGroup + 8
  // (+1) of each step. Keys past n are zero (masked below).
  int64_t key[kKeyTiles][2];
  uint32_t keyFrag[kKeyTiles][D / 16][4];
#pragma unroll
  for (int mt = 0; mt < kKeyTiles; ++mt) {
    key[mt][0] = j0 + 16 * (kKeyTiles * warp + mt) + group;
    key[mt][1] = key[mt][0] + 8;
    const uint32_t* rowA = key[mt][0] < n ? reinterpret_cast<const uint32_t*>(k + key[mt][0] * a.kRowStride) : nullptr;
    const uint32_t* rowB = key[mt][1] < n ? reinterpret_cast<const uint32_t*>(k + key[mt][1] * a.kRowStride) : nullptr;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const int c = ks * 8 + inGroup;  // in pairs of elements
      keyFrag[mt][ks][0] = rowA ? rowA[c] : 0u;
      keyFrag[mt][ks][1] = rowB ? rowB[c] : 0u;
      keyFrag[mt][ks][2] = rowA ? rowA[c + 4] : 0u;
      keyFrag[mt][ks][3] = rowB ? rowB[c + 4] : 0u;
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
  auto flushRows = [&](int buf, int64_t t) {  // tile t's row sums over the block's keys → global, one atomic per row
    if (Shape::kRowSums && tid < kQueryTile) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += rowPartial[buf][w][tid];
      if (sum != 0.0f) atomicAdd(&a.rowMass[static_cast<int64_t>(h) * n + t * kQueryTile + tid], static_cast<double>(sum));
    }
  };
  double colSum[kKeyTiles][2] = {};  // Σ_i p_{i, key[mt][e]} over this thread's query columns
  // One barrier per tile: after it, tile t has landed for every thread and every warp is done with tile t − 1, whose
  // buffers (queries, lse, row partials) may then be refilled or read.
  for (int64_t t = tFirst; t < tEnd; ++t) {
    const int buf = static_cast<int>((t - tFirst) & 1);
    waitCopies<0>();
    __syncthreads();
    float lseNext = 0.0f;
    if (t + 1 < tEnd) {
      issueTile(buf ^ 1, t + 1);
      commitCopies();
      if (tid < kQueryTile) lseNext = lseOf(t + 1);
    }
    if (t > tFirst) flushRows(buf ^ 1, t - 1);

    const int64_t i0 = t * kQueryTile;
    const bool unmasked = i0 >= j0 + kKeysPerBlock - 1 + a.shift && j0 + kKeysPerBlock <= n;  // every pair i − j ≥ a
    float colPart[kKeyTiles][2] = {};
#pragma unroll
    for (int pass = 0; pass < kKeyTiles; ++pass) {
      // S^T [16 keys, 8 queries] per (key tile, n8 tile): one ldmatrix.x4 gives two k steps of a query tile, shared by
      // every key tile of the warp.
      float acc[kKeyTiles][kTilesPerPass][4];
#pragma unroll
      for (int nt = 0; nt < kTilesPerPass; ++nt) {
#pragma unroll
        for (int mt = 0; mt < kKeyTiles; ++mt) acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;
        const int row = (pass * kTilesPerPass + nt) * 8 + (lane & 7);
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
          uint32_t b[4];
          loadMatrices(b, &queries[buf][tileOffset<D>(row, kk * 4 + (lane >> 3))]);
#pragma unroll
          for (int mt = 0; mt < kKeyTiles; ++mt) {
            mma16816<T>(acc[mt][nt], keyFrag[mt][2 * kk], b[0], b[1]);
            mma16816<T>(acc[mt][nt], keyFrag[mt][2 * kk + 1], b[2], b[3]);
          }
        }
      }
      // p = 2^(s·scale·log2e − lse·log2e): accumulators c0/c1 are key[mt][0] at queries qc, qc + 1; c2/c3 key[mt][1].
#pragma unroll
      for (int nt = 0; nt < kTilesPerPass; ++nt) {
        const int qc = (pass * kTilesPerPass + nt) * 8 + inGroup * 2;
        const float l0 = lseLog2[buf][qc], l1 = lseLog2[buf][qc + 1];
        float r0 = 0.0f, r1 = 0.0f;  // queries qc, qc + 1 over this thread's keys
#pragma unroll
        for (int mt = 0; mt < kKeyTiles; ++mt) {
          float p0 = exp2Approx(fmaf(acc[mt][nt][0], scaleLog2, -l0));
          float p1 = exp2Approx(fmaf(acc[mt][nt][1], scaleLog2, -l1));
          float p2 = exp2Approx(fmaf(acc[mt][nt][2], scaleLog2, -l0));
          float p3 = exp2Approx(fmaf(acc[mt][nt][3], scaleLog2, -l1));
          if (!unmasked) {
            const int64_t i = i0 + qc, jA = key[mt][0], jB = key[mt][1];
            if (jA >= n || i - jA < a.shift) p0 = 0.0f;
            if (jA >= n || i + 1 - jA < a.shift) p1 = 0.0f;
            if (jB >= n || i - jB < a.shift) p2 = 0.0f;
            if (jB >= n || i + 1 - jB < a.shift) p3 = 0.0f;
          }
          colPart[mt][0] += p0 + p1;
          colPart[mt][1] += p2 + p3;
          r0 += p0 + p2;
          r1 += p1 + p3;
        }
        if (Shape::kRowSums) {  // over the warp's keys: the eight groups of four lanes
#pragma unroll
          for (int m = 4; m < 32; m *= 2) {
            r0 += __shfl_xor_sync(0xffffffffu, r0, m);
            r1 += __shfl_xor_sync(0xffffffffu, r1, m);
          }
          if (lane < 4) {
            rowPartial[buf][warp][qc] = r0;
            rowPartial[buf][warp][qc + 1] = r1;
          }
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < kKeyTiles; ++mt) {
      colSum[mt][0] += colPart[mt][0];
      colSum[mt][1] += colPart[mt][1];
    }
    if (t + 1 < tEnd && tid < kQueryTile) lseLog2[buf ^ 1][tid] = lseNext;
  }
  __syncthreads();
  flushRows(static_cast<int>((tEnd - 1 - tFirst) & 1), tEnd - 1);
  // Column sums over the four threads that share a key pair, written by the first.
#pragma unroll
  for (int mt = 0; mt < kKeyTiles; ++mt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      double c = colSum[mt][e];
      c += __shfl_xor_sync(0xffffffffu, c, 1);
      c += __shfl_xor_sync(0xffffffffu, c, 2);
      if (inGroup == 0 && key[mt][e] < n) a.colMass[static_cast<int64_t>(h) * n + key[mt][e]] = c;
    }
}

template <typename T, typename Shape>
cudaError_t launchFor(const FarSumsArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.heads), static_cast<unsigned>((a.n + Shape::kKeysPerBlock - 1) / Shape::kKeysPerBlock));
  if (a.dHead == 64) farSumsKernel<T, 64, Shape><<<grid, Shape::kThreads, 0, stream>>>(a);
  else if (a.dHead == 128) farSumsKernel<T, 128, Shape><<<grid, Shape::kThreads, 0, stream>>>(a);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

/// The block shape FarSumsArgs::shape names (0: the default). On the H100 at 8K and 32K every shape ran within 7 % of
/// the others (2026-12-05: 8 × 16 keys 0.741 ms, 4 × 32 0.790, 8 × 32 0.750 at 8K, 16 heads); the row sums' exchange
/// and atomics cost 20–30 % of the kernel (0.594 ms without them).
template <typename T>
cudaError_t launchShape(const FarSumsArgs& a, cudaStream_t stream) {
  switch (a.shape) {
    case 1: return launchFor<T, FarSumsShape<8, 1>>(a, stream);
    case 2: return launchFor<T, FarSumsShape<4, 2>>(a, stream);
    case 3: return launchFor<T, FarSumsShape<8, 2>>(a, stream);
    default: return launchFor<T, FarSumsShape<8, 1>>(a, stream);  // fastest with row sums on the H100 (docs/benchmarks.md)
  }
}

}  // namespace

int launchFarSums(const FarSumsArgs& args, void* stream) {
  if (args.n <= 0 || args.heads <= 0) return 0;
  if ((args.n + 127) / 128 > 65535) return static_cast<int>(cudaErrorInvalidConfiguration);  // grid.y: key blocks of ≥ 128
  const auto s = static_cast<cudaStream_t>(stream);
  return static_cast<int>(args.half ? launchShape<__half>(args, s) : launchShape<__nv_bfloat16>(args, s));
}


}  // namespace mechscope::probe_kernels
