#include "analysis/waad_fai/waad_fai.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

std::vector<double> toVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).cpu().contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

WaadFaiResult runWaadFai(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows, const WaadFaiOptions& options,
                         const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int L = c.nLayers;
  const int64_t H = c.nHeads, R = options.responseStart;
  if (rows.empty()) throw InputError("waad-fai: no input sequence");
  if (options.window < 1) throw InputError(fmt::format("waad-fai: --window must be ≥ 1, found {}", options.window));
  if (options.faiMin < 0 || options.faiMax < options.faiMin)
    throw InputError(fmt::format("waad-fai: --fai-horizon {}:{} is not a range a:b with 0 ≤ a ≤ b", options.faiMin, options.faiMax));
  if (!(options.splitQuantile > 0 && options.splitQuantile <= 0.5))
    throw InputError(fmt::format("waad-fai: --split-quantile must be in (0, 0.5], found {}", options.splitQuantile));
  ProbeRequest req;
  req.distance = true;
  req.window = options.window;
  req.columnSums = true;
  req.columnCounts = true;
  req.bandMin = options.faiMin;
  req.bandMax = options.faiMax;
  req.queryStart = R;
  AttentionStatsOptions so;
  so.materialize = options.materialize;

  WaadFaiResult out;
  out.headDistance = at::zeros({L, H}, at::kDouble);  // [layer, head]
  std::vector<at::Tensor> windowed, colMean;             // per row: [layer, head, pos]
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t n = static_cast<int64_t>(rows[r].size());
    if (R < 0 || R >= n) throw InputError(fmt::format("waad-fai: --response-start {} is outside row {} of {} tokens", R, r, n));
    at::Tensor win = at::zeros({L, H, n}, at::kFloat);   // [layer, head, pos]
    at::Tensor fai = at::zeros({L, H, n}, at::kFloat);   // [layer, head, pos]
    runAttentionStats(
        model, rows[r], req,
        [&](int l, const ProbeResult& s) {
          out.headDistance[l] += s.distance.narrow(1, R, n - R).to(at::kDouble).sum(1).cpu() / static_cast<double>(n - R);
          win[l] = s.windowed.to(at::kFloat).cpu();
          const at::Tensor counts = s.columnCounts.to(at::kFloat).cpu();  // [pos]
          fai[l] = at::where(counts > 0, s.columnSums.to(at::kFloat).cpu() / counts.clamp_min(1), at::zeros_like(counts));
          if (ctx) ctx->step(l + 1, L, fmt::format("waad-fai row {}", r));
        },
        so, nullptr, ctx);
    windowed.push_back(win);
    colMean.push_back(fai);
  }
  out.headDistance /= static_cast<double>(rows.size());

  // Head split over the competing layers.
  if (options.middleLayers) {
    std::set<int> s;
    const double a = std::floor(L / 3.0), e = std::floor(2.0 * L / 3.0);
    for (int i = 0; i < 5; ++i) s.insert(static_cast<int>(std::lround(a + (e - a) * i / 4.0)));
    out.layers.assign(s.begin(), s.end());
  } else {
    for (int l = 0; l < L; ++l) out.layers.push_back(l);
  }
  std::vector<std::pair<double, std::pair<int, int>>> d;
  for (int l : out.layers)
    for (int h = 0; h < H; ++h) d.push_back({out.headDistance[l][h].item<double>(), {l, h}});
  std::stable_sort(d.begin(), d.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  const auto k = std::max<size_t>(1, static_cast<size_t>(std::lround(options.splitQuantile * static_cast<double>(d.size()))));
  for (size_t i = 0; i < k; ++i) out.localHeads.push_back(d[i].second);
  for (size_t i = d.size() - k; i < d.size(); ++i) out.globalHeads.push_back(d[i].second);
  std::sort(out.localHeads.begin(), out.localHeads.end());
  std::sort(out.globalHeads.begin(), out.globalHeads.end());

  auto headMean = [](const at::Tensor& perHead, const std::vector<std::pair<int, int>>& heads) {
    at::Tensor acc = at::zeros({perHead.size(2)}, at::kDouble);  // [pos]
    for (const auto& [l, h] : heads) acc += perHead[l][h].to(at::kDouble);
    return acc / static_cast<double>(heads.size());
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto waad = toVector(headMean(windowed[r], out.localHeads));
    const auto fai = toVector(headMean(colMean[r], out.globalHeads));
    const int64_t n = static_cast<int64_t>(waad.size());
    std::vector<double> delta(static_cast<size_t>(n), 0.0);
    for (int64_t t = R; t + 1 < n; ++t) delta[static_cast<size_t>(t)] = std::abs(waad[static_cast<size_t>(t)] - waad[static_cast<size_t>(t + 1)]);
    std::vector<double> deltaR(delta.begin(), delta.end() - (n > R ? 1 : 0));  // Δ_t defined for t ≤ n − 2
    out.preplan.push_back(topQuantilePositions(deltaR, options.tokenQuantile, R));
    out.anchor.push_back(topQuantilePositions(fai, options.tokenQuantile, R));
    out.waadPeaks.push_back(peakPositions(waad, options.peakPercentile, R));
    out.faiPeaks.push_back(peakPositions(fai, options.peakPercentile, R));
    out.waad.push_back(waad);
    out.fai.push_back(fai);
  }
  return out;
}

AnalysisResult waadFaiToResult(const WaadFaiResult& result, const WaadFaiOptions& options) {
  AnalysisResult r;
  r.name = "waad_fai";
  auto heads = [](const std::vector<std::pair<int, int>>& hs) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& [l, h] : hs) a.push_back({l, h});
    return a;
  };
  r.json["head_distance"] = tensorToJson(result.headDistance);
  r.json["local_heads"] = heads(result.localHeads);
  r.json["global_heads"] = heads(result.globalHeads);
  r.json["waad"] = result.waad;
  r.json["fai"] = result.fai;
  r.json["preplan_tokens"] = result.preplan;
  r.json["anchor_tokens"] = result.anchor;
  r.json["waad_peaks"] = result.waadPeaks;
  r.json["fai_peaks"] = result.faiPeaks;
  r.json["window"] = options.window;
  r.json["fai_horizon"] = {options.faiMin, options.faiMax == std::numeric_limits<int64_t>::max() ? nlohmann::json(nullptr)
                                                                                               : nlohmann::json(options.faiMax)};
  r.json["response_start"] = options.responseStart;
  r.json["split_quantile"] = options.splitQuantile;
  r.json["layers"] = result.layers;
  r.addArray("head_distance", result.headDistance);
  auto pairs = [](const std::vector<std::pair<int, int>>& hs) {
    std::vector<int64_t> f;
    for (const auto& [l, h] : hs) {
      f.push_back(l);
      f.push_back(h);
    }
    return at::tensor(at::ArrayRef<int64_t>(f), at::kLong).view({-1, 2});  // [head, (layer, head)]
  };
  r.addArray("local_heads", pairs(result.localHeads));
  r.addArray("global_heads", pairs(result.globalHeads));
  for (size_t b = 0; b < result.waad.size(); ++b) {
    r.addArray(fmt::format("waad_{}", b), at::tensor(at::ArrayRef<double>(result.waad[b]), at::kDouble));
    r.addArray(fmt::format("fai_{}", b), at::tensor(at::ArrayRef<double>(result.fai[b]), at::kDouble));
  }
  return r;
}

}  // namespace mechscope::analysis
