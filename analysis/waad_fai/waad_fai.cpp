#include "analysis/waad_fai/waad_fai.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "analysis/common/final_norm.hpp"
#include "core/common/device_indices.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {

namespace {

using Heads = std::vector<HeadRef>;

std::vector<double> toVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).cpu().contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

/// Mean over `heads` of perHead [layer, head, pos] (on any device) → [pos] (zeros when there is no head): one gather and
/// one sum, not a few ops per head (a hundred heads and more on a GPU, where each op is a launch).
std::vector<double> headMean(const at::Tensor& perHead, const Heads& heads) {
  if (heads.empty()) return std::vector<double>(static_cast<size_t>(perHead.size(2)), 0.0);
  std::vector<int64_t> flat;  // row l·H + h of perHead viewed as [layer·head, pos]
  for (const auto& [l, h] : heads) flat.push_back(l * perHead.size(1) + h);
  const at::Tensor rows = perHead.reshape({-1, perHead.size(2)}).index_select(0, indicesOn(flat, perHead.device()));  // [heads, pos]
  return toVector(rows.to(at::kDouble).sum(0) / static_cast<double>(heads.size()));
}

void validate(const WaadFaiOptions& o, const std::vector<std::vector<int64_t>>& rows) {
  if (rows.empty()) throw InputError("waad-fai: no input sequence");
  if (o.window < 1) throw InputError(fmt::format("waad-fai: --window must be ≥ 1, found {}", o.window));
  if (o.faiMin < 0 || o.faiMax < o.faiMin)
    throw InputError(fmt::format("waad-fai: --fai-horizon {}:{} is not a range a:b with 0 ≤ a ≤ b", o.faiMin, o.faiMax));
  if (!(o.splitQuantile > 0 && o.splitQuantile <= 0.5))
    throw InputError(fmt::format("waad-fai: --split-quantile must be in (0, 0.5], found {}", o.splitQuantile));
  if (o.receiverHeads < 0) throw InputError(fmt::format("waad-fai: --receiver-heads must be ≥ 0, found {}", o.receiverHeads));
  if (o.peakLag < 0) throw InputError(fmt::format("waad-fai: --peak-lag must be ≥ 0, found {}", o.peakLag));
  if (!o.responseStarts.empty() && o.responseStarts.size() != rows.size())
    throw InputError(fmt::format("waad-fai: --response-start gives {} values for {} rows (give one, or one per row)",
                                 o.responseStarts.size(), rows.size()));
}

}  // namespace

