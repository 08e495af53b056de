// The per-call setup and the tile primitives both probe algorithms are built from.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/common/device_indices.hpp"
#include "core/common/errors.hpp"
#include "core/probe/probe_internal.hpp"

namespace mechscope::probe_detail {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

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
  if (in.slidingWindow < 0)
    throw InputError(fmt::format("attention probe: slidingWindow must be >= 0, found {}", in.slidingWindow));
  if (in.queryOffset < 0)
    throw InputError(fmt::format("attention probe: queryOffset must be >= 0, found {}", in.queryOffset));
  if (!std::isfinite(in.scale)) throw InputError("attention probe: scale must be finite");
  if (!(in.softcap >= 0.0 && std::isfinite(in.softcap)))
    throw InputError(fmt::format("attention probe: softcap must be >= 0 and finite, found {}", in.softcap));
  if (in.keyPadding.defined()) {
    if (in.keyPadding.scalar_type() != at::kBool || in.keyPadding.dim() != 1 ||
        in.keyPadding.size(0) != in.k.size(0))
      throw InputError(fmt::format("attention probe: keyPadding must be bool [{}], found {} {}", in.k.size(0),
                                   c10::toString(in.keyPadding.scalar_type()), c10::str(in.keyPadding.sizes())));
  }
  if (in.sinks.defined() && (in.sinks.dim() != 1 || in.sinks.size(0) != heads || !at::isFloatingType(in.sinks.scalar_type())))
    throw InputError(fmt::format("attention probe: sinks must be floating [{}] (one logit per head), found {} {}", heads,
                                 c10::toString(in.sinks.scalar_type()), c10::str(in.sinks.sizes())));
  if (in.rowLse.defined() &&
      (in.rowLse.dim() != 2 || in.rowLse.size(0) != heads || in.rowLse.size(1) != in.q.size(0) || !at::isFloatingType(in.rowLse.scalar_type())))
    throw InputError(fmt::format("attention probe: given row normalisers must be floating [{}, {}] (heads, queries), found {} {}", heads,
                                 in.q.size(0), c10::toString(in.rowLse.scalar_type()), c10::str(in.rowLse.sizes())));
  for (int64_t h : in.uniformHeads)
    if (h < 0 || h >= heads)
      throw InputError(fmt::format("attention probe: uniform head {} out of range [0, {})", h, heads));
  if (tileQ < 1 || tileK < 1)
    throw InputError(fmt::format("attention probe: tile sizes must be >= 1, found {}x{}", tileQ, tileK));
}

bool isHalfPrecision(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

}  // namespace

ProbeSetup prepareProbe(const ProbeInputs& in, const ProbeRequest& req, int64_t tileQ, int64_t tileK) {
  validateInputs(in, tileQ, tileK);
  ProbeSetup s;
  Geometry& g = s.g;
  g.nq = in.q.size(0);
  g.nk = in.k.size(0);
  g.heads = in.q.size(1);
  g.kvHeads = in.k.size(1);
  g.dHead = in.q.size(2);
  g.group = g.heads / g.kvHeads;
  g.offset = in.queryOffset;
  validateRequest(req, g.nk, "attention probe");
  s.window = in.slidingWindow;
  s.softcap = in.softcap;

  const auto device = in.q.device();
  s.cdt = in.q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  s.fopt = in.q.options().dtype(s.cdt);
  s.lopt = in.q.options().dtype(at::kLong);
  s.lowPrecisionInputs = isHalfPrecision(in.q.scalar_type()) && isHalfPrecision(in.k.scalar_type());

  // Key padding, on the host once: the first visible key decides which rows are empty.
  s.firstVisibleKey = g.nk > 0 ? 0 : std::numeric_limits<int64_t>::max();
  if (in.keyPadding.defined()) {
    at::Tensor padCpu = in.keyPadding.to(at::kCPU).contiguous();
    const bool* pp = padCpu.data_ptr<bool>();
    s.firstVisibleKey = std::numeric_limits<int64_t>::max();
    for (int64_t j = 0; j < g.nk; ++j)
      if (!pp[j]) {
        s.firstVisibleKey = j;
        break;
      }
    s.pad = in.keyPadding.to(device);
  }
  if (in.sinks.defined()) s.sinks = in.sinks.to(device, s.cdt);
  if (!in.uniformHeads.empty())
    s.uniformIdx = indicesOn(in.uniformHeads, device);
  if (!req.keySet.empty()) {
    s.keySetInd = at::zeros({g.nk}, s.fopt);
    s.keySetInd.index_fill_(0, indicesOn(req.keySet, device), 1.0);
  }
  s.keyPos = at::arange(g.nk, s.lopt);
  s.keyPosF = s.keyPos.to(s.cdt);
  s.rowBegin = std::clamp<int64_t>(req.queryStart - g.offset, 0, g.nq);
  s.tiles = chooseProbeTiles(g.heads, g.nq - s.rowBegin, g.nk, tileQ, tileK, in.q.is_cuda());
  return s;
}

at::Tensor queryTile(const ProbeInputs& in, const ProbeSetup& s, int64_t r0, int64_t r1) {
  const Geometry& g = s.g;
  return in.q.slice(0, r0, r1).to(s.cdt).permute({1, 0, 2}).reshape({g.kvHeads, g.group * (r1 - r0), g.dHead});
}

at::Tensor keyTile(const ProbeInputs& in, const ProbeSetup& s, int64_t c0, int64_t c1) {
  // Contiguous [kvHeads, d_head, cols]: BLAS runs ~1.5x faster than on the strided view.
  return in.k.slice(0, c0, c1).to(s.cdt).permute({1, 2, 0}).contiguous();
}

