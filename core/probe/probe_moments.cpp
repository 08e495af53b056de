// ProbeAlgorithm::Moments: the statistics of a causal prefill from log-sum-exps alone, so that on CUDA each
// is one fused flash-attention call and nothing passes over the n² probabilities (docs/attention-probe.md,
// "Moments"). A key bias b_j rides in 8 extra head dimensions (q side 1, k side b_j / scale split into three
// parts exact in the input dtype), so LSE_i(s_ij + b_j) − lse_i = log Σ_j p_ij e^{b_j}. Keys shifted down by
// m positions (m dummy keys with bias −3·10⁴ in front) restrict row i to keys j ≤ i − m. No statistic is a
// difference of two large sums, so each keeps the relative precision of a log-sum-exp:
//   distance   Σ_{δ<B} p_{i,i−δ} δ (gathered) + (i + 1)·T_i − M_i, with T_i = Σ_{j ≤ i−B} p_ij (rows i ≥ B against
//              keys j < n − B: square and causal, no bias) and M_i = Σ_{j ≤ i−B} p_ij (j + 1) from keys shifted by B
//              (bias log(j + 1)): the far part vanishes with the far mass, so a local head's distance is as exact as
//              its near band
//   columns    Σ_{i − j ≥ a} p_ij over rows i ≥ R: the transposed problem, causal again once both sequences are
//              reversed (keys play queries, rows carry the bias −lse_i, rows before R −3·10⁴), shifted by a
//   distance total  Σ_i of the distances: the near band summed, the far part Σ_i (i + 1)·T_i − Σ_j (j + 1)·C_j with
//              C_j = Σ_{i ≥ j+B} p_ij the far column sums, which are also the far part of open-band column sums from
//              a ≤ B: waad-fai makes one fused call at d_head + 8 and one at d_head per layer beyond the forward's, or on
//              CUDA one pass of the probe's own kernel (far_sums_kernel.cu) that gives T_i and C_j together
//   near bands (WAAD's window, closed FAI horizons) and key sets from O(n · band) gathered scores.
// Applies to causal prefills without padding, window, soft-cap, sinks or uniform heads, and no top-k/entropy;
// anything else runs LseFirst.
#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "core/common/device_indices.hpp"
#include "core/probe/probe_kernels.hpp"
#include "core/probe/probe_internal.hpp"

