#include "analysis/common/attention_stats.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {

void addProbeHooks(HookSet& hooks, const HookedTransformer& model, const ProbeRequest& request, const LayerStatsFn& onLayer,
                   const AttentionStatsOptions& options, const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const bool rotary = c.positional == PositionalKind::Rotary;
  const double scale = c.attentionScale();  // 1/√d_head, or query_pre_attn_scalar^−½ (Gemma)
  const double softcap = c.attnSoftcap;     // Gemma 2: scores soft-capped before the mask
  if (options.materialize) {
    hooks.add("blocks.*.attn.hook_pattern", [=](const at::Tensor& p, const HookContext& hc) -> std::optional<at::Tensor> {
      // p: [batch, head, query, key]; queries are the last rows of the keys
      const int64_t offset = p.size(3) - p.size(2);
      onLayer(hc.layer, statsFromPattern(p[0], request, offset));
      return std::nullopt;
    });
    return;
  }
  // gpt-oss: each layer's learned sink logits join the probe's row normalisers, as in the forward.
  std::vector<at::Tensor> sinks;
  for (const auto& L : model.weights().layers) sinks.push_back(L.sinks.defined() ? L.sinks.to(model.device()) : L.sinks);
  // q fires before k in every block, then (where the fused kernel gives them) attn.hook_lse, then hook_z: the layer's
  // q, k and normalisers wait in `pending` until the probe runs. A pass that computes attention probes at hook_z, so
  // that the forward's own normalisers (cuDNN on CUDA) spare the probe its first attention-sized call; a
  // queries-and-keys-only pass (no attention, no hook_z) probes at k.
  struct Pending {
    at::Tensor q, k, lse;  // [batch, pos, head, d_head], [batch, pos, kv_head, d_head], [batch, head, pos] fp32
  };
  auto pending = std::make_shared<Pending>();
  const bool attentionRuns = options.residPre == nullptr;
  const std::string qName = rotary ? "blocks.*.attn.hook_rot_q" : "blocks.*.attn.hook_q";
  const std::string kName = rotary ? "blocks.*.attn.hook_rot_k" : "blocks.*.attn.hook_k";
  auto probeLayer = [=, &c](int layer) {
    // k: the new positions only (callers probe uncached passes or decode through hook_pattern)
    ProbeInputs in;
    in.q = pending->q[0];  // [pos_q, head, d_head]
    in.k = pending->k[0];  // [pos_k, kv_head, d_head]
    in.scale = scale;
    in.queryOffset = in.k.size(0) - in.q.size(0);
    in.slidingWindow = c.windowOf(layer);  // the forward masks the same keys (per layer: Gemma 2/3)
    in.softcap = softcap;
    in.sinks = sinks.at(static_cast<size_t>(layer));  // [head] or undefined
    if (options.rowLse && static_cast<size_t>(layer) < options.rowLse->size()) in.rowLse = (*options.rowLse)[static_cast<size_t>(layer)];
    if (!in.rowLse.defined() && pending->lse.defined()) {
      in.rowLse = pending->lse[0];  // [head, pos]
      in.rowLseFromForward = true;
    }
    *pending = Pending{};
    onLayer(layer, probeAttention(in, request, options.tileQ, options.tileK, ctx));
  };
  hooks.add(qName, [pending](const at::Tensor& q, const HookContext&) -> std::optional<at::Tensor> {
    pending->q = q;
    return std::nullopt;
  });
  hooks.add(kName, [=](const at::Tensor& k, const HookContext& hc) -> std::optional<at::Tensor> {
    pending->k = k;
    if (!attentionRuns) probeLayer(hc.layer);
    return std::nullopt;
  });
  if (!attentionRuns) return;
  hooks.add("blocks.*.attn.hook_lse", [pending](const at::Tensor& lse, const HookContext&) -> std::optional<at::Tensor> {
    pending->lse = lse;
    return std::nullopt;
  });
  hooks.add("blocks.*.attn.hook_z", [=](const at::Tensor&, const HookContext& hc) -> std::optional<at::Tensor> {
    probeLayer(hc.layer);
    return std::nullopt;
  });
}

