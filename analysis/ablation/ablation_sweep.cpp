#include "analysis/ablation/ablation_sweep.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

AblationSweepResult ablationHeadSweep(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct,
                                      const at::Tensor& incorrect, const AblationParams& base, const RunContext* ctx) {
  if (!tokens.defined() || tokens.dim() != 2) throw InputError("ablation sweep: prompts must be a [batch, pos] token batch");
  if (correct.numel() != tokens.size(0) || incorrect.numel() != tokens.size(0))
    throw InputError(fmt::format("ablation sweep: {} prompts need {} correct and incorrect answer ids", tokens.size(0), tokens.size(0)));
  if (base.knockout) throw InputError("ablation sweep: every head is ablated alone; knockout (all heads but a set) does not apply");
  const int L = m.config().nLayers, H = m.config().nHeads;
  const long long total = static_cast<long long>(L) * H;
  if (ctx) ctx->step(0, total, "head sweep");
  AblationParams p = base;
  p.heads = {{0, 0}};
  p.headRoles.clear();
  const ActivationCache reference = ablationReference(m, p, ctx);  // once for every head (mean, resample)
  AblationSweepResult r;
  r.perPromptBefore = ablationLogitDiff(m, tokens, correct, incorrect, nullptr, ctx);
  r.metricBefore = ablationMetric(r.perPromptBefore);
  r.perPromptAfter = at::zeros({L, H, tokens.size(0)}, at::kFloat);
  r.metricAfter = at::zeros({L, H}, at::kDouble);
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      if (ctx) ctx->step(static_cast<long long>(l) * H + h, total, "head sweep");
      p.heads = {{l, h}};
      const HookSet hooks = ablationHooks(m, tokens, p, reference);
      const at::Tensor after = ablationLogitDiff(m, tokens, correct, incorrect, &hooks, ctx);  // [batch]
      r.perPromptAfter[l][h].copy_(after);
      r.metricAfter[l][h] = ablationMetric(after);
    }
  if (ctx) ctx->step(total, total, "head sweep");
  return r;
}

AblationSweepResult combineAblationSweeps(const std::vector<AblationSweepResult>& parts, const std::vector<PatchGroup>& groups) {
  if (groups.empty() || parts.size() != groups.size()) throw Error("ablation sweep: one result per prompt group expected");
  if (parts.size() == 1) return parts[0];
  const at::Tensor order = groupsToDatasetOrder(groups);  // [prompts]
  std::vector<at::Tensor> before, after;
  for (const auto& part : parts) {
    before.push_back(part.perPromptBefore);
    after.push_back(part.perPromptAfter);
  }
  AblationSweepResult r;
  r.perPromptBefore = at::cat(before).index_select(0, order);    // [prompts]
  r.perPromptAfter = at::cat(after, 2).index_select(2, order);   // [layer, head, prompts]
  r.metricBefore = ablationMetric(r.perPromptBefore);
  const int64_t L = r.perPromptAfter.size(0), H = r.perPromptAfter.size(1);
  r.metricAfter = at::zeros({L, H}, at::kDouble);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t h = 0; h < H; ++h) r.metricAfter[l][h] = ablationMetric(r.perPromptAfter[l][h]);  // as ablate's combined metric
  return r;
}

std::vector<AblationSweepDrop> largestAblationDrops(const AblationSweepResult& r, int top) {
  std::vector<AblationSweepDrop> all;
  const at::Tensor a = r.metricAfter.to(at::kDouble).contiguous();
  for (int64_t l = 0; l < a.size(0); ++l)
    for (int64_t h = 0; h < a.size(1); ++h) {
      const double v = a[l][h].item<double>();
      all.push_back({{static_cast<int>(l), static_cast<int>(h)}, v, r.metricBefore - v});
    }
  std::stable_sort(all.begin(), all.end(), [](const AblationSweepDrop& x, const AblationSweepDrop& y) { return x.drop > y.drop; });
  if (top >= 0 && static_cast<size_t>(top) < all.size()) all.resize(static_cast<size_t>(top));
  return all;
}

void putAblationSweep(AnalysisResult& out, const AblationSweepResult& r, int top) {
  out.json["metric"] = "logit_diff";
  out.json["metric_before"] = r.metricBefore;
  out.json["sweep"] = tensorToJson(r.metricAfter);
  out.json["layout"] = "[layer][head]";
  out.json["top_drops"] = nlohmann::json::array();
  for (const auto& d : largestAblationDrops(r, top))
    out.json["top_drops"].push_back({{"head", toString(d.head)}, {"metric_after", d.metricAfter}, {"drop", d.drop}});
  out.addArray("sweep", r.metricAfter);
  out.addArray("sweep_per_prompt", r.perPromptAfter);
  out.addArray("per_prompt_before", r.perPromptBefore);
}

}  // namespace mechscope::analysis