WaadFaiResult runWaadFai(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows, const WaadFaiOptions& options,
                         const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int L = c.nLayers;
  const int64_t H = c.nHeads;
  validate(options, rows);

  WaadFaiResult out;
  out.headDistance = at::zeros({L, H}, at::kDouble);  // [layer, head]
  std::vector<at::Tensor> windowed, colMean;          // per row: [layer, head, pos]
  std::vector<at::Tensor> kurtosis;                   // per row: [layer, head] of the column means over used columns
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t n = static_cast<int64_t>(rows[r].size());
    const int64_t R = options.responseStarts.empty() ? options.responseStart : options.responseStarts[r];
    if (R < 0 || R >= n) throw InputError(fmt::format("waad-fai: --response-start {} is outside row {} of {} tokens", R, r, n));
    out.responseStarts.push_back(R);
    ProbeRequest req;
    req.distanceTotal = true;  // only each head's mean over the response is read
    req.window = options.window;
    req.columnSums = true;
    req.bandMin = options.faiMin;
    req.bandMax = options.faiMax;
    req.queryStart = R;
    AttentionStatsOptions so;
    so.materialize = options.materialize;
    // Per-layer results stay on the model's device until the pass ends: no host copy (and stream sync) per layer.
    const auto dev = at::TensorOptions().device(model.device());
    at::Tensor win = at::zeros({L, H, n}, dev.dtype(at::kFloat));    // [layer, head, pos]
    at::Tensor fai = at::zeros({L, H, n}, dev.dtype(at::kFloat));    // [layer, head, pos]
    at::Tensor dist = at::zeros({L, H}, dev.dtype(at::kDouble));     // [layer, head]
    // The horizon's row counts are geometry, the same in every layer: made once here, not by the probe per layer.
    const at::Tensor counts = probeColumnCounts(req, n, n, 0, model.device());  // [pos] rows in each column's horizon
    const at::Tensor perCount = at::where(counts > 0, 1.0 / counts.to(at::kDouble).clamp_min(1),
                                          at::zeros({n}, dev.dtype(at::kDouble)));  // [pos] fp64 1 / count (0 where empty)
    HookSet extra;
    if (options.predictions)
      extra.add(hook::residPost(L - 1), [&](const at::Tensor& h, const HookContext&) -> std::optional<at::Tensor> {
        const auto p = tokenPredictions(model, applyFinalNorm(model, h[0]), rows[r]);  // h: [batch, pos, d_model]
        out.entropy.push_back(p.entropy);
        out.logProb.push_back(p.logProb);
        return std::nullopt;
      });
    runAttentionStats(
        model, rows[r], req,
        [&](int l, const ProbeResult& s) {
          RECORD_USER_SCOPE("waad_fai::layer_results");
          dist[l].copy_(s.distanceTotal);  // rows before R add 0
          win[l].copy_(s.windowed);
          at::Tensor faiRow = fai[l];  // [head, pos]
          at::mul_out(faiRow, s.columnSums.to(fai.device()), perCount);  // the mean in fp64, rounded once to fp32
          if (ctx) ctx->step(l + 1, L, fmt::format("waad-fai row {}", r));
        },
        so, &extra, ctx);
    out.headDistance += dist.cpu() / static_cast<double>(n - R);
    // win and fai stay on the device: the host reads head means [pos] and each head's kurtosis, not [layer, head, pos].
    // Receiver heads' columns: response positions whose horizon T(s) ∩ {t ≥ R} is non-empty.
    const at::Tensor used = at::nonzero(counts.slice(0, R, n) > 0).squeeze(1) + R;  // [m] positions
    kurtosis.push_back(excessKurtosis(fai.index_select(2, used)).cpu());                 // [layer, head]
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
  RECORD_USER_SCOPE("waad_fai::summary");
  // Host tensors read through accessors: an indexing op per head (select, select, item) costs the host microseconds each,
  // a few thousand of them per run.
  const auto distance = out.headDistance.accessor<double, 2>();  // [layer, head]
  std::vector<std::pair<double, HeadRef>> d;
  for (int l : out.layers)
    for (int h = 0; h < H; ++h) d.push_back({distance[l][h], {l, h}});
  std::stable_sort(d.begin(), d.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  const auto k = std::max<size_t>(1, static_cast<size_t>(std::lround(options.splitQuantile * static_cast<double>(d.size()))));
  for (size_t i = 0; i < k; ++i) out.localHeads.push_back(d[i].second);
  for (size_t i = d.size() - k; i < d.size(); ++i) out.globalHeads.push_back(d[i].second);
  std::sort(out.localHeads.begin(), out.localHeads.end());
  std::sort(out.globalHeads.begin(), out.globalHeads.end());

  // Receiver heads (Bogdan et al. 2025): per row and head the excess kurtosis of the column means over
  // response columns with a non-empty horizon, averaged over rows; the top k over every layer.
  out.receiverKurtosis = at::zeros({L, H}, at::kDouble);  // [layer, head]
  auto receiver = out.receiverKurtosis.accessor<double, 2>();
  std::vector<at::TensorAccessor<double, 2>> rowKurtosis;  // per row: [layer, head]
  for (at::Tensor& k : kurtosis) rowKurtosis.push_back((k = k.to(at::kDouble).contiguous()).accessor<double, 2>());
  std::vector<std::pair<double, HeadRef>> kurt;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      double sum = 0;
      int used = 0;
      for (size_t r = 0; r < rows.size(); ++r) {
        const double kr = rowKurtosis[r][l][h];
        if (std::isfinite(kr)) {
          sum += kr;
          ++used;
        }
      }
      const double mean = used > 0 ? sum / used : std::numeric_limits<double>::quiet_NaN();
      receiver[l][h] = mean;
      if (std::isfinite(mean)) kurt.push_back({mean, {l, h}});
    }
  std::stable_sort(kurt.begin(), kurt.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  for (size_t i = 0; i < std::min(kurt.size(), static_cast<size_t>(options.receiverHeads)); ++i) out.receiverHeads.push_back(kurt[i].second);

  RhythmSummary& sum = out.summary;
  double entAll = 0, entPeaks = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t R = out.responseStarts[r];
    const auto waad = headMean(windowed[r], out.localHeads);
    const auto fai = headMean(colMean[r], out.globalHeads);
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
    out.receiverFai.push_back(headMean(colMean[r], out.receiverHeads));
    out.receiverFaiPeaks.push_back(out.receiverHeads.empty() ? std::vector<int64_t>{}
                                                             : peakPositions(out.receiverFai.back(), options.peakPercentile, R));

    // Table 2, pooled over rows.
    if (options.predictions) {
      const auto& ent = out.entropy[r];
      for (int64_t t = std::max<int64_t>(R, 1); t < n; ++t) {
        entAll += ent[static_cast<size_t>(t)];
        ++sum.entropyTokens;
      }
      for (int64_t t : out.waadPeaks.back())
        if (t >= 1) {
          entPeaks += ent[static_cast<size_t>(t)];
          ++sum.waadPeakTokens;
        }
    }
    const PeakMatch co = peakCoOccurrence(out.receiverFaiPeaks.back(), out.faiPeaks.back(), n - R);
    const PeakMatch after = faiAfterWaad(out.waadPeaks.back(), out.faiPeaks.back(), options.peakLag, R, n - 1);
    sum.receiverGlobal.hits += co.hits;
    sum.receiverGlobal.expected += co.expected;
    sum.receiverGlobal.events += co.events;
    sum.faiAfterWaad.hits += after.hits;
    sum.faiAfterWaad.expected += after.expected;
    sum.faiAfterWaad.events += after.events;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  sum.entropyMean = sum.entropyTokens > 0 ? entAll / static_cast<double>(sum.entropyTokens) : nan;
  sum.entropyAtWaadPeaks = sum.waadPeakTokens > 0 ? entPeaks / static_cast<double>(sum.waadPeakTokens) : nan;
  return out;
}

}  // namespace mechscope::analysis
