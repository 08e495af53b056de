#pragma once
// Activation patching (docs/metrics.md §7.2): run the corrupted prompts, overwrite one activation with
// its clean value, measure the logit difference. The batched sweep puts patch variants on the batch
// dimension and starts every layer's variants from the cached corrupted resid_pre (forwardFrom), so
// the layers below the patched site run once; it equals the one-forward-per-cell loop.
#include "analysis/patching/patch_types.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// The batched sweep over every layer × (head ×) (position) cell of params.component.
PatchResult activationPatch(const HookedTransformer& model, const PatchInputs& in, const PatchParams& params,
                            const RunContext* ctx = nullptr);

/// Reference implementation: one full forward of the corrupted batch per cell (slow; tests, benchmarks).
PatchResult activationPatchLoop(const HookedTransformer& model, const PatchInputs& in, const PatchParams& params,
                                const RunContext* ctx = nullptr);

/// Attribution patching: one forward + backward on the corrupted prompts; the patched LD of a cell is
/// approximated by LD_corrupt + Σ (a_clean − a_corrupt) · ∂LD/∂a over the cell. Same layout as above.
PatchResult attributionPatch(const HookedTransformer& model, const PatchInputs& in, const PatchParams& params,
                             const RunContext* ctx = nullptr);

}  // namespace mechscope::analysis
