#include "core/probe/probe_internal.hpp"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/common/errors.hpp"

namespace mechscope::probe_detail {

void validateRequest(const ProbeRequest& req, int64_t nKeys, const std::string& who) {
  if (req.topK < 0) throw InputError(fmt::format("{}: topK must be >= 0, found {}", who, req.topK));
  if (req.window < 0) throw InputError(fmt::format("{}: window must be >= 0, found {}", who, req.window));
  if (req.bandMin > req.bandMax)
    throw InputError(fmt::format("{}: column band [{}, {}] is empty", who, req.bandMin, req.bandMax));
  for (int64_t j : req.keySet)
    if (j < 0 || j >= nKeys)
      throw InputError(fmt::format("{}: key-set position {} outside the {} keys", who, j, nKeys));
  for (int64_t j : req.columnKeys)
    if (j < 0 || j >= nKeys)
      throw InputError(fmt::format("{}: column key {} outside the {} keys", who, j, nKeys));
}

ProbeResult allocateResult(const ProbeRequest& req, int64_t heads, int64_t nq, int64_t nk,
                           const at::TensorOptions& fopt, const at::TensorOptions& lopt, bool zeroColumnSums) {
  ProbeResult r;
  r.nQueries = nq;
  r.nKeys = nk;
  if (req.columnSums) r.columnSums = zeroColumnSums ? at::zeros({heads, nk}, fopt) : at::empty({heads, nk}, fopt);
  if (!req.columnKeys.empty()) r.columnKeySums = at::zeros({heads, static_cast<int64_t>(req.columnKeys.size())}, fopt);
  if (req.topK > 0) {
    r.topValues = at::zeros({heads, nq, req.topK}, fopt);
    r.topIndices = at::full({heads, nq, req.topK}, -1, lopt);
  }
  if (req.distance) r.distance = at::zeros({heads, nq}, fopt);
  if (req.window > 0) r.windowed = at::zeros({heads, nq}, fopt);
  if (!req.keySet.empty()) r.keySetMass = at::zeros({heads, nq}, fopt);
  if (req.entropy) r.entropy = at::zeros({heads, nq}, fopt);
  return r;
}

ProbeRequest withRowDistances(const ProbeRequest& req) {
  ProbeRequest r = req;
  if (r.distanceTotal) r.distance = true;
  return r;
}

void sumRowDistances(const ProbeRequest& req, ProbeResult& res) {
  if (!req.distanceTotal) return;
  res.distanceTotal = res.distance.to(at::kDouble).sum(1);  // [head]
  if (!req.distance) res.distance = at::Tensor();
}

at::Tensor columnCounts(const ProbeRequest& req, int64_t nq, int64_t nk, int64_t offset, int64_t firstNonEmptyRow,
                        at::Device device) {
  const int64_t lastRow = offset + nq - 1;
  // Clip every bound to the positions that exist so the int64 arithmetic below cannot overflow.
  const int64_t span = nk + nq + offset + 1;
  const int64_t rowFloor = std::min(std::max({req.queryStart, offset, firstNonEmptyRow}), lastRow + 1);
  const int64_t bandLo = std::clamp<int64_t>(req.bandMin, 0, span);
  const int64_t bandHi = std::clamp<int64_t>(req.bandMax, -span, span);
  const at::Tensor j = at::arange(nk, at::TensorOptions().dtype(at::kLong).device(device));  // [nk]
  at::Tensor lo = (j + bandLo).clamp_min(rowFloor);
  at::Tensor hi = (j + bandHi).clamp_max(lastRow);
  return (hi - lo + 1).clamp_min(0);
}

}  // namespace mechscope::probe_detail
