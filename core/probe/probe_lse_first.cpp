// ProbeAlgorithm::LseFirst: every row's normaliser (log-sum-exp) first, then one pass over the key
// tiles with p = exp(s − lse) already final, so row and column statistics come from the same tile.
// On CUDA the normaliser is flash attention's (one fused kernel per layer), the score matmuls run in
// TF32 when q/k are bf16/fp16 (exact there) and `s − lse` rides in the matmul's epilogue (baddbmm).
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "core/common/device_indices.hpp"
#include "core/probe/probe_internal.hpp"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define MECHSCOPE_FLASH_LSE 1
#endif
// cuDNN's fused attention returns the log-sum-exp too (compute_log_sumexp) with this signature from LibTorch 2.6.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
#define MECHSCOPE_CUDNN_LSE 1
#endif

namespace mechscope::probe_detail {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int64_t kFusedMinRowShare = 16;  // fused normalisers only when ≥ 1/16 of the rows are asked for

#ifdef MECHSCOPE_FLASH_LSE
/// FlashAttention-2's causal normalisers of q, k [1, head, pos, d_head] (v = k, its output unused) → [head, nq] fp32,
/// the natural log of Σ exp(scaled scores).
at::Tensor flashAttentionLse(const at::Tensor& q, const at::Tensor& k, double scale, int64_t nq) {
  return std::get<1>(at::_scaled_dot_product_flash_attention(q, k, k, 0.0, true, false, scale))[0].narrow(1, 0, nq);  // of [1, head, ≥pos]
}
#endif

#ifdef MECHSCOPE_FLASH_LSE
/// q [pos, head, d_head] and k [pos, kv_head, d_head] as the fused kernels take them: [1, head, pos, d_head] each, the kv
/// heads repeated per query head.
std::pair<at::Tensor, at::Tensor> headsFirst(const ProbeInputs& in, const Geometry& g) {
  at::Tensor k = g.group > 1 ? in.k.repeat_interleave(g.group, 1) : in.k;  // [pos, head, d_head]
  return {in.q.unsqueeze(0).transpose(1, 2), k.unsqueeze(0).transpose(1, 2)};
}
#endif

#ifdef MECHSCOPE_CUDNN_LSE
constexpr int64_t kNarrowValueDims = 8;  // the narrowest value head dim cuDNN takes (a multiple of 8)

/// Whether cuDNN's normalisers `lse` agree with FlashAttention-2's `flash` ([head, nq] fp32): both accumulate fp32
/// exponentials of the same scores in different orders, so each row agrees to a few ulps of its own |lse| (rows of dummy
/// keys reach 3·10⁴, so one bound for the whole tensor would hide real errors). Equal infinities agree; NaN does not.
bool lseAgrees(const at::Tensor& lse, const at::Tensor& flash) {
  return (lse == flash).logical_or_((lse - flash).abs() <= (flash.abs() + 1.0) * 1e-5).all().item<bool>();
}

/// Whether cuDNN's normalisers agreed with FlashAttention-2's for a shape: checked on first use.
class CudnnLseChecks {
 public:
  /// 1 agreed, −1 disagreed, 0 not checked yet.
  /// The key: d_head, dtype, device index and the length modulo 128 (cuDNN has had length-dependent bugs).
  using Key = std::tuple<int64_t, int, int, int64_t>;
  int state(const Key& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = states_.find(key);
    return it == states_.end() ? 0 : it->second;
  }
  void record(const Key& key, bool agreed) {
    const std::lock_guard<std::mutex> lock(mutex_);
    states_[key] = agreed ? 1 : -1;
  }

