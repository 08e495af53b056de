// statsFromPattern: the probe's statistics from a materialised [head, query, key] pattern. Plain
// whole-matrix at:: ops, O(heads·n²) memory: the reference the tiled path is tested against.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/common/errors.hpp"
#include "core/probe/attention_probe.hpp"
#include "core/probe/probe_internal.hpp"

namespace mechscope {

ProbeResult statsFromPattern(const at::Tensor& pattern, const ProbeRequest& req, int64_t queryOffset) {
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

  const at::Tensor iAbs = at::arange(nq, lopt) + queryOffset;       // [query]
  const at::Tensor keyPos = at::arange(nk, lopt);                   // [key]
  const at::Tensor d = iAbs.unsqueeze(1) - keyPos.unsqueeze(0);     // [query, key] i − j
  const at::Tensor rowKept = iAbs >= req.queryStart;                // [query]
  at::Tensor p = pattern.to(cdt) * rowKept.unsqueeze(0).unsqueeze(-1).to(cdt);  // [head, query, key]
  const at::Tensor rowNonEmpty = p.sum(at::IntArrayRef{0, 2}) > 0;                // [query]

  const at::Tensor inBand = (d >= req.bandMin).logical_and_(d <= req.bandMax);  // [query, key]
  if (req.columnSums) res.columnSums = (p * inBand.unsqueeze(0).to(cdt)).sum(1);
  if (req.columnCounts)
    res.columnCounts = inBand.logical_and(d >= 0).logical_and_(rowNonEmpty.unsqueeze(1)).sum(0).to(at::kLong);
  if (req.topK > 0 && nk > 0) {
    at::Tensor v, idx;  // [head, query, min(k, nk)]
    if (req.topK == 1) {
      auto [mv, mi] = at::max(p, -1);  // first maximum, as the probe's tie rule
      v = mv.unsqueeze(-1);
      idx = mi.unsqueeze(-1);
    } else {
      std::tie(v, idx) = at::topk(p, std::min<int64_t>(req.topK, nk), -1);
    }
    const int64_t kk = v.size(-1);
    res.topValues.narrow(-1, 0, kk).copy_(v);
    res.topIndices.narrow(-1, 0, kk).copy_(idx.masked_fill(v <= 0, -1));
  }
  if (req.distance) res.distance = (p * d.to(cdt)).sum(-1);
  if (req.window > 0) res.windowed = (p * d.clamp_max(req.window).to(cdt)).sum(-1);
  if (!req.keySet.empty()) {
    at::Tensor ind = at::zeros({nk}, fopt);  // duplicates count once
    ind.index_fill_(0, at::tensor(req.keySet, at::TensorOptions().dtype(at::kLong)).to(pattern.device()), 1.0);
    res.keySetMass = at::matmul(p, ind);
  }
  if (req.entropy) res.entropy = -at::xlogy(p, p).sum(-1);
  return res;
}

}  // namespace mechscope
