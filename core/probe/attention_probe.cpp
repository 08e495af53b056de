#include "core/probe/attention_probe.hpp"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/common/errors.hpp"
#include "core/probe/probe_internal.hpp"
#include "core/probe/probe_tiles.hpp"

namespace mechscope {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/// Shapes and positions of one probe call.
struct Geometry {
  int64_t nq = 0, nk = 0, heads = 0, kvHeads = 0, dHead = 0, group = 1, offset = 0;
};

void validateInputs(const ProbeInputs& in, int64_t tileQ, int64_t tileK) {
  if (!in.q.defined() || !in.k.defined()) throw InputError("attention probe: q and k must both be given");
  if (in.q.dim() != 3)
    throw InputError(fmt::format("attention probe: q must be [pos_q, n_heads, d_head], found {} dims", in.q.dim()));
  if (in.k.dim() != 3)
    throw InputError(fmt::format("attention probe: k must be [pos_k, n_kv_heads, d_head], found {} dims", in.k.dim()));
  if (!at::isFloatingType(in.q.scalar_type()) || !at::isFloatingType(in.k.scalar_type()))
    throw InputError(fmt::format("attention probe: q and k must be floating point, found {} and {}",
                                 c10::toString(in.q.scalar_type()), c10::toString(in.k.scalar_type())));
  if (in.q.device() != in.k.device())
    throw InputError(fmt::format("attention probe: q is on {} but k is on {}", in.q.device().str(),
                                 in.k.device().str()));
  if (in.q.size(2) != in.k.size(2))
    throw InputError(fmt::format("attention probe: d_head of q is {} but of k is {}", in.q.size(2), in.k.size(2)));
  const int64_t heads = in.q.size(1), kvHeads = in.k.size(1);
  if (kvHeads <= 0 || heads % kvHeads != 0)
    throw InputError(fmt::format("attention probe: n_heads {} is not a multiple of n_kv_heads {}", heads, kvHeads));
  if (in.queryOffset < 0)
    throw InputError(fmt::format("attention probe: queryOffset must be >= 0, found {}", in.queryOffset));
  if (!std::isfinite(in.scale)) throw InputError("attention probe: scale must be finite");
  if (in.keyPadding.defined()) {
    if (in.keyPadding.scalar_type() != at::kBool || in.keyPadding.dim() != 1 ||
        in.keyPadding.size(0) != in.k.size(0))
      throw InputError(fmt::format("attention probe: keyPadding must be bool [{}], found {} {}", in.k.size(0),
                                   c10::toString(in.keyPadding.scalar_type()), c10::str(in.keyPadding.sizes())));
  }
  for (int64_t h : in.uniformHeads)
    if (h < 0 || h >= heads)
      throw InputError(fmt::format("attention probe: uniform head {} out of range [0, {})", h, heads));
  if (tileQ < 1 || tileK < 1)
    throw InputError(fmt::format("attention probe: tile sizes must be >= 1, found {}x{}", tileQ, tileK));
}

/// Scores of one tile: [heads, rows, cols] in the compute dtype, scaled, uniform heads zeroed, masked
/// keys at −inf. `qt` is the query tile [kvHeads, group·rows, d_head].
at::Tensor tileScores(const at::Tensor& qt, const at::Tensor& k, const Geometry& g, int64_t rows, int64_t c0,
                      int64_t c1, double scale, const at::Tensor& uniformIdx, const at::Tensor& mask) {
  const auto cdt = qt.scalar_type();
  // Contiguous [kvHeads, d_head, cols]: BLAS runs ~1.5x faster than on the strided view.
  at::Tensor kt = k.slice(0, c0, c1).to(cdt).permute({1, 2, 0}).contiguous();
  at::Tensor s = at::matmul(qt, kt).view({g.heads, rows, c1 - c0});  // [head, rows, cols]
  s.mul_(scale);
  if (uniformIdx.defined()) s.index_fill_(0, uniformIdx, 0.0);
  if (mask.defined()) s.masked_fill_(mask, kNegInf);
  return s;
}

}  // namespace