 private:
  std::mutex mutex_;
  std::map<Key, int> states_;
};

/// cuDNN's causal attention normalisers of q, k [1, head, pos, d_head] → [head, nq] fp32, or undefined when cuDNN
/// does not take these inputs. On the H200 cuDNN's kernel runs at ~1.9× FlashAttention-2's rate (docs/benchmarks.md,
/// "H200, 2026-12-05"). The first result for each CudnnLseChecks::Key in a process is checked row by row against
/// flash attention's; a mismatch beyond fp32 rounding turns cuDNN off for that key (MECHSCOPE_PROBE_CUDNN=0: always).
at::Tensor cudnnLogSumExp(const at::Tensor& q, const at::Tensor& k, double scale, int64_t heads, int64_t nq) {
  static CudnnLseChecks checks;
  if (switchedOff("MECHSCOPE_PROBE_CUDNN")) return {};
  const int64_t d = q.size(3);
  const CudnnLseChecks::Key key{d, static_cast<int>(q.scalar_type()), q.device().index(), nq % 128};
  const int state = checks.state(key);
  if (state < 0) return {};
  // The attention output is thrown away: with a value of kNarrowValueDims zero dims (cuDNN takes a value head dim
  // other than q/k's) the P·V half of the work nearly vanishes. Where cuDNN refuses it, v = k as FlashAttention-2
  // needs; MECHSCOPE_PROBE_NARROW_V=0 always so.
  auto normalisers = [&](const at::Tensor& v) {
    return std::get<1>(at::_scaled_dot_product_cudnn_attention(q, k, v, std::nullopt, true, 0.0, true, false, scale));
  };
  at::Tensor lse;  // [1, head, pos] or [1, head, pos, 1] fp32
  if (!switchedOff("MECHSCOPE_PROBE_NARROW_V")) {
    try {
      // [1, head, pos, 8], laid out as q and k: [1, pos, head, 8] transposed
      lse = normalisers(at::zeros({k.size(0), k.size(2), k.size(1), kNarrowValueDims}, k.options()).transpose(1, 2));
    } catch (const c10::Error&) {
      lse = at::Tensor();  // not taken: the full-width value below
    }
  }
  if (!lse.defined()) {
    try {
      lse = normalisers(k);
    } catch (const c10::Error&) {
      return {};  // cuDNN does not take this shape (or is absent): flash attention below
    }
  }
  if (!lse.defined() || lse.numel() != heads * nq) return {};
  lse = lse.reshape({heads, nq});
  if (state == 0) {
    const at::Tensor flash = flashAttentionLse(q, k, scale, nq);
    const bool agreed = lseAgrees(lse, flash);
    checks.record(key, agreed);
    if (!agreed) {
      std::fprintf(stderr, "attention probe: cuDNN's log-sum-exp differs from flash attention's (d_head %lld, %lld rows); using flash attention\n",
                   static_cast<long long>(d), static_cast<long long>(nq));
      return flash;
    }
  }
  return lse;
}
#endif

/// Whether the forward's cuDNN normalisers `in.rowLse` agree with FlashAttention-2's for this shape: checked on the first
/// call per CudnnLseChecks::Key (a separate record from the probe's own narrow-value calls: another kernel), as
/// cudnnLogSumExp checks its own. False where no fused kernel applies to compare with (the probe then computes them).
bool forwardLseTrusted(const ProbeInputs& in, const ProbeSetup& s) {
#ifdef MECHSCOPE_CUDNN_LSE
  static CudnnLseChecks checks;
  const Geometry& g = s.g;
  if (!fusedNormalisersApply(in, s, g.dHead)) return false;
  const CudnnLseChecks::Key key{g.dHead, static_cast<int>(in.q.scalar_type()), in.q.device().index(), g.nq % 128};
  const int state = checks.state(key);
  if (state != 0) return state > 0;
  try {
    const auto [q, k] = headsFirst(in, g);  // [1, head, pos, d_head] each
    const at::Tensor flash = flashAttentionLse(q, k, in.scale, g.nq);  // [head, nq] fp32
    const bool agreed = lseAgrees(in.rowLse.to(flash.scalar_type()), flash);
    checks.record(key, agreed);
    if (!agreed)
      std::fprintf(stderr, "attention probe: the forward's cuDNN log-sum-exp differs from flash attention's (d_head %lld, %lld rows); "
                   "computing the normalisers apart\n", static_cast<long long>(g.dHead), static_cast<long long>(g.nq));
    return agreed;
  } catch (const c10::Error&) {
    checks.record(key, false);
    return false;
  }
#else
  (void)in;
  (void)s;
  return false;
#endif
}

/// Flash attention's row normalisers [head, nq] fp64 when the kernel applies to these inputs (CUDA,
/// bf16/fp16, plain causal prefill without padding or uniform heads); undefined otherwise. cuDNN's kernel gives
/// them where LibTorch and cuDNN take the inputs, else FlashAttention-2's.
at::Tensor flashLogSumExp(const ProbeInputs& in, const ProbeSetup& s) {
#ifdef MECHSCOPE_FLASH_LSE
  const Geometry& g = s.g;
  if (!fusedNormalisersApply(in, s, g.dHead)) return {};
  try {
    const auto [q, k] = headsFirst(in, g);  // [1, head, pos, d_head] each
#ifdef MECHSCOPE_CUDNN_LSE
    if (const at::Tensor lse = cudnnLogSumExp(q, k, in.scale, g.heads, g.nq); lse.defined()) return lse.to(at::kDouble);
#endif
    return flashAttentionLse(q, k, in.scale, g.nq).to(at::kDouble);
  } catch (const c10::Error&) {
    return {};  // not supported on this GPU / build: the tiled normaliser below does the same job
  }
#else
  (void)in;
  (void)s;
  return {};
#endif
}

/// Rows with no visible key (all −inf normaliser) contribute nothing: shift 0 and their keys are masked.
at::Tensor negatedShift(const at::Tensor& lseRows) {  // [head, rows] fp64 → fp64
  return lseRows.neg().masked_fill_(lseRows == kNegInf, 0.0);
}

}  // namespace

