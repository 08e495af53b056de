// ProbeAlgorithm::Scan: online softmax over key tiles (docs/metrics.md §11), fp64 row sums, and a second
// pass over the tiles only when column sums are asked.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/probe/probe_internal.hpp"

namespace mechscope::probe_detail {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
}  // namespace

ProbeResult probeScan(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx) {
  const Geometry& g = s.g;
  const auto cdt = s.cdt;
  const auto& fopt = s.fopt;
  const auto& lopt = s.lopt;
  ProbeResult res = allocateResult(req, g.heads, g.nq, g.nk, fopt, lopt);
  res.algorithm = ProbeAlgorithm::Scan;
  if (req.columnCounts) res.columnCounts = columnCounts(req, g.nq, g.nk, g.offset, s.firstVisibleKey, in.q.device());
  const at::Tensor& keyPosF = s.keyPosF;
  const at::Tensor& keySetInd = s.keySetInd;
  const int64_t rowBegin = s.rowBegin;
  const ProbeTiles& tiles = s.tiles;
  const int64_t topK = req.topK;
  // Row log-sum-exp, kept only when column keys need it afterwards: [head, nq] fp64.
  at::Tensor lseAll;
  if (!req.columnKeys.empty()) lseAll = at::full({g.heads, g.nq}, kNegInf, fopt.dtype(at::kDouble));

  for (int64_t r0 = rowBegin; r0 < g.nq; r0 += tiles.tileQ) {
    if (ctx) ctx->check();
    const int64_t r1 = std::min(r0 + tiles.tileQ, g.nq), rows = r1 - r0;
    const int64_t iFirst = r0 + g.offset, iLast = r1 - 1 + g.offset;  // absolute positions
    const int64_t kEnd = std::min(g.nk, iLast + 1);  // later keys are in every row's future
    // [kvHeads, group·rows, d_head]: query heads of one kv head side by side, so K is never repeated.
    at::Tensor qt = queryTile(in, s, r0, r1);
    const at::Tensor iAbs = at::arange(iFirst, iLast + 1, lopt);  // [rows]
    const at::Tensor iAbsF = iAbs.to(cdt);                         // [rows], exact below 2^24

    // Pass 1 (scan): online softmax per row. With m the running max and e = exp(s − m), every row
    // statistic is kept as Σ e·f and rescaled by exp(m_old − m_new) when the max grows; top-k is taken
    // on the scores (monotone in p) and turned into probabilities at the end.
    // Sums that end in log l or 1/l are fp64: in a peaked row l = 1 + ε with ε below fp32's resolution.
    const auto dopt = fopt.dtype(at::kDouble);
    at::Tensor m = at::full({g.heads, rows}, kNegInf, fopt);  // [head, rows] running max of s
    at::Tensor l = at::zeros({g.heads, rows}, dopt);          // [head, rows] Σ e
    at::Tensor dist, win, mass, entA;  // [head, rows] fp64: Σ e·(i−j), Σ e·min(i−j, W), Σ_C e, Σ e·(m − s)
    if (req.distance) dist = at::zeros({g.heads, rows}, dopt);
    if (req.window > 0) win = at::zeros({g.heads, rows}, dopt);
    if (!req.keySet.empty()) mass = at::zeros({g.heads, rows}, dopt);
    if (req.entropy) entA = at::zeros({g.heads, rows}, dopt);
    at::Tensor topS, topI;  // [head, rows, k] best scores so far and their keys
    if (topK > 0) {
      topS = at::full({g.heads, rows, topK}, kNegInf, fopt);
      topI = at::full({g.heads, rows, topK}, -1, lopt);
    }

    for (int64_t c0 = firstKeyInWindow(s, r0 + g.offset); c0 < kEnd; c0 += tiles.tileK) {
      const int64_t c1 = std::min(c0 + tiles.tileK, kEnd);
      at::Tensor x = tileScores(qt, keyTile(in, s, c0, c1), s, in.scale, rows, tileMask(s, r0, r1, c0, c1));

      mergeTileTopK(x, c0, topK, topS, topI);

      const at::Tensor newM = at::maximum(m, at::amax(x, {-1}));
      const at::Tensor safeNew = newM.masked_fill(newM == kNegInf, 0.0);  // all masked so far: any finite base
      const at::Tensor alpha = (m - safeNew).exp_().to(at::kDouble);     // rescale of the old sums; 0 when empty
      if (entA.defined()) {
        const at::Tensor safeOld = m.masked_fill(m == kNegInf, 0.0);
        entA.add_(l * (safeNew - safeOld).to(at::kDouble)).mul_(alpha);  // Σ e (m_new − s) over old keys
      }
      l.mul_(alpha);
      if (dist.defined()) dist.mul_(alpha);
      if (win.defined()) win.mul_(alpha);
      if (mass.defined()) mass.mul_(alpha);
      m = newM;

      x.sub_(safeNew.unsqueeze(-1));  // s − m ≤ 0, −inf where masked
      const at::Tensor e = x.exp();   // [head, rows, cols]
      // The tile's sum in fp64 only when entropy needs log l to the last bit (slower on CPU).
      const at::Tensor rowSum = entA.defined() ? e.sum(-1, false, at::kDouble) : e.sum(-1).to(at::kDouble);
      l.add_(rowSum);

      // Tiles wholly at or below the diagonal (every i ≥ every j) avoid [head, rows, cols] products:
      // (i − j) = (i − jLast) + (jLast − j), both ≥ 0, so Σ e (i − j) = (i − jLast)·Σ e + e·(jLast − j)
      // without cancellation, and min(i − j, W) = W once i − j ≥ W everywhere.
      const int64_t dMin = iFirst - (c1 - 1);  // smallest (i − j) in the tile
      const bool belowDiagonal = dMin >= 0;
      const bool farForWindow = req.window > 0 && dMin >= req.window;
      at::Tensor d;  // [rows, cols] (i − j) in the compute dtype, for tiles crossing the diagonal
      if ((req.distance && !belowDiagonal) || (req.window > 0 && !farForWindow))
        d = iAbsF.unsqueeze(1) - keyPosF.slice(0, c0, c1).unsqueeze(0);
      if (dist.defined()) {
        if (belowDiagonal) {
          const at::Tensor back = keyPosF.slice(0, c0, c1).neg().add_(static_cast<double>(c1 - 1));  // jLast − j
          dist.add_(rowSum * (iAbsF - static_cast<double>(c1 - 1)).to(at::kDouble));
          dist.add_(at::matmul(e, back).to(at::kDouble));
        } else {
          dist.add_((e * d).sum(-1).to(at::kDouble));
        }
      }
      if (win.defined()) {
        if (farForWindow) {
          win.add_(rowSum, static_cast<double>(req.window));
        } else {
          win.add_((e * d.clamp_max(static_cast<double>(req.window))).sum(-1).to(at::kDouble));
        }
      }
      if (mass.defined()) mass.add_(at::matmul(e, keySetInd.slice(0, c0, c1)).to(at::kDouble));
      if (entA.defined()) {
        // Masked keys: e = 0 and x = −inf, whose product would be NaN; a finite floor gives 0.
        x.clamp_min_(cdt == at::kFloat ? static_cast<double>(std::numeric_limits<float>::lowest())
                                       : std::numeric_limits<double>::lowest());
        entA.sub_(x.mul_(e).sum(-1, false, at::kDouble));  // x is not read again
      }
    }

    // Learned sinks (gpt-oss): each head's sink logit joins the normaliser of every non-empty row as one
    // more key with no value and no position (rescaled like a tile); the statistics stay over the keys.
    const at::Tensor empty = l == 0;
    at::Tensor sinkE;  // [head, rows] fp64 e of the sink (sinks only; 0 in empty rows)
    if (s.sinks.defined()) {
      const at::Tensor sink = s.sinks.unsqueeze(1).expand({g.heads, rows});  // [head, rows]
      const at::Tensor newM = at::where(empty, m, at::maximum(m, sink));
      const at::Tensor safeNew = newM.masked_fill(newM == kNegInf, 0.0);
      const at::Tensor alpha = (m - safeNew).exp_().to(at::kDouble);
      if (entA.defined()) entA.add_(l * (safeNew - m.masked_fill(m == kNegInf, 0.0)).to(at::kDouble)).mul_(alpha);
      l.mul_(alpha);
      if (dist.defined()) dist.mul_(alpha);
      if (win.defined()) win.mul_(alpha);
      if (mass.defined()) mass.mul_(alpha);
      m = newM;
      sinkE = (sink - safeNew).exp().to(at::kDouble).masked_fill_(empty, 0.0);
      l.add_(sinkE);
    }

    // Finish the row statistics: divide by l (empty rows, l = 0, stay 0); entropy = log l + Σ e (m − s) / l
    // (with a sink: log l · (1 − e_sink / l), the keys' share of the mass).
    const at::Tensor lSafe = l.masked_fill(empty, 1.0);
    const at::Tensor logL = lSafe.log();  // [head, rows] fp64, 0 for empty rows
    auto finish = [&](const at::Tensor& acc, at::Tensor& out) { out.slice(1, r0, r1).copy_(acc / lSafe); };
    if (dist.defined()) finish(dist, res.distance);
    if (win.defined()) finish(win, res.windowed);
    if (mass.defined()) finish(mass, res.keySetMass);
    if (entA.defined()) {
      const at::Tensor logTerm = sinkE.defined() ? logL * (1.0 - sinkE / lSafe) : logL;
      res.entropy.slice(1, r0, r1).copy_((entA / lSafe).add_(logTerm).masked_fill_(empty, 0.0));
    }
    const at::Tensor rowMax = m.masked_fill(m == kNegInf, 0.0).unsqueeze(-1);  // [head, rows, 1]
    const at::Tensor logSum = logL.to(cdt).unsqueeze(-1);                     // [head, rows, 1]
    if (topK > 0) {
      // p = exp((s − m) − log l): subtracting the max first keeps the dominant keys exact.
      at::Tensor topV = topS.sub(rowMax).sub_(logSum).exp_();  // −inf scores (masked, missing) → 0
      topI.masked_fill_(topV <= 0, -1);
      res.topValues.slice(1, r0, r1).copy_(topV);
      res.topIndices.slice(1, r0, r1).copy_(topI);
    }
    if (lseAll.defined())  // log-sum-exp = m + log l; empty rows stay −inf
      lseAll.slice(1, r0, r1).copy_((m.to(at::kDouble) + logL).masked_fill_(empty, kNegInf));

    // Pass 2, only for column sums (they need each row's final normaliser): p = exp(s − m − log l).
    if (!req.columnSums) continue;
    for (int64_t c0 = firstKeyInWindow(s, r0 + g.offset); c0 < kEnd; c0 += tiles.tileK) {
      const int64_t c1 = std::min(c0 + tiles.tileK, kEnd);
      at::Tensor p = tileScores(qt, keyTile(in, s, c0, c1), s, in.scale, rows, tileMask(s, r0, r1, c0, c1));
      p.sub_(rowMax).sub_(logSum).exp_();  // [head, rows, cols]
      addBandedColumnSums(p, req, s, r0, r1, c0, c1, res.columnSums);
    }
  }
  if (lseAll.defined()) sumColumnKeys(in, req, s, lseAll, res);
  return res;
}

}  // namespace mechscope::probe_detail
