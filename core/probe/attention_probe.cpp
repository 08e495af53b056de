#include "core/probe/attention_probe.hpp"

#include <ATen/ATen.h>
#include "core/probe/probe_internal.hpp"

namespace mechscope {

ProbeResult probeAttention(const ProbeInputs& in, const ProbeRequest& req, int64_t tileQ, int64_t tileK,
                           const RunContext* ctx) {
  const probe_detail::ProbeSetup setup = probe_detail::prepareProbe(in, req, tileQ, tileK);
  const bool needsTiles = req.columnSums || req.distance || req.window > 0 || !req.keySet.empty() || req.topK > 0 ||
                          req.entropy;
  ProbeAlgorithm algorithm = req.algorithm;
  if (algorithm == ProbeAlgorithm::Auto)
    algorithm = (!needsTiles || in.q.is_cuda()) ? ProbeAlgorithm::LseFirst : ProbeAlgorithm::Scan;
  if (req.entropy) algorithm = ProbeAlgorithm::Scan;  // the log domain keeps a peaked row's entropy exact
  return algorithm == ProbeAlgorithm::LseFirst ? probe_detail::probeLseFirst(in, req, setup, ctx)
                                               : probe_detail::probeScan(in, req, setup, ctx);
}

}  // namespace mechscope