bool fusedNormalisersApply(const ProbeInputs& in, const ProbeSetup& s, int64_t dHead) {
#ifdef MECHSCOPE_FLASH_LSE
  const Geometry& g = s.g;
  if (switchedOff("MECHSCOPE_PROBE_FLASH")) return false;
  if (!in.q.is_cuda() || !s.lowPrecisionInputs || in.q.scalar_type() != in.k.scalar_type()) return false;
  if (s.pad.defined() || s.uniformIdx.defined() || g.offset != 0 || g.nq != g.nk || g.nq == 0) return false;
  if (s.window > 0 && s.window < g.nk) return false;  // the fused kernels here have no sliding window
  if (s.softcap > 0) return false;                     // nor soft-capping
  return dHead % 8 == 0 && dHead <= 256;
#else
  (void)in;
  (void)s;
  (void)dHead;
  return false;
#endif
}

at::Tensor rowLogSumExp(const ProbeInputs& in, const ProbeSetup& s, const RunContext* ctx, bool* flash) {
  RECORD_USER_SCOPE("probe::row_lse");
  const Geometry& g = s.g;
  if (flash) *flash = false;
  if (in.rowLse.defined() && (!in.rowLseFromForward || forwardLseTrusted(in, s))) {
    // an earlier probe's or the forward's (shape checked in setup); rows before this request's start: none
    if (flash) *flash = in.rowLseFromForward;  // the forward's come from a fused kernel
    at::Tensor lse = in.rowLse.to(in.q.device(), at::kDouble, /*non_blocking=*/false, /*copy=*/true);
    if (s.rowBegin > 0) lse.narrow(1, 0, s.rowBegin).fill_(kNegInf);
    return lse;
  }
  // The fused kernels compute every row (n²/2 scores) whatever the start; key tiles only rows ≥ rowBegin. A few rows
  // (retrieval's prefill asks for the last one alone: a whole causal kernel per layer at 128K) go through tiles.
  const bool fewRows = (g.nq - s.rowBegin) * kFusedMinRowShare < g.nq;
  at::Tensor lse = fewRows ? at::Tensor() : flashLogSumExp(in, s);
  if (lse.defined()) {
    if (flash) *flash = true;
    if (s.rowBegin > 0) lse.narrow(1, 0, s.rowBegin).fill_(kNegInf);
    return foldSinks(s, lse);
  }
  lse = at::full({g.heads, g.nq}, kNegInf, s.fopt.dtype(at::kDouble));  // [head, nq]
  for (int64_t r0 = s.rowBegin; r0 < g.nq; r0 += s.tiles.tileQ) {
    if (ctx) ctx->check();
    const int64_t r1 = std::min(r0 + s.tiles.tileQ, g.nq), rows = r1 - r0;
    const int64_t kEnd = std::min(g.nk, r1 - 1 + g.offset + 1);
    const at::Tensor qt = queryTile(in, s, r0, r1);
    at::Tensor run = lse.slice(1, r0, r1);  // [head, rows] view
    for (int64_t c0 = firstKeyInWindow(s, r0 + g.offset); c0 < kEnd; c0 += s.tiles.tileK) {
      const int64_t c1 = std::min(c0 + s.tiles.tileK, kEnd);
      const at::Tensor x = tileScores(qt, keyTile(in, s, c0, c1), s, in.scale, rows, tileMask(s, r0, r1, c0, c1));
      run.copy_(at::logaddexp(run, at::logsumexp(x, {-1}).to(at::kDouble)));  // −inf ⊕ −inf = −inf
    }
  }
  return foldSinks(s, lse);
}

