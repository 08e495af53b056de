#pragma once
// Ablation head sweep: every head of the model ablated alone, with the hooks of ablationHooks (so zero,
// mean, resample, uniform and force mean exactly what `ablate` means) and the metric of `ablate`. The
// CLI's `ablate --sweep` and the GUI's interactive ablation sweep (Patching panel) both run it.
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/patch_types.hpp"

namespace mechscope::analysis {

/// The metric with each head ablated alone, and without ablation.
struct AblationSweepResult {
  at::Tensor metricAfter;     ///< [layer, head] fp64: mean logit difference with that head ablated alone
  at::Tensor perPromptAfter;  ///< [layer, head, batch] fp32
  double metricBefore = 0;    ///< mean logit difference without ablation
  at::Tensor perPromptBefore; ///< [batch] fp32
};

/// For every head (l, h): `ablate(model, tokens, correct, incorrect, base with heads = {(l, h)})`'s
/// metricAfter and per-prompt values, one hooked forward per head (the reference run of mean and resample
/// ablation is made once). `base.heads` and `base.headRoles` are ignored; knockout is an InputError (a
/// sweep ablates one head, not all but one). Progress per head ("head sweep", layers × heads steps)
/// through `ctx`, which may cancel between heads. tokens [batch, pos], correct/incorrect [batch].
AblationSweepResult ablationHeadSweep(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                                      const at::Tensor& incorrect, const AblationParams& base, const RunContext* ctx = nullptr);

/// One sweep over prompts of several token lengths from the groups' sweeps (one per group, in order):
/// per-prompt values in dataset order, means over every prompt (as combineAblationResults).
AblationSweepResult combineAblationSweeps(const std::vector<AblationSweepResult>& parts, const std::vector<PatchGroup>& groups);

/// A sweep's heads sorted by their drop (metric before − metric after), largest first: the first `top`.
struct AblationSweepDrop {
  HeadRef head;
  double metricAfter = 0, drop = 0;
};
std::vector<AblationSweepDrop> largestAblationDrops(const AblationSweepResult& r, int top);

/// Writes a sweep into `out`: "metric" ("logit_diff"), "metric_before", "sweep" [layer][head] (the
/// metric after), "layout" ("[layer][head]"), "top_drops" [{"head", "metric_after", "drop"}] (the `top`
/// largest drops); arrays "sweep" [L, H], "sweep_per_prompt" [L, H, prompts] and "per_prompt_before".
void putAblationSweep(AnalysisResult& out, const AblationSweepResult& r, int top = 10);

}  // namespace mechscope::analysis