namespace mechscope::probe_detail {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int64_t kExtraDims = 8;        // keeps d_head a multiple of 8 (flash attention)
constexpr int64_t kBiasParts = 3;        // b / scale = p1 + p2 + p3, each exact in the input dtype
constexpr int64_t kMaxBand = 4096;       // widest band (window, horizon) gathered directly
constexpr int64_t kMaxKeySet = 4096;     // largest key set gathered directly
constexpr int64_t kBandBlock = 64;       // query rows per dense block of a band gather
constexpr int64_t kNearBandBytes = int64_t{1} << 30;  // largest set of near-band probabilities kept for every band
constexpr double kMaskedRowBias = -3.0e4;  // dummy keys, rows left out of a column sum: e^{-3e4} = 0

/// `x` [n, heads, d] with kExtraDims columns appended: 1 in the first kBiasParts (the query side of a bias).
at::Tensor withOnes(const at::Tensor& x) {
  at::Tensor extra = at::zeros({x.size(0), x.size(1), kExtraDims}, x.options());  // [n, heads, 8]
  extra.narrow(2, 0, kBiasParts).fill_(1.0);
  return at::cat({x, extra}, 2);
}

/// `x` [n, heads, d] with the bias `bias / scale` ([heads or 1, n] fp64) appended as kBiasParts parts, each
/// rounded to x's dtype and carrying what the previous ones could not (relative error ~ u³ of the dtype).
at::Tensor withBias(const at::Tensor& x, const at::Tensor& bias, double scale) {
  const int64_t n = x.size(0), heads = x.size(1);
  at::Tensor rest = (bias / scale).expand({heads, n}).t().contiguous();  // [n, heads] fp64
  at::Tensor extra = at::zeros({n, heads, kExtraDims}, x.options());     // [n, heads, 8]
  for (int64_t p = 0; p < kBiasParts; ++p) {
    const at::Tensor part = rest.to(x.scalar_type());
    extra.select(2, p).copy_(part);
    rest = rest - part.to(at::kDouble);
  }
  return at::cat({x, extra}, 2);
}

/// Keys `x` [n, heads, d] shifted down by `shift` rows behind dummy keys, with the bias `bias` ([heads or 1, n]
/// fp64) appended as withBias does: row m holds key m − shift (bias b), rows m < shift a zero key with bias
/// kMaskedRowBias. Causal attention over them gives row i the keys j ≤ i − shift only.
at::Tensor shiftedWithBias(const at::Tensor& x, const at::Tensor& bias, int64_t shift, double scale) {
  const int64_t n = x.size(0), heads = x.size(1), m = std::min(shift, n);
  if (m == 0) return withBias(x, bias, scale);
  const at::Tensor b = bias.expand({heads, n});
  const at::Tensor xs = at::cat({at::zeros({m, heads, x.size(2)}, x.options()), x.narrow(0, 0, n - m)}, 0);
  const at::Tensor bs = at::cat({at::full({heads, m}, kMaskedRowBias, b.options()), b.narrow(1, 0, n - m)}, 1);
  return withBias(xs, bs, scale);
}

/// Row log-sum-exps [head, n] fp64 of the causal attention of `q` over `k` (rows before `queryStart` −inf):
/// flash attention's normaliser on CUDA when it applies, else tiles (rowLogSumExp).
at::Tensor causalLse(const at::Tensor& q, const at::Tensor& k, double scale, int64_t queryStart, const ProbeSetup& like,
                     const RunContext* ctx, bool* flash) {
  RECORD_USER_SCOPE("probe::moments_causal_lse");
  ProbeInputs in;
  in.q = q;
  in.k = k;
  in.scale = scale;
  ProbeRequest req;
  req.queryStart = queryStart;
  const ProbeSetup s = prepareProbe(in, req, like.tiles.tileQ, like.tiles.tileK);
  bool usedFlash = false;
  at::Tensor lse = rowLogSumExp(in, s, ctx, &usedFlash);
  if (flash) *flash = *flash && usedFlash;
  return lse;
}

}  // namespace

bool momentsApply(const ProbeRequest& req, const ProbeSetup& s) {
  const Geometry& g = s.g;
  if (g.offset != 0 || g.nq != g.nk || s.pad.defined() || s.uniformIdx.defined() || s.sinks.defined()) return false;
  if ((s.window > 0 && s.window < g.nk) || s.softcap > 0 || req.topK > 0 || req.entropy) return false;
  if (req.window > kMaxBand || static_cast<int64_t>(req.keySet.size()) > kMaxKeySet) return false;
  if (req.columnSums) {
    const bool open = req.bandMax == std::numeric_limits<int64_t>::max();
    if (open ? req.bandMin > kMaxBand : req.bandMax - std::max<int64_t>(req.bandMin, 0) + 1 > kMaxBand) return false;
  }
  return true;
}

bool momentsFused(const ProbeInputs& in, const ProbeSetup& s) {
  return fusedNormalisersApply(in, s, s.g.dHead) && fusedNormalisersApply(in, s, s.g.dHead + kExtraDims);
}