at::Tensor foldSinks(const ProbeSetup& s, const at::Tensor& lse) {
  if (!s.sinks.defined()) return lse;
  const at::Tensor sink = s.sinks.to(at::kDouble).unsqueeze(1).expand_as(lse);  // [head, nq]
  return at::where(lse == kNegInf, lse, at::logaddexp(lse, sink));
}

void sumColumnKeys(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const at::Tensor& lse,
                   ProbeResult& res) {
  RECORD_USER_SCOPE("probe::column_keys");
  const Geometry& g = s.g;
  const int64_t m = static_cast<int64_t>(req.columnKeys.size());
  if (m == 0 || s.rowBegin >= g.nq) return;
  const at::Tensor keys = indicesOn(req.columnKeys, in.q.device());  // [m]
  const at::Tensor kt = in.k.index_select(0, keys).to(s.cdt).permute({1, 2, 0}).contiguous();  // [kv, d, m]
  at::Tensor keyPad;  // [m] bool
  if (s.pad.defined()) keyPad = s.pad.index_select(0, keys);
  // Row chunks keep [head, rows, m] and the q copy small.
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(8192, (int64_t{16} << 20) / std::max<int64_t>(1, g.heads * std::max(m, g.dHead))));
  for (int64_t r0 = s.rowBegin; r0 < g.nq; r0 += chunk) {
    const int64_t r1 = std::min(r0 + chunk, g.nq), rows = r1 - r0;
    const at::Tensor shift = negatedShift(lse.slice(1, r0, r1));                      // [head, rows]
    at::Tensor x = tileScores(queryTile(in, s, r0, r1), kt, s, in.scale, rows, {}, shift);  // [head, rows, m]
    const at::Tensor iAbs = at::arange(r0 + g.offset, r1 + g.offset, s.lopt).unsqueeze(1);  // [rows, 1]
    const at::Tensor d = iAbs - keys.unsqueeze(0);                                          // [rows, m] i − j
    at::Tensor out = (d < 0).logical_or_(d < req.bandMin).logical_or_(d > req.bandMax);     // [rows, m]
    if (s.window > 0) out.logical_or_(d >= s.window);                                        // outside the window
    if (keyPad.defined()) out.logical_or_(keyPad.unsqueeze(0));
    x.masked_fill_(out, kNegInf);
    x.masked_fill_((lse.slice(1, r0, r1) == kNegInf).unsqueeze(-1), kNegInf);  // empty rows
    res.columnKeySums.add_(x.exp_().sum(1));
  }
}