int64_t firstKeyInWindow(const ProbeSetup& s, int64_t iFirst) {
  return s.window > 0 ? std::max<int64_t>(0, iFirst - s.window + 1) : 0;
}

at::Tensor tileMask(const ProbeSetup& s, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const int64_t iFirst = r0 + s.g.offset, rows = r1 - r0, iLast = iFirst + rows - 1;
  at::Tensor mask;  // [rows, cols] bool, true = masked
  const bool future = c1 - 1 > iFirst;                        // some key after some row
  const bool tooFar = s.window > 0 && iLast - c0 >= s.window;  // some key outside some row's window
  if (future || tooFar) {
    const at::Tensor iAbs = at::arange(iFirst, iFirst + rows, s.lopt).unsqueeze(1);  // [rows, 1]
    const at::Tensor j = s.keyPos.slice(0, c0, c1).unsqueeze(0);                     // [1, cols]
    mask = j > iAbs;
    if (tooFar) mask.logical_or_(iAbs - j >= s.window);
  }
  if (s.pad.defined()) {
    at::Tensor p = s.pad.slice(0, c0, c1).unsqueeze(0);
    mask = mask.defined() ? mask.logical_or(p) : p.expand({rows, c1 - c0});
  }
  return mask;
}

at::Tensor tileScores(const at::Tensor& qt, const at::Tensor& kt, const ProbeSetup& s, double scale, int64_t rows,
                      const at::Tensor& mask, const at::Tensor& rowShift) {
  const Geometry& g = s.g;
  const int64_t cols = kt.size(2);
  at::Tensor x;  // [kvHeads, group·rows, cols]
  {
    const Tf32Scope tf32(s.lowPrecisionInputs);  // bf16/fp16 values are exact in TF32: same products, ~8x the rate
    if (rowShift.defined() && s.softcap > 0) {
      // The shift applies to the soft-capped score: cap first, then add.
      x = at::matmul(qt, kt).mul_(scale).div_(s.softcap).tanh_().mul_(s.softcap);
      x.add_(rowShift.to(s.cdt).reshape({g.kvHeads, g.group * rows, 1}));
    } else if (rowShift.defined()) {
      x = at::baddbmm(rowShift.to(s.cdt).reshape({g.kvHeads, g.group * rows, 1}), qt, kt, 1.0, scale);
    } else if (s.softcap > 0) {
      x = at::matmul(qt, kt).mul_(scale).div_(s.softcap).tanh_().mul_(s.softcap);
    } else {
      x = at::matmul(qt, kt).mul_(scale);
    }
  }
  x = x.view({g.heads, rows, cols});  // [head, rows, cols]
  if (s.uniformIdx.defined()) {
    if (rowShift.defined()) {
      x.index_copy_(0, s.uniformIdx,
                    rowShift.index_select(0, s.uniformIdx).to(s.cdt).unsqueeze(-1).expand({-1, rows, cols}).contiguous());
    } else {
      x.index_fill_(0, s.uniformIdx, 0.0);
    }
  }
  if (mask.defined()) x.masked_fill_(mask, kNegInf);
  return x;
}

void mergeTileTopK(const at::Tensor& x, int64_t c0, int topK, at::Tensor& topS, at::Tensor& topI) {
  if (topK == 1) {
    auto [v, idx] = at::max(x, -1, true);  // first maximum within the tile
    const at::Tensor better = v > topS;     // strict: earlier tiles win ties
    topS = at::where(better, v, topS);
    topI = at::where(better, idx.add_(c0), topI);
  } else if (topK > 1) {
    auto [v, idx] = at::topk(x, std::min<int64_t>(topK, x.size(-1)), -1);
    const at::Tensor catS = at::cat({topS, v}, -1), catI = at::cat({topI, idx.add_(c0)}, -1);
    auto [v2, sel] = at::topk(catS, topK, -1);
    topS = v2;
    topI = catI.gather(-1, sel);
  }
}

void addBandedColumnSums(at::Tensor& p, const ProbeRequest& req, const ProbeSetup& s, int64_t r0, int64_t r1,
                         int64_t c0, int64_t c1, at::Tensor& columnSums) {
  const int64_t iFirst = r0 + s.g.offset, iLast = r1 - 1 + s.g.offset;
  // Rows of this tile whose (i − j) leaves the band contribute nothing; masked keys have p = 0.
  const int64_t dMin = iFirst - (c1 - 1), dMax = iLast - c0;
  const bool allIn = std::max<int64_t>(dMin, 0) >= req.bandMin && dMax <= req.bandMax;
  const bool allOut = dMax < req.bandMin || dMin > req.bandMax;
  if (allOut) return;
  if (!allIn) {
    const at::Tensor iAbs = at::arange(iFirst, iLast + 1, s.lopt);                       // [rows]
    const at::Tensor dd = iAbs.unsqueeze(1) - s.keyPos.slice(0, c0, c1).unsqueeze(0);  // [rows, cols]
    p.masked_fill_((dd < req.bandMin).logical_or_(dd > req.bandMax), 0.0);
  }
  columnSums.slice(1, c0, c1).add_(p.sum(1));
}

Tf32Scope::Tf32Scope(bool enable) {
  if (!enable) return;
  auto& ctx = at::globalContext();
  previous_ = ctx.allowTF32CuBLAS();
  if (!previous_) {
    ctx.setAllowTF32CuBLAS(true);
    changed_ = true;
  }
}

Tf32Scope::~Tf32Scope() {
  if (changed_) at::globalContext().setAllowTF32CuBLAS(previous_);
}

}  // namespace mechscope::probe_detail