ProbeResult probeAttention(const ProbeInputs& in, const ProbeRequest& req, int64_t tileQ, int64_t tileK,
                           const RunContext* ctx) {
  validateInputs(in, tileQ, tileK);
  Geometry g;
  g.nq = in.q.size(0);
  g.nk = in.k.size(0);
  g.heads = in.q.size(1);
  g.kvHeads = in.k.size(1);
  g.dHead = in.q.size(2);
  g.group = g.heads / g.kvHeads;
  g.offset = in.queryOffset;
  probe_detail::validateRequest(req, g.nk, "attention probe");

  const auto device = in.q.device();
  const auto cdt = in.q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto fopt = in.q.options().dtype(cdt);
  const auto lopt = in.q.options().dtype(at::kLong);

  ProbeResult res = probe_detail::allocateResult(req, g.heads, g.nq, g.nk, fopt, lopt);

  // Key padding, on the host once: the first visible key decides which rows are empty.
  at::Tensor pad;  // [nk] bool on device
  int64_t firstVisibleKey = g.nk > 0 ? 0 : std::numeric_limits<int64_t>::max();
  if (in.keyPadding.defined()) {
    at::Tensor padCpu = in.keyPadding.to(at::kCPU).contiguous();
    const bool* pp = padCpu.data_ptr<bool>();
    firstVisibleKey = std::numeric_limits<int64_t>::max();
    for (int64_t j = 0; j < g.nk; ++j)
      if (!pp[j]) {
        firstVisibleKey = j;
        break;
      }
    pad = in.keyPadding.to(device);
  }
  if (req.columnCounts)
    res.columnCounts = probe_detail::columnCounts(req, g.nq, g.nk, g.offset, firstVisibleKey).to(device);

  at::Tensor uniformIdx;
  if (!in.uniformHeads.empty())
    uniformIdx = at::tensor(in.uniformHeads, at::TensorOptions().dtype(at::kLong)).to(device);
  at::Tensor keySetInd;  // [nk] 0/1 indicator of the key set
  if (!req.keySet.empty()) {
    keySetInd = at::zeros({g.nk}, fopt);
    keySetInd.index_fill_(0, at::tensor(req.keySet, at::TensorOptions().dtype(at::kLong)).to(device), 1.0);
  }
  const at::Tensor keyPos = at::arange(g.nk, lopt);  // [nk]
  const at::Tensor keyPosF = keyPos.to(cdt);          // [nk]

  const int64_t rowBegin = std::clamp<int64_t>(req.queryStart - g.offset, 0, g.nq);
  const ProbeTiles tiles = chooseProbeTiles(g.heads, g.nq - rowBegin, g.nk, tileQ, tileK, in.q.is_cuda());
  const int64_t topK = req.topK;

  for (int64_t r0 = rowBegin; r0 < g.nq; r0 += tiles.tileQ) {
    if (ctx) ctx->check();
    const int64_t r1 = std::min(r0 + tiles.tileQ, g.nq), rows = r1 - r0;
    const int64_t iFirst = r0 + g.offset, iLast = r1 - 1 + g.offset;  // absolute positions
    const int64_t kEnd = std::min(g.nk, iLast + 1);  // later keys are in every row's future
    // [kvHeads, group·rows, d_head]: query heads of one kv head side by side, so K is never repeated.
    at::Tensor qt = in.q.slice(0, r0, r1).to(cdt).permute({1, 0, 2}).reshape({g.kvHeads, g.group * rows, g.dHead});
    const at::Tensor iAbs = at::arange(iFirst, iLast + 1, lopt);  // [rows]
    const at::Tensor iAbsF = iAbs.to(cdt);                         // [rows], exact below 2^24

    auto tileMask = [&](int64_t c0, int64_t c1) {
      at::Tensor mask;  // [rows, cols] bool, true = masked
      if (c1 - 1 > iFirst) mask = keyPos.slice(0, c0, c1).unsqueeze(0) > iAbs.unsqueeze(1);
      if (pad.defined()) {
        at::Tensor p = pad.slice(0, c0, c1).unsqueeze(0);
        mask = mask.defined() ? mask.logical_or(p) : p.expand({rows, c1 - c0});
      }
      return mask;
    };

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

    for (int64_t c0 = 0; c0 < kEnd; c0 += tiles.tileK) {
      const int64_t c1 = std::min(c0 + tiles.tileK, kEnd), cols = c1 - c0;
      at::Tensor x = tileScores(qt, in.k, g, rows, c0, c1, in.scale, uniformIdx, tileMask(c0, c1));

      if (topK == 1) {
        auto [v, idx] = at::max(x, -1, true);  // first maximum within the tile
        at::Tensor better = v > topS;           // strict: earlier tiles win ties
        topS = at::where(better, v, topS);
        topI = at::where(better, idx.add_(c0), topI);
      } else if (topK > 1) {
        auto [v, idx] = at::topk(x, std::min<int64_t>(topK, cols), -1);
        at::Tensor catS = at::cat({topS, v}, -1), catI = at::cat({topI, idx.add_(c0)}, -1);
        auto [v2, sel] = at::topk(catS, topK, -1);
        topS = v2;
        topI = catI.gather(-1, sel);
      }

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

    // Finish the row statistics: divide by l (empty rows, l = 0, stay 0); entropy = log l + Σ e (m − s) / l.
    const at::Tensor empty = l == 0;
    const at::Tensor lSafe = l.masked_fill(empty, 1.0);
    const at::Tensor logL = lSafe.log();  // [head, rows] fp64, 0 for empty rows
    auto finish = [&](const at::Tensor& acc, at::Tensor& out) { out.slice(1, r0, r1).copy_(acc / lSafe); };
    if (dist.defined()) finish(dist, res.distance);
    if (win.defined()) finish(win, res.windowed);
    if (mass.defined()) finish(mass, res.keySetMass);
    if (entA.defined()) res.entropy.slice(1, r0, r1).copy_((entA / lSafe).add_(logL).masked_fill_(empty, 0.0));
    const at::Tensor rowMax = m.masked_fill(m == kNegInf, 0.0).unsqueeze(-1);  // [head, rows, 1]
    const at::Tensor logSum = logL.to(cdt).unsqueeze(-1);                     // [head, rows, 1]
    if (topK > 0) {
      // p = exp((s − m) − log l): subtracting the max first keeps the dominant keys exact.
      at::Tensor topV = topS.sub(rowMax).sub_(logSum).exp_();  // −inf scores (masked, missing) → 0
      topI.masked_fill_(topV <= 0, -1);
      res.topValues.slice(1, r0, r1).copy_(topV);
      res.topIndices.slice(1, r0, r1).copy_(topI);
    }

    // Pass 2, only for column sums (they need each row's final normaliser): p = exp(s − m − log l).
    if (!req.columnSums) continue;
    for (int64_t c0 = 0; c0 < kEnd; c0 += tiles.tileK) {
      const int64_t c1 = std::min(c0 + tiles.tileK, kEnd);
      at::Tensor p = tileScores(qt, in.k, g, rows, c0, c1, in.scale, uniformIdx, tileMask(c0, c1));
      p.sub_(rowMax).sub_(logSum).exp_();  // [head, rows, cols]
      // Rows of this tile whose (i − j) leaves the band contribute nothing; masked keys have p = 0.
      const int64_t dMin = iFirst - (c1 - 1), dMax = iLast - c0;
      const bool allIn = std::max<int64_t>(dMin, 0) >= req.bandMin && dMax <= req.bandMax;
      const bool allOut = dMax < req.bandMin || dMin > req.bandMax;
      if (allOut) continue;
      if (!allIn) {
        const at::Tensor dd = iAbs.unsqueeze(1) - keyPos.slice(0, c0, c1).unsqueeze(0);  // [rows, cols]
        p.masked_fill_((dd < req.bandMin).logical_or_(dd > req.bandMax), 0.0);
      }
      res.columnSums.slice(1, c0, c1).add_(p.sum(1));
    }
  }
  return res;
}

}  // namespace mechscope
