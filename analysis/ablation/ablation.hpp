#pragma once
// Head ablation (docs/metrics.md §7.1): zero, mean (over a reference set, optionally per template),
// resample (paired or pooled), uniform attention over visible keys, and attention forcing (a given
// distribution over key positions, applied between softmax and the value product, §10), for any head
// set at all or chosen positions; knockout keeps a head set and ablates every other head.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "analysis/patching/path_patching.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// How a head is ablated.
enum class AblationMethod { Zero, Mean, Resample, Uniform, Force };
/// "zero", "mean", "resample", "uniform", "force".
std::string toString(AblationMethod m);
/// Parses toString's names; InputError otherwise.
AblationMethod parseAblationMethod(const std::string& s);

/// Options of an ablation.
struct AblationParams {
  AblationMethod method = AblationMethod::Zero;
  std::vector<HeadRef> heads;
  /// Mixture-of-experts experts (layer, expert) whose routed output (mlp.hook_expert_out slice) is ablated at
  /// `positions`, zero or mean only (analysis/ablation/expert_ablation.hpp).
  std::vector<HeadRef> experts;
  bool knockout = false;            ///< ablate every head NOT in `heads` (circuit faithfulness)
  /// Empty, or one per entry of `heads`: "" (every position) or a role of `roles`. A listed head is then
  /// ablated only at its roles' positions, or with `knockout` kept only there and ablated elsewhere: Wang
  /// et al.'s knockout of (head, position) pairs. A head may be listed with several roles. Zero, mean and
  /// resample only.
  std::vector<std::string> headRoles;
  std::map<std::string, at::Tensor> roles;  ///< [batch] position of each role (PatchInputs::roles)
  std::vector<int64_t> positions;   ///< positions (query rows for uniform/force); empty: all; negative: from the end
  at::Tensor reference;             ///< [n_ref, pos] tokens for mean/resample (same length as the prompts)
  std::vector<int> promptGroups;    ///< template id per prompt (per-template means)
  std::vector<int> referenceGroups; ///< template id per reference prompt
  bool perTemplate = false;         ///< mean per template group
  bool pooled = false;              ///< resample from the pooled (prompt × position) vectors instead of paired prompts
  uint64_t seed = 0;
  std::vector<std::vector<int64_t>> forceKeys;  ///< per prompt (or one list for all): key positions to force onto
  std::vector<double> forceWeights;             ///< weights over forceKeys (default uniform), renormalised
};

/// Metric before/after, per prompt, and top-1 accuracy.
struct AblationResult {
  double metricBefore = 0, metricAfter = 0;
  at::Tensor perPromptBefore, perPromptAfter;  ///< [batch] logit differences
  double accuracyBefore = 0, accuracyAfter = 0;  ///< fraction whose full-vocabulary argmax is the correct answer (Merullo et al.)
  at::Tensor answerProbBefore, answerProbAfter;  ///< [batch] softmax probability of the correct answer (Wang et al.'s IO probability)
  /// Fraction of prompts whose correct answer's logit beats the incorrect one's (Wang et al.'s "IO > S").
  double aboveBefore = 0, aboveAfter = 0;
  int ablatedHeads = 0;  ///< heads ablated at one position or more
  int ablatedExperts = 0;  ///< experts ablated (AblationParams::experts)
};

/// Runs `tokens` [batch, pos] with and without the ablation; answers [batch].
AblationResult ablate(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                      const at::Tensor& incorrect, const AblationParams& params, const RunContext* ctx = nullptr);

/// The hooks that implement the ablation (for use in other analyses' forwards). Mean and resample
/// ablation first run `params.reference` (ablationReference).
HookSet ablationHooks(const HookedTransformer& model, const at::Tensor& tokens, const AblationParams& params,
                      const RunContext* ctx = nullptr);

/// The same hooks from a reference run made beforehand (ablationReference of the same `params`), so that
/// many ablations with one reference set (a head sweep) run it once. InputError when mean or resample
/// ablation finds no reference run in `reference`.
HookSet ablationHooks(const HookedTransformer& model, const at::Tensor& tokens, const AblationParams& params,
                      const ActivationCache& reference);

/// The run mean and resample ablation read: hook_z of every layer on `params.reference` [n_ref, pos]
/// (InputError when it is missing); an empty cache for the other methods.
ActivationCache ablationReference(const HookedTransformer& model, const AblationParams& params, const RunContext* ctx = nullptr);

/// The metric of `ablate` for one forward: `tokens` run with `hooks` (nullptr: unablated), logits of the
/// last position only → per-prompt logit differences [batch] (fp32, CPU). `logits`, when given, receives
/// the logits [batch, 1, vocab].
at::Tensor ablationLogitDiff(const HookedTransformer& model, const at::Tensor& tokens, const at::Tensor& correct,
                             const at::Tensor& incorrect, const HookSet* hooks, const RunContext* ctx = nullptr,
                             at::Tensor* logits = nullptr);

/// The mean of per-prompt logit differences, summed in fp64: AblationResult::metricBefore / metricAfter.
double ablationMetric(const at::Tensor& perPrompt);

}  // namespace mechscope::analysis