ProbeResult probeLseFirst(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx) {
  RECORD_USER_SCOPE("probe::lse_first");
  const Geometry& g = s.g;
  ProbeResult res = allocateResult(req, g.heads, g.nq, g.nk, s.fopt, s.lopt);
  res.algorithm = ProbeAlgorithm::LseFirst;
  if (req.columnCounts) res.columnCounts = columnCounts(req, g.nq, g.nk, g.offset, s.firstVisibleKey, in.q.device());
  const at::Tensor lse = rowLogSumExp(in, s, ctx, &res.flashLse);  // [head, nq] fp64
  res.rowLse = lse;
  sumColumnKeys(in, req, s, lse, res);

  const bool rows = req.distance || req.window > 0 || !req.keySet.empty() || req.topK > 0;
  if (!rows && !req.columnSums) return res;
  const auto dopt = s.fopt.dtype(at::kDouble);
  const int64_t topK = req.topK;
  for (int64_t r0 = s.rowBegin; r0 < g.nq; r0 += s.tiles.tileQ) {
    if (ctx) ctx->check();
    const int64_t r1 = std::min(r0 + s.tiles.tileQ, g.nq), nRows = r1 - r0;
    const int64_t iFirst = r0 + g.offset, iLast = r1 - 1 + g.offset;
    const int64_t kEnd = std::min(g.nk, iLast + 1);
    const at::Tensor qt = queryTile(in, s, r0, r1);
    const at::Tensor shift = negatedShift(lse.slice(1, r0, r1));  // [head, rows] fp64
    const at::Tensor iAbs = at::arange(iFirst, iLast + 1, s.lopt);  // [rows]
    const at::Tensor iAbsF = iAbs.to(s.cdt);
    at::Tensor dist, win, mass;  // [head, rows] fp64 accumulators of already-normalised p
    if (req.distance) dist = at::zeros({g.heads, nRows}, dopt);
    if (req.window > 0) win = at::zeros({g.heads, nRows}, dopt);
    if (!req.keySet.empty()) mass = at::zeros({g.heads, nRows}, dopt);
    at::Tensor topS, topI;  // [head, rows, k] best log-probabilities so far and their keys
    if (topK > 0) {
      topS = at::full({g.heads, nRows, topK}, kNegInf, s.fopt);
      topI = at::full({g.heads, nRows, topK}, -1, s.lopt);
    }

    for (int64_t c0 = firstKeyInWindow(s, r0 + g.offset); c0 < kEnd; c0 += s.tiles.tileK) {
      const int64_t c1 = std::min(c0 + s.tiles.tileK, kEnd), cols = c1 - c0;
      // x = s − lse = log p, −inf where masked: [head, rows, cols]
      at::Tensor x = tileScores(qt, keyTile(in, s, c0, c1), s, in.scale, nRows, tileMask(s, r0, r1, c0, c1), shift);
      mergeTileTopK(x, c0, topK, topS, topI);
      at::Tensor& p = x.exp_();  // [head, rows, cols], final probabilities

      const int64_t dMin = iFirst - (c1 - 1);  // smallest (i − j) in the tile
      const bool belowDiagonal = dMin >= 0;
      const bool farForWindow = req.window > 0 && dMin >= req.window;
      // Below the diagonal the row-linear statistics are one skinny matmul over p:
      // Σ p, Σ p (jLast − j) (so Σ p (i − j) = (i − jLast) Σ p + Σ p (jLast − j), no cancellation), Σ_C p.
      if (belowDiagonal && (dist.defined() || farForWindow || mass.defined())) {
        std::vector<at::Tensor> f;  // [cols] each
        f.reserve(3);
        f.emplace_back(at::ones({cols}, s.fopt));
        if (dist.defined()) f.emplace_back(s.keyPosF.slice(0, c0, c1).neg().add_(static_cast<double>(c1 - 1)));
        if (mass.defined()) f.emplace_back(s.keySetInd.slice(0, c0, c1));
        const at::Tensor sums = at::matmul(p, at::stack(f, 1)).to(at::kDouble);  // [head, rows, nf]
        const at::Tensor rowSum = sums.select(-1, 0);
        int64_t col = 1;
        if (dist.defined()) {
          dist.add_(rowSum * (iAbsF - static_cast<double>(c1 - 1)).to(at::kDouble));
          dist.add_(sums.select(-1, col++));
        }
        if (mass.defined()) mass.add_(sums.select(-1, col));
        if (farForWindow) win.add_(rowSum, static_cast<double>(req.window));
      }
      if (!belowDiagonal || (win.defined() && !farForWindow)) {
        const at::Tensor d = iAbsF.unsqueeze(1) - s.keyPosF.slice(0, c0, c1).unsqueeze(0);  // [rows, cols]
        if (dist.defined() && !belowDiagonal) dist.add_((p * d.clamp_min(0)).sum(-1).to(at::kDouble));
        if (win.defined() && !farForWindow)
          win.add_((p * d.clamp(0, static_cast<double>(req.window))).sum(-1).to(at::kDouble));
        if (mass.defined() && !belowDiagonal) mass.add_(at::matmul(p, s.keySetInd.slice(0, c0, c1)).to(at::kDouble));
      }

      if (req.columnSums) addBandedColumnSums(p, req, s, r0, r1, c0, c1, res.columnSums);
    }

    if (dist.defined()) res.distance.slice(1, r0, r1).copy_(dist);
    if (win.defined()) res.windowed.slice(1, r0, r1).copy_(win);
    if (mass.defined()) res.keySetMass.slice(1, r0, r1).copy_(mass);
    if (topK > 0) {
      const at::Tensor topV = topS.exp();  // −inf (masked, missing) → 0
      topI.masked_fill_(topV <= 0, -1);
      res.topValues.slice(1, r0, r1).copy_(topV);
      res.topIndices.slice(1, r0, r1).copy_(topI);
    }
  }
  return res;
}

}  // namespace mechscope::probe_detail