ProbeResult probeMoments(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx) {
  RECORD_USER_SCOPE("probe::moments");
  const Geometry& g = s.g;
  const int64_t n = g.nq, H = g.heads, R = s.rowBegin;
  // Every branch below writes all of columnSums: allocated, not zeroed (one op a layer fewer).
  ProbeResult res = allocateResult(req, H, g.nq, g.nk, s.fopt, s.lopt, /*zeroColumnSums=*/false);
  res.algorithm = ProbeAlgorithm::Moments;
  if (req.columnCounts) res.columnCounts = columnCounts(req, g.nq, g.nk, g.offset, s.firstVisibleKey, in.q.device());
  const at::Tensor lse = rowLogSumExp(in, s, ctx, &res.flashLse);  // [head, n] fp64, −inf before R
  res.rowLse = lse;
  sumColumnKeys(in, req, s, lse, res);
  if (n == 0 || R >= n) {  // no row to sum: zeros, as from the other algorithms
    if (res.columnSums.defined()) res.columnSums.zero_();
    if (req.distanceTotal) res.distanceTotal = at::zeros({H}, s.fopt.dtype(at::kDouble));
    return res;
  }
  const auto dopt = s.fopt.dtype(at::kDouble);
  at::Tensor pos1;  // [1, n] i + 1 for the absolute row index i (offset 0), made on first use
  auto positionsFrom1 = [&] {
    if (!pos1.defined()) pos1 = at::arange(1, n + 1, dopt).unsqueeze(0);
    return pos1;
  };

  // Near bands from gathered scores, rows in blocks of B: each block's queries against the B + width − 1 keys its rows'
  // bands span, one dense product per (block, kv head), whose band is a skewed view (row r's slot m at column r + m).
  // (Small batched GEMMs per row ran at a few percent of the GEMM rate.) Rows R … R + blocks·B − 1, zeros past n, in
  // the compute dtype: qb [blocks, kv, group·B, d], made once for every band.
  const int64_t B = kBandBlock, blocks = (n - R + B - 1) / B;
  at::Tensor qb;
  auto queryBlocks = [&] {
    if (!qb.defined())
      qb = at::cat({in.q.slice(0, R).to(s.cdt), at::zeros({blocks * B - (n - R), H, g.dHead}, in.q.options().dtype(s.cdt))}, 0)
               .view({blocks, B, g.kvHeads, g.group, g.dHead})
               .permute({0, 2, 3, 1, 4})
               .reshape({blocks, g.kvHeads, g.group * B, g.dHead});
    return qb;
  };
  // The keys behind `pad` zero rows and before B more, so that row i's keys i − hi … i − lo are one window of a strided
  // view (no copy per band).
  int64_t pad = 0;
  at::Tensor paddedKeys;  // [pad + n + B, kv, d] compute dtype
  auto keysBehind = [&](int64_t zeros) {  // [zeros + n + B, kv, d]: `zeros` zero rows, the keys, B zero rows
    if (!paddedKeys.defined() || pad < zeros) {
      pad = zeros;
      const auto zopt = in.k.options().dtype(s.cdt);
      paddedKeys = at::cat({at::zeros({pad, g.kvHeads, g.dHead}, zopt), in.k.to(s.cdt), at::zeros({B, g.kvHeads, g.dHead}, zopt)}, 0);
    }
    return paddedKeys.slice(0, pad - zeros);
  };
  /// p_{i, i−δ} for rows i in [r0, r1) and δ ∈ [lo, hi] (slot m ↔ δ = hi − m, key i − hi + m; 0 where that key is
  /// before 0) → [rows, head, width] fp64, for the row blocks b0 … b1 − 1 (r0 = R + b0·B, r1 = min(n, R + b1·B)).
  auto bandProbabilities = [&](int64_t lo, int64_t hi, int64_t b0, int64_t b1) {
    const int64_t width = hi - lo + 1, span = B + width - 1, nb = b1 - b0;
    const int64_t r0 = R + b0 * B, r1 = std::min(n, R + b1 * B), rows = r1 - r0;
    const at::Tensor kw = keysBehind(hi).slice(0, R).unfold(0, span, B).slice(0, b0, b1);  // [nb, kv, d, span]: key t − hi + R at t
    at::Tensor scores;  // [nb, kv, group·B, span]
    {
      const Tf32Scope tf32(s.lowPrecisionInputs);  // bf16/fp16 products are exact in TF32
      scores = at::matmul(queryBlocks().slice(0, b0, b1), kw).contiguous();
    }
    const at::Tensor band = scores.as_strided({nb, g.kvHeads, g.group, B, width},
                                              {g.kvHeads * g.group * B * span, g.group * B * span, B * span, span + 1, 1},
                                              scores.storage_offset());  // [nb, kv, group, B, width]
    const at::Tensor dots = band.permute({0, 3, 1, 2, 4}).reshape({nb * B, H, width}).slice(0, 0, rows);  // [rows, head, width]
    const at::Tensor key = at::arange(r0, r1, s.lopt).unsqueeze(1) - hi + at::arange(width, s.lopt).unsqueeze(0);  // [rows, width] j
    at::Tensor p = (dots.to(at::kDouble) * in.scale - lse.slice(1, r0, r1).t().unsqueeze(-1)).exp_();
    return p.masked_fill_((key < 0).unsqueeze(1), 0.0);  // keys before 0 are padding
  };
  // Every band inside [0, nearHi] reads one set of probabilities, computed once (distance, WAAD's window and open-band
  // column sums all lie in [0, F) by default: one product and one exp per layer instead of three).
  int64_t nearHi = -1;
  const int64_t F = std::min(kMomentsNearDistance, n);  // distances: offsets below F gathered, the rest from log-sum-exps
  if (req.distance || req.distanceTotal) nearHi = F - 1;
  if (req.columnSums && req.bandMax == std::numeric_limits<int64_t>::max() && req.bandMin < F) nearHi = F - 1;
  if (req.window > 0 && req.window <= F) nearHi = std::max(nearHi, req.window - 1);
  // On CUDA the probe's near-band kernel (near_band_kernel.cu) sums every band inside [0, 32) straight from q and k,
  // with no [n, head, width] tensor: one call per layer planned below, gatherBand only for wider bands.
  const bool nearKernel = nearBandApplies(in.q, in.k);
  const int64_t nearKernelWidth = nearKernel ? nearBandWidth() : 0;
  at::Tensor nearP;  // [n − R, head, nearHi + 1] fp64, or undefined
  if (nearHi >= 0 && nearHi >= nearKernelWidth && (n - R) * H * (nearHi + 1) * 8 <= kNearBandBytes) {
    RECORD_USER_SCOPE("probe::moments_band");
    nearP = at::empty({n - R, H, nearHi + 1}, dopt);
    const int64_t chunkBlocks = std::max<int64_t>(1, (int64_t{16} << 20) / (H * B * (B + nearHi)));
    for (int64_t b0 = 0; b0 < blocks; b0 += chunkBlocks) {
      if (ctx) ctx->check();
      const int64_t b1 = std::min(blocks, b0 + chunkBlocks);
      nearP.slice(0, b0 * B, std::min(n - R, b1 * B)).copy_(bandProbabilities(0, nearHi, b0, b1));
    }
  }
  // With the kernel, every band below its width that this request reads comes from one call per layer: the weights
  // w(δ) as one host-made table (one copy, no per-band tensor ops), the same values the lambdas below give.
  const int64_t openBandStart = std::max<int64_t>(req.bandMin, 0);
  const bool openBand = req.bandMax == std::numeric_limits<int64_t>::max();
  const bool closedNearColumns = req.columnSums && !openBand && req.bandMax < nearKernelWidth;
  const bool openNearColumns = req.columnSums && openBand && req.distanceTotal && openBandStart < F;
  std::optional<NearBand> nearSums;
  int nearDistanceRow = -1, nearWindowRow = -1;
  if (nearKernel) {
    std::vector<double> rowWeights, colWeights;  // [rows · width], [width]
    auto weights = [&](std::vector<double>& out, int64_t lo, int64_t hi, const std::function<double(double)>& w) {
      for (int64_t d = 0; d < nearKernelWidth; ++d) out.push_back(d >= lo && d <= hi ? w(static_cast<double>(d)) : 0.0);
    };
    int rows = 0;
    if ((req.distance || req.distanceTotal) && F - 1 < nearKernelWidth) {
      weights(rowWeights, 1, F - 1, [](double d) { return d; });
      nearDistanceRow = rows++;
    }
    if (req.window > 0 && req.window <= nearKernelWidth) {
      const double W = static_cast<double>(req.window);
      weights(rowWeights, 0, req.window - 1, [W](double d) { return W - d; });
      nearWindowRow = rows++;
    }
    if (closedNearColumns) weights(colWeights, openBandStart, req.bandMax, [](double) { return 1.0; });
    if (openNearColumns) weights(colWeights, openBandStart, F - 1, [](double) { return 1.0; });
    if (rows > 0 || !colWeights.empty()) {
      rowWeights.insert(rowWeights.end(), colWeights.begin(), colWeights.end());
      const at::Tensor table = valuesOn(rowWeights, in.q.device());  // [rows · width + (width)]
      const at::Tensor rw = rows > 0 ? table.narrow(0, 0, rows * nearKernelWidth).view({rows, nearKernelWidth}) : at::Tensor();
      const at::Tensor cw = colWeights.empty() ? at::Tensor() : table.narrow(0, rows * nearKernelWidth, nearKernelWidth);
      nearSums = nearBandOnDevice(in.q, in.k, lse, in.scale, R, rw, cw);
    }
  }
  /// Σ_{δ ∈ [lo, hi]} w(δ) · p_{i, i−δ} for rows i ≥ R → [head, n] (row-indexed) or, with `byColumn`, added at
  /// column j = i − δ. From nearP where it covers the band, else per chunk of row blocks (bandProbabilities).
  auto gatherBand = [&](int64_t lo, int64_t hi, const std::function<at::Tensor(const at::Tensor&)>& w, bool byColumn) {
    RECORD_USER_SCOPE("probe::moments_band");
    at::Tensor acc = at::zeros({H, n}, dopt);  // [head, n]
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, n - 1);
    if (lo > hi) return acc;
    const int64_t width = hi - lo + 1;
    // Slot m holds key i − hi + m, i.e. offset δ = hi − m. Weights made on the device: no host copy (and wait).
    const at::Tensor slot = at::arange(width, s.lopt);                                // [width]
    const at::Tensor slotWeight = w(static_cast<double>(hi) - slot.to(at::kDouble));  // [width] w(δ), fp64
    auto accumulate = [&](at::Tensor p, int64_t r0, int64_t r1) {  // p [rows, head, width] of rows r0 … r1 − 1
      const int64_t rows = r1 - r0;
      p = p * slotWeight;
      if (byColumn) {
        const at::Tensor key = (at::arange(r0, r1, s.lopt).unsqueeze(1) - hi + slot.unsqueeze(0)).clamp_min(0);  // [rows, width]
        acc.index_add_(1, key.flatten(), p.permute({1, 0, 2}).reshape({H, rows * width}));  // padding keys add 0 at 0
      } else {
        acc.slice(1, r0, r1).add_(p.sum(-1).t());
      }
    };
    if (nearP.defined() && hi <= nearHi) {
      accumulate(nearP.narrow(2, nearHi - hi, width), R, n);
      return acc;
    }
    const int64_t chunkBlocks = std::max<int64_t>(1, (int64_t{16} << 20) / (H * B * (B + width - 1)));
    for (int64_t b0 = 0; b0 < blocks; b0 += chunkBlocks) {
      if (ctx) ctx->check();
      const int64_t b1 = std::min(blocks, b0 + chunkBlocks);
      accumulate(bandProbabilities(lo, hi, b0, b1), R + b0 * B, std::min(n, R + b1 * B));
    }
    return acc;
  };

  // Distances: offsets below F gathered exactly, the mass beyond from log-sum-exps of keys shifted by F.
  at::Tensor nearDistance;  // [head, n]: Σ_{δ < F} p_{i, i−δ} δ per row i ≥ R
  if (nearSums && nearDistanceRow >= 0) nearDistance = nearSums->rowSums[nearDistanceRow];
  else if (req.distance || req.distanceTotal) nearDistance = gatherBand(1, F - 1, [](const at::Tensor& d) { return d; }, false);
  // Each row's far mass T_i = Σ_{j ≤ i−F} p_ij (0 for rows before max(R, F)) needs no key bias: the rows i ≥ F against
  // the keys j < n − F are a square causal problem (query m = i − F sees keys j ≤ m), one fused call at d_head. (cuDNN
  // runs d_head + 8 = 136 in a 192-wide tile, ~1.6× the time of d_head = 128.)
  // On CUDA the probe's own kernel gives T_i and the far column sums C_j (below) together in one pass over q·k at
  // d_head, from the rows' normalisers (far_sums_kernel.cu); the LibTorch passes stay as the fallback.
  std::optional<FarSums> farKernel;  // shift F, rows ≥ R
  bool farKernelTried = false;
  auto farSumsKernel = [&]() -> const FarSums* {
    if (!farKernelTried) {
      RECORD_USER_SCOPE("probe::moments_far_sums_kernel");
      farKernelTried = true;
      farKernel = farSumsOnDevice(in.q, in.k, lse, in.scale, F, R);
    }
    return farKernel ? &*farKernel : nullptr;
  };
  at::Tensor farMass;  // [head, n]
  auto farRowMass = [&] {
    if (farMass.defined()) return farMass;
    if (const FarSums* fk = farSumsKernel()) return farMass = fk->rowMass;
    RECORD_USER_SCOPE("probe::moments_far_rows");
    farMass = at::zeros({H, n}, dopt);
    const int64_t r0 = std::max(R, F);
    if (r0 < n) {
      // Padded with F zero rows to the rows' own length n (rows past n − F read only the zero keys and are dropped),
      // so that the fused kernels see the shape of every other call of this layer: one per-shape check, the same tiles.
      // (Unpadded, 8,160 rows at 8K gained none of the ~8 ms expected on the H100; not yet re-timed padded.)
      const at::Tensor rowsFar = at::cat({in.q.slice(0, F), at::zeros({F, in.q.size(1), in.q.size(2)}, in.q.options())}, 0);   // [n, head, d]
      const at::Tensor keysNear = at::cat({in.k.slice(0, 0, n - F), at::zeros({F, in.k.size(1), in.k.size(2)}, in.k.options())}, 0);  // [n, kv, d]
      const at::Tensor lseFar = causalLse(rowsFar, keysNear, in.scale, r0 - F, s, ctx, &res.flashLse);  // [head, n]: row m is i = m + F
      farMass.slice(1, r0).copy_((lseFar.slice(1, r0 - F, n - F) - lse.slice(1, r0)).exp());
    }
    return farMass;
  };
  if (req.distance) {
    const at::Tensor logPos = positionsFrom1().log();  // [1, n] log(position + 1)
    const at::Tensor lseM = causalLse(withOnes(in.q), shiftedWithBias(in.k, logPos, F, in.scale), in.scale, req.queryStart, s, ctx,
                                      &res.flashLse);  // [head, n]: log Σ_{j ≤ i−F} e^{s_ij} (j + 1)
    const at::Tensor far = positionsFrom1() * farRowMass() - (lseM - lse).exp();  // [head, n] ≥ 0 up to rounding
    res.distance.slice(1, R, n).copy_((nearDistance + far).slice(1, R, n));
  }

  if (req.window > 0) {  // Σ_j p_ij min(i − j, W) = W − Σ_{δ < W} p_{i, i−δ} (W − δ)  (rows ≥ R see key 0)
    const int64_t W = req.window;
    const at::Tensor near = nearSums && nearWindowRow >= 0
                                ? nearSums->rowSums[nearWindowRow]
                                : gatherBand(0, W - 1, [W](const at::Tensor& d) { return static_cast<double>(W) - d; }, false);
    res.windowed.slice(1, R, n).copy_((static_cast<double>(W) - near).slice(1, R, n));
  }
  if (!req.keySet.empty()) {  // Σ_{j∈C, j ≤ i} p_ij: the set's keys gathered once, rows in chunks
    std::vector<int64_t> keys = req.keySet;
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    const at::Tensor idx = indicesOn(keys, in.q.device());  // [m]
    const at::Tensor kt = in.k.index_select(0, idx).to(s.cdt).permute({1, 2, 0}).contiguous();       // [kv, d, m]
    const int64_t m = idx.size(0);
    const int64_t rows = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(1, H * std::max(m, g.dHead)));
    for (int64_t r0 = R; r0 < n; r0 += rows) {
      const int64_t r1 = std::min(n, r0 + rows);
      at::Tensor x = tileScores(queryTile(in, s, r0, r1), kt, s, in.scale, r1 - r0, {}, lse.slice(1, r0, r1).neg());
      const at::Tensor future = idx.unsqueeze(0) > at::arange(r0, r1, s.lopt).unsqueeze(1);  // [rows, m]
      x.masked_fill_(future, kNegInf);
      res.keySetMass.slice(1, r0, r1).copy_(x.exp_().sum(-1));
    }
  }
  // Column passes: Σ_{i − j ≥ a, i ≥ R} p_ij w_i = exp LSE over the reversed sequences — queries = keys (per query
  // head), keys = rows with bias log w_i − lse_i (rows before R: kMaskedRowBias), shifted by a so that reversed row j
  // sees rows i ≥ j + a only. `logWeight` [1, n] fp64 (undefined: w = 1) → [head, n] indexed by column j.
  at::Tensor keysReversed;  // [n, head, d + 8]: the keys repeated per query head, reversed, with the bias ones
  auto columnPass = [&](const at::Tensor& logWeight, int64_t a) {
    RECORD_USER_SCOPE("probe::moments_column_pass");
    if (!keysReversed.defined()) keysReversed = withOnes((g.group > 1 ? in.k.repeat_interleave(g.group, 1) : in.k).flip(0));
    const at::Tensor bias = logWeight.defined() ? logWeight - lse : lse.neg();  // [head, n]
    const at::Tensor rowBias = at::where(lse == kNegInf, at::full_like(lse, kMaskedRowBias), bias);
    const at::Tensor lseCol = causalLse(keysReversed, shiftedWithBias(in.q.flip(0), rowBias.flip(1), a, in.scale), in.scale, 0, s,
                                        ctx, &res.flashLse);  // [head, n] over reversed keys
    return lseCol.flip(1).exp();
  };

  // The head's total distance Σ_{i ≥ R} Σ_j p_ij (i − j): the near offsets, and the far part (i − j ≥ F) as
  // Σ_i (i + 1)·T_i − Σ_j (j + 1)·C_j, with T_i = Σ_{j ≤ i−F} p_ij each row's far mass and C_j = Σ_{i ≥ j+F, i ≥ R} p_ij
  // each column's. Both sums vanish with the far mass, so the error does too (each term keeps a log-sum-exp's relative
  // precision: ≤ 2 tol·Σ_far p_ij (i + 1)). C_j is a reversed column pass (bias −lse_i in 8 extra dims), which open-band
  // column sums from a ≤ F share; T_i is farRowMass's pass at d_head (until 2026-12-05 a second reversed pass at
  // d_head + 8, row bias log(i + 1) − lse_i, gave Σ_j of the far (i + 1)-weighted column sums instead).
  at::Tensor farColumns;  // [head, n]: Σ_{i ≥ j+F, i ≥ R} p_ij
  if (req.distanceTotal) {
    const FarSums* fk = farSumsKernel();
    farColumns = fk ? fk->colMass : columnPass({}, F);
    // Σ_i (i + 1)(T_i − C_i) as one product with the positions: the same bound, |T_i| + |C_i| per term in fp64.
    res.distanceTotal = nearDistance.sum(1) + at::mv(farRowMass() - farColumns, positionsFrom1().squeeze(0));  // [head]
  }
  if (req.columnSums) {
    const int64_t a = std::max<int64_t>(req.bandMin, 0);
    if (req.bandMax != std::numeric_limits<int64_t>::max()) {  // a closed band: gathered directly
      res.columnSums.copy_(nearSums && closedNearColumns ? nearSums->colSums
                                                         : gatherBand(req.bandMin, req.bandMax, [](const at::Tensor& d) { return at::ones_like(d); }, true));
    } else if (farColumns.defined() && a <= F) {  // the distance's far columns and the offsets [a, F) gathered
      const at::Tensor nearColumns = a >= F                             ? at::zeros_like(farColumns)
                                     : nearSums && openNearColumns ? nearSums->colSums
                                                                   : gatherBand(a, F - 1, [](const at::Tensor& d) { return at::ones_like(d); }, true);
      at::add_out(res.columnSums, farColumns, nearColumns);  // fp64 sum, rounded once to the result's dtype
    } else if (const std::optional<FarSums> fk = farSumsOnDevice(in.q, in.k, lse, in.scale, a, R)) {
      res.columnSums.copy_(fk->colMass);
    } else {
      res.columnSums.copy_(columnPass({}, a));
    }
  }
  return res;
}

}  // namespace mechscope::probe_detail
