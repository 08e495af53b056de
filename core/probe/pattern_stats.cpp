// statsFromPattern: the probe's statistics from a materialised [head, query, key] pattern. Plain
// whole-row at:: ops over chunks of rows: the reference the tiled path is tested against, and the
// `--materialize` path (its input is the O(heads·n²) pattern; temporaries stay ~32M elements).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/common/device_indices.hpp"
#include "core/common/errors.hpp"
#include "core/probe/attention_probe.hpp"
#include "core/probe/probe_internal.hpp"

namespace mechscope {

ProbeResult probe_detail::statsFromPatternChunked(const at::Tensor& pattern, const ProbeRequest& req, int64_t queryOffset,
                                                 int64_t chunkRows) {
  if (!pattern.defined() || pattern.dim() != 3)
    throw InputError(fmt::format("statsFromPattern: pattern must be [head, query, key], found {} dims",
                                 pattern.defined() ? pattern.dim() : 0));
  if (!at::isFloatingType(pattern.scalar_type()))
    throw InputError(fmt::format("statsFromPattern: pattern must be floating point, found {}",
                                 c10::toString(pattern.scalar_type())));
  if (queryOffset < 0)
    throw InputError(fmt::format("statsFromPattern: queryOffset must be >= 0, found {}", queryOffset));
  const int64_t heads = pattern.size(0), nq = pattern.size(1), nk = pattern.size(2);
  probe_detail::validateRequest(req, nk, "statsFromPattern");

  const auto cdt = pattern.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto fopt = pattern.options().dtype(cdt);
  const auto lopt = pattern.options().dtype(at::kLong);
  ProbeResult res = probe_detail::allocateResult(req, heads, nq, nk, fopt, lopt);

  // Row chunks bound the [head, rows, key] temporaries (~32M elements) for the --materialize path;
  // every statistic is row-local except the column sums, which add up over chunks.
  const int64_t rowBegin = std::clamp<int64_t>(req.queryStart - queryOffset, 0, nq);  // earlier rows skipped
  const int64_t chunk =
      chunkRows > 0 ? chunkRows : std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(1, heads * nk));
  const at::Tensor keyPos = at::arange(nk, lopt);  // [key]
  at::Tensor ind;                                  // [key] key-set indicator; duplicates count once
  if (!req.keySet.empty()) {
    ind = at::zeros({nk}, fopt);
    ind.index_fill_(0, indicesOn(req.keySet, pattern.device()), 1.0);
  }
  if (req.columnCounts) res.columnCounts = at::zeros({nk}, lopt);
  at::Tensor colKeys;  // [m] the requested column keys
  if (!req.columnKeys.empty()) colKeys = indicesOn(req.columnKeys, pattern.device());

  for (int64_t r0 = rowBegin; r0 < nq; r0 += chunk) {
    const int64_t r1 = std::min(r0 + chunk, nq);
    const at::Tensor p = pattern.slice(1, r0, r1).to(cdt);                    // [head, rows, key]
    const at::Tensor iAbs = at::arange(r0, r1, lopt) + queryOffset;           // [rows]
    const at::Tensor d = iAbs.unsqueeze(1) - keyPos.unsqueeze(0);             // [rows, key] i − j
    const at::Tensor rowNonEmpty = p.sum(at::IntArrayRef{0, 2}) > 0;          // [rows]
    if (req.columnSums || req.columnCounts || colKeys.defined()) {
      const at::Tensor inBand = (d >= req.bandMin).logical_and_(d <= req.bandMax);  // [rows, key]
      if (req.columnSums) res.columnSums.add_((p * inBand.unsqueeze(0).to(cdt)).sum(1));
      if (colKeys.defined())
        res.columnKeySums.add_((p.index_select(2, colKeys) * inBand.index_select(1, colKeys).unsqueeze(0).to(cdt)).sum(1));
      if (req.columnCounts)
        res.columnCounts.add_(inBand.logical_and_(d >= 0).logical_and_(rowNonEmpty.unsqueeze(1)).sum(0));
    }
    if (req.topK > 0 && nk > 0) {
      at::Tensor v, idx;  // [head, rows, min(k, nk)]
      if (req.topK == 1) {
        auto [mv, mi] = at::max(p, -1);  // first maximum, as the probe's tie rule
        v = mv.unsqueeze(-1);
        idx = mi.unsqueeze(-1);
      } else {
        std::tie(v, idx) = at::topk(p, std::min<int64_t>(req.topK, nk), -1);
      }
      const int64_t kk = v.size(-1);
      res.topValues.slice(1, r0, r1).narrow(-1, 0, kk).copy_(v);
      res.topIndices.slice(1, r0, r1).narrow(-1, 0, kk).copy_(idx.masked_fill(v <= 0, -1));
    }
    if (req.distance) res.distance.slice(1, r0, r1).copy_((p * d.to(cdt)).sum(-1));
    if (req.window > 0) res.windowed.slice(1, r0, r1).copy_((p * d.clamp_max(req.window).to(cdt)).sum(-1));
    if (ind.defined()) res.keySetMass.slice(1, r0, r1).copy_(at::matmul(p, ind));
    if (req.entropy) res.entropy.slice(1, r0, r1).copy_(-at::xlogy(p, p).sum(-1));
  }
  return res;
}

ProbeResult statsFromPattern(const at::Tensor& pattern, const ProbeRequest& req, int64_t queryOffset) {
  ProbeResult res = probe_detail::statsFromPatternChunked(pattern, probe_detail::withRowDistances(req), queryOffset, 0);
  probe_detail::sumRowDistances(req, res);
  return res;
}

}  // namespace mechscope
