// Entropy and one token's log-probability per row of logits in one read (docs/metrics.md §5, mechscope's note):
// LibTorch needs a softmax, an argmax, gathers, entr and a sum, each a pass over [rows, vocab] in fp32.
//
// Each thread keeps, over its share of the row, m (its largest logit), Z = Σ e^{l−m} and S = Σ e^{l−m}(l − m) ≤ 0,
// rescaling both when m grows; partials merge the same way. Then H = log Z − S / Z is a sum of two non-negative
// terms (no cancellation, however peaked the row), and log p[t] = l_t − m − log Z. Z is kept as 1 + (the other
// terms), so that log Z = log1p(…) keeps its relative precision when the row is peaked. Sums in fp32 with fast exp: the
// logits of a bf16/fp16 model carry ~2⁻⁸ relative error of their own.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/model/logit_stats_launch.hpp"

namespace mechscope::model_kernels {

namespace {

constexpr int kThreads = 256;

struct Partial {
  // m the largest logit; Z = 1 + zr = Σ e^{l−m} with the maximum's own term kept out of zr, so that log Z = log1p(zr)
  // stays exact for a peaked row; S = Σ e^{l−m}(l − m) ≤ 0 (the maximum adds 0).
  float m, zr, s;  // no initialisers: a __shared__ array of it needs a trivial constructor
};

/// The partial with logit l added.
__device__ __forceinline__ void add(Partial& p, float l) {
  if (l == -INFINITY) return;  // a masked token: p = 0
  if (l > p.m) {  // new reference l: every old term (the old maximum's 1 among them) scales by r = e^{m−l}
    if (p.m == -INFINITY) {
      p.m = l;
      return;
    }
    const float d = p.m - l, r = __expf(d);
    p.s = r * (p.s + d * (1.0f + p.zr));
    p.zr = r * (1.0f + p.zr);
    p.m = l;
    return;
  }
  const float d = l - p.m, e = __expf(d);
  p.zr += e;
  p.s = fmaf(e, d, p.s);
}

/// a and b over one reference maximum (the larger one's term stays out of zr; the other's joins it).
__device__ __forceinline__ Partial merge(const Partial& a, const Partial& b) {
  if (b.m == -INFINITY) return a;
  if (a.m == -INFINITY) return b;
  const Partial& hi = a.m >= b.m ? a : b;
  const Partial& lo = a.m >= b.m ? b : a;
  const float d = lo.m - hi.m, r = __expf(d);
  Partial p;
  p.m = hi.m;
  p.zr = hi.zr + r * (1.0f + lo.zr);
  p.s = hi.s + r * (lo.s + d * (1.0f + lo.zr));
  return p;
}

template <typename T>
__device__ __forceinline__ float toFloat(T x);
template <>
__device__ __forceinline__ float toFloat<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ __forceinline__ float toFloat<__half>(__half x) { return __half2float(x); }

template <typename T>
__global__ void __launch_bounds__(kThreads) logitStatsKernel(const LogitStatsArgs a) {
  const int64_t row = blockIdx.x;
  const T* l = static_cast<const T*>(a.logits) + row * a.rowStride;
  Partial p{-INFINITY, 0.0f, 0.0f};
  // Eight logits a load where the row is 16-byte aligned, the rest one at a time.
  const bool vec = (reinterpret_cast<uintptr_t>(l) % 16) == 0;
  const int64_t vecEnd = vec ? (a.vocab / 8) * 8 : 0;
  for (int64_t c = static_cast<int64_t>(threadIdx.x) * 8; c < vecEnd; c += kThreads * 8) {
    const uint4 w = *reinterpret_cast<const uint4*>(l + c);
    const T* x = reinterpret_cast<const T*>(&w);
#pragma unroll
    for (int e = 0; e < 8; ++e) add(p, toFloat<T>(x[e]));
  }
  for (int64_t c = vecEnd + threadIdx.x; c < a.vocab; c += kThreads) add(p, toFloat<T>(l[c]));
  // Block reduction: warps by shuffles, then the warps' partials in shared memory.
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) {
    Partial q;
    q.m = __shfl_xor_sync(0xffffffffu, p.m, o);
    q.zr = __shfl_xor_sync(0xffffffffu, p.zr, o);
    q.s = __shfl_xor_sync(0xffffffffu, p.s, o);
    p = merge(p, q);
  }
  __shared__ Partial warps[kThreads / 32];
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = p;
  __syncthreads();
  if (threadIdx.x == 0) {
    Partial t = warps[0];
    for (int w = 1; w < kThreads / 32; ++w) t = merge(t, warps[w]);
    const float logZ = log1pf(t.zr);
    a.entropy[row] = logZ - t.s / (1.0f + t.zr);  // both terms ≥ 0
    const int64_t target = a.target[row];
    a.logProb[row] = target >= 0 && target < a.vocab ? toFloat<T>(l[target]) - t.m - logZ : NAN;
  }
}

}  // namespace

int launchLogitStats(const LogitStatsArgs& args, void* stream) {
  if (args.rows <= 0) return 0;
  if (args.rows > 2147483647LL) return static_cast<int>(cudaErrorInvalidConfiguration);
  const auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(args.rows));
  if (args.half) logitStatsKernel<__half><<<grid, kThreads, 0, s>>>(args);
  else logitStatsKernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(args);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace mechscope::model_kernels
