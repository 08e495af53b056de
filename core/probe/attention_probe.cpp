#include "core/probe/attention_probe.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "core/probe/probe_internal.hpp"

namespace mechscope {

ProbeResult probeAttention(const ProbeInputs& in, const ProbeRequest& req, int64_t tileQ, int64_t tileK,
                           const RunContext* ctx) {
  RECORD_USER_SCOPE("probe::attention");
  const probe_detail::ProbeSetup setup = probe_detail::prepareProbe(in, req, tileQ, tileK);
  const bool needsTiles = req.columnSums || req.distance || req.distanceTotal || req.window > 0 || !req.keySet.empty() || req.topK > 0 ||
                          req.entropy;
  const bool momentsApply = probe_detail::momentsApply(req, setup);
  ProbeAlgorithm algorithm = req.algorithm;
  if (algorithm == ProbeAlgorithm::Auto) {
    // On CUDA by default since its H200 check (docs/attention-probe.md, "Moments"); MECHSCOPE_PROBE_MOMENTS=0 turns
    // it off, "all" turns it on for every device (CPU checks of the analyses on top of it; slower there).
    const bool off = envEquals("MECHSCOPE_PROBE_MOMENTS", "0");
    const bool everywhere = envEquals("MECHSCOPE_PROBE_MOMENTS", "all");
    // On CUDA only where fused kernels give its log-sum-exps (bf16/fp16, d_head + 8 ≤ 256): elsewhere its tiled
    // passes cost more than LseFirst's.
    const bool momentsOn = !off && (everywhere || probe_detail::momentsFused(in, setup));
    if (momentsOn && momentsApply) algorithm = ProbeAlgorithm::Moments;
    else algorithm = (!needsTiles || in.q.is_cuda()) ? ProbeAlgorithm::LseFirst : ProbeAlgorithm::Scan;
  }
  if (req.entropy) algorithm = ProbeAlgorithm::Scan;  // the log domain keeps a peaked row's entropy exact
  if (algorithm == ProbeAlgorithm::Moments && !momentsApply) algorithm = ProbeAlgorithm::LseFirst;
  if (algorithm == ProbeAlgorithm::Moments) return probe_detail::probeMoments(in, req, setup, ctx);  // sums its own
  const ProbeRequest rows = probe_detail::withRowDistances(req);
  ProbeResult res = algorithm == ProbeAlgorithm::LseFirst ? probe_detail::probeLseFirst(in, rows, setup, ctx)
                                                          : probe_detail::probeScan(in, rows, setup, ctx);
  probe_detail::sumRowDistances(req, res);
  return res;
}

at::Tensor probeColumnCounts(const ProbeRequest& request, int64_t nQueries, int64_t nKeys, int64_t queryOffset, at::Device device) {
  return probe_detail::columnCounts(request, nQueries, nKeys, queryOffset, /*firstNonEmptyRow=*/0, device);
}

}  // namespace mechscope