ForwardResult runAttentionStats(const HookedTransformer& model, const std::vector<int64_t>& ids, const ProbeRequest& request,
                                const LayerStatsFn& onLayer, const AttentionStatsOptions& options, const HookSet* extra,
                                const RunContext* ctx) {
  if (ids.empty()) throw InputError("attention statistics: the token sequence is empty");
  HookSet hooks;
  if (extra) hooks = *extra;
  ForwardOptions fo;
  const auto layers = static_cast<size_t>(model.config().nLayers);
  if (options.residPre) {
    if (options.materialize) throw InputError("attention statistics: kept residuals need the probe (not --materialize)");
    if (options.residPre->size() != layers)
      throw InputError(fmt::format("attention statistics: {} kept residuals for {} layers", options.residPre->size(), layers));
    hooks.add("blocks.*.hook_resid_pre", [kept = options.residPre](const at::Tensor&, const HookContext& hc) -> std::optional<at::Tensor> {
      return (*kept)[static_cast<size_t>(hc.layer)];  // [1, pos, d_model]
    });
    fo.queriesAndKeysOnly = true;
  }
  if (options.keepResidPre) {
    options.keepResidPre->assign(layers, at::Tensor());
    hooks.add("blocks.*.hook_resid_pre", [keep = options.keepResidPre](const at::Tensor& r, const HookContext& hc) -> std::optional<at::Tensor> {
      (*keep)[static_cast<size_t>(hc.layer)] = r;  // a reference: the forward makes each layer's residual anew
      return std::nullopt;
    });
  }
  addProbeHooks(hooks, model, request, onLayer, options, ctx);
  fo.logitsLastOnly = true;
  fo.path = options.materialize ? AttentionPath::Explicit : AttentionPath::Auto;  // fused (LibTorch ≥ 2) or chunked
  const at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).unsqueeze(0);  // [1, pos]
  return model.forward(tokens, fo, &hooks, ctx);
}

void addUniformHeadHooks(HookSet& hooks, const HookedTransformer& model, const std::vector<HeadRef>& heads) {
  const ModelConfig& c = model.config();
  for (const auto& [l, h] : heads) {
    if (l < 0 || l >= c.nLayers || h < 0 || h >= c.nHeads)
      throw InputError(fmt::format("head masking: head {}.{} does not exist (model has {} layers × {} heads)", l, h,
                                   c.nLayers, c.nHeads));
    const int head = h;
    hooks.add(hook::q(l), [head](const at::Tensor& q, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = q.clone();  // [batch, pos, head, d_head]
      out.select(2, head).zero_();
      return out;
    });
  }
}

std::vector<int64_t> topQuantilePositions(const std::vector<double>& values, double q, int64_t start) {
  std::vector<int64_t> idx;
  for (int64_t i = std::max<int64_t>(0, start); i < static_cast<int64_t>(values.size()); ++i) idx.push_back(i);
  const auto k = static_cast<size_t>(std::ceil(q * static_cast<double>(idx.size()) - 1e-9));
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return values[a] > values[b]; });
  idx.resize(std::min(k, idx.size()));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int64_t> peakPositions(const std::vector<double>& values, double percentile, int64_t start) {
  const int64_t n = static_cast<int64_t>(values.size());
  start = std::max<int64_t>(0, start);
  if (n - start < 1) return {};
  std::vector<double> sorted(values.begin() + start, values.end());
  std::sort(sorted.begin(), sorted.end());
  const double pos = percentile / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double threshold = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
  std::vector<int64_t> peaks;
  for (int64_t t = start; t < n; ++t) {
    const bool left = t == start || values[t] > values[t - 1];
    const bool right = t == n - 1 || values[t] >= values[t + 1];
    if (left && right && values[t] > threshold) peaks.push_back(t);
  }
  return peaks;
}

}  // namespace mechscope::analysis
