// waadFaiToResult: WAAD/FAI as the documented JSON keys (docs/cli.md) and HDF5 arrays.
#include <ATen/ATen.h>

#include <cmath>

#include <fmt/format.h>

#include "analysis/waad_fai/waad_fai.hpp"

namespace mechscope::analysis {

namespace {

nlohmann::json headList(const std::vector<HeadRef>& hs) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& [l, h] : hs) a.push_back({l, h});
  return a;
}

at::Tensor headArray(const std::vector<HeadRef>& hs) {
  std::vector<int64_t> f;
  for (const auto& [l, h] : hs) {
    f.push_back(l);
    f.push_back(h);
  }
  return at::tensor(at::ArrayRef<int64_t>(f), at::kLong).view({-1, 2});  // [head, (layer, head)]
}

/// A number, or null where it is NaN (JSON has no NaN).
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json numbers(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(num(x));
  return a;
}

nlohmann::json matchJson(const PeakMatch& m) {
  const double events = static_cast<double>(m.events);
  return {{"rate", m.events > 0 ? num(m.hits / events) : nlohmann::json(nullptr)},
          {"shuffled", m.events > 0 ? num(m.expected / events) : nlohmann::json(nullptr)},
          {"hits", m.hits},
          {"events", m.events}};
}

}  // namespace

AnalysisResult waadFaiToResult(const WaadFaiResult& result, const WaadFaiOptions& options) {
  AnalysisResult r;
  r.name = "waad_fai";
  r.json["head_distance"] = tensorToJson(result.headDistance);
  r.json["local_heads"] = headList(result.localHeads);
  r.json["global_heads"] = headList(result.globalHeads);
  r.json["waad"] = result.waad;
  r.json["fai"] = result.fai;
  r.json["preplan_tokens"] = result.preplan;
  r.json["anchor_tokens"] = result.anchor;
  r.json["waad_peaks"] = result.waadPeaks;
  r.json["fai_peaks"] = result.faiPeaks;
  nlohmann::json ent = nlohmann::json::array(), lp = nlohmann::json::array();
  for (size_t b = 0; b < result.entropy.size(); ++b) {
    ent.push_back(numbers(result.entropy[b]));
    lp.push_back(numbers(result.logProb[b]));
  }
  r.json["entropy"] = ent;
  r.json["log_prob"] = lp;
  r.json["receiver_kurtosis"] = tensorToJson(result.receiverKurtosis);  // [layer, head], NaN (too few columns) as null
  r.json["receiver_heads"] = headList(result.receiverHeads);
  r.json["receiver_fai"] = result.receiverFai;
  r.json["receiver_fai_peaks"] = result.receiverFaiPeaks;
  const RhythmSummary& s = result.summary;
  r.json["rhythm"] = {{"entropy_mean", num(s.entropyMean)},
                      {"entropy_at_waad_peaks", num(s.entropyAtWaadPeaks)},
                      {"entropy_tokens", s.entropyTokens},
                      {"waad_peak_tokens", s.waadPeakTokens},
                      {"receiver_global_cooccurrence", matchJson(s.receiverGlobal)},
                      {"fai_after_waad", matchJson(s.faiAfterWaad)}};
  r.json["window"] = options.window;
  r.json["fai_horizon"] = {options.faiMin, options.faiMax == std::numeric_limits<int64_t>::max() ? nlohmann::json(nullptr)
                                                                                               : nlohmann::json(options.faiMax)};
  r.json["response_start"] = result.responseStarts;
  r.json["split_quantile"] = options.splitQuantile;
  r.json["receiver_top_k"] = options.receiverHeads;
  r.json["peak_lag"] = options.peakLag;
  r.json["layers"] = result.layers;
  r.addArray("head_distance", result.headDistance);
  r.addArray("local_heads", headArray(result.localHeads));
  r.addArray("global_heads", headArray(result.globalHeads));
  r.addArray("receiver_kurtosis", result.receiverKurtosis);
  if (!result.receiverHeads.empty()) r.addArray("receiver_heads", headArray(result.receiverHeads));
  for (size_t b = 0; b < result.waad.size(); ++b) {
    r.addArray(fmt::format("waad_{}", b), at::tensor(at::ArrayRef<double>(result.waad[b]), at::kDouble));
    r.addArray(fmt::format("fai_{}", b), at::tensor(at::ArrayRef<double>(result.fai[b]), at::kDouble));
    r.addArray(fmt::format("receiver_fai_{}", b), at::tensor(at::ArrayRef<double>(result.receiverFai[b]), at::kDouble));
    if (b < result.entropy.size()) {
      r.addArray(fmt::format("entropy_{}", b), at::tensor(at::ArrayRef<double>(result.entropy[b]), at::kDouble));
      r.addArray(fmt::format("log_prob_{}", b), at::tensor(at::ArrayRef<double>(result.logProb[b]), at::kDouble));
    }
  }
  return r;
}

}  // namespace mechscope::analysis
