#pragma once
// Plain types shared by activation, attribution and path patching: the inputs (clean/corrupt token
// batches of equal length and the answer pair per prompt), the patchable components, the result.
#include <map>
#include <string>
#include <vector>

#include "analysis/common/logit_diff.hpp"
#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// Clean and corrupted prompts (equal shape, no padding) and the answer pair of each prompt.
struct PatchInputs {
  at::Tensor clean;      ///< [batch, pos] int64
  at::Tensor corrupt;    ///< [batch, pos] int64
  at::Tensor correct;    ///< [batch] int64: the correct answer token
  at::Tensor incorrect;  ///< [batch] int64: the contrast answer token
  /// [batch] int64 position of each named role (IOI "S2", Colored Objects "OBJ2", …) that every prompt
  /// of the batch has; empty when the prompts carry no roles.
  std::map<std::string, at::Tensor> roles;
};

/// Prompts of one token length with where they came from. Causal commands run each group as one batch
/// (no padding) and combine the groups' per-prompt metrics (analysis/patching/patch_groups.hpp).
struct PatchGroup {
  PatchInputs inputs;                ///< [batch, pos] tokens of this length
  std::vector<int64_t> promptIndex;  ///< [batch] index of each row's prompt in the dataset
  std::vector<int> templateIds;      ///< [batch] template id of each row (-1: none)
};

/// Checks shapes/ids of `in` against a model of `vocab` tokens; InputError names what differs.
void checkPatchInputs(const PatchInputs& in, int64_t vocab);

/// A patchable activation site (TransformerLens hook names in brackets).
enum class PatchComponent {
  ResidPre,  ///< blocks.l.hook_resid_pre      per layer
  AttnOut,   ///< blocks.l.hook_attn_out       per layer
  MlpOut,    ///< blocks.l.hook_mlp_out        per layer
  HeadOut,   ///< blocks.l.attn.hook_z         per head ("head_out")
  Q,         ///< blocks.l.attn.hook_q         per head
  K,         ///< blocks.l.attn.hook_k         per KV head
  V,         ///< blocks.l.attn.hook_v         per KV head
  Pattern,   ///< blocks.l.attn.hook_pattern   per head; per position = the destination row
  ExpertOut  ///< blocks.l.mlp.hook_expert_out per mixture-of-experts expert (its routed, weighted output);
             ///< layers without experts (dense, or a dense model) are left unpatched: the corrupted run
};

/// "resid_pre", "attn_out", "mlp_out", "head_out", "q", "k", "v", "pattern", "expert_out".
std::string toString(PatchComponent c);
/// Parses toString's names (also "z" for head_out); InputError otherwise.
PatchComponent parsePatchComponent(const std::string& name);
/// Whether the component is indexed by head (head_out, q, k, v, pattern) or by expert (expert_out).
bool isHeadComponent(PatchComponent c);
/// The full hook name of the component at `layer`.
std::string hookName(PatchComponent c, int layer);
/// The glob matching the component at every layer ("blocks.*.attn.hook_z").
std::string hookGlob(PatchComponent c);

/// Result of a patching sweep. Raw metric values are always kept next to the scores.
struct PatchResult {
  PatchComponent component = PatchComponent::HeadOut;
  bool perPosition = false;
  Normalisation normalisation = Normalisation::Denoising;
  std::string method;             ///< "activation", "activation-loop", "attribution"
  at::Tensor metricPatched;       ///< [layer, (head,) (pos,) batch] fp32: LD of each patched run per prompt
  at::Tensor scores;              ///< [layer, (head,) (pos)] fp32: normalised mean LD
  at::Tensor metricCleanPerPrompt;    ///< [batch]
  at::Tensor metricCorruptPerPrompt;  ///< [batch]
  double metricClean = 0;         ///< mean LD of the clean run
  double metricCorrupt = 0;       ///< mean LD of the corrupted run
  int forwards = 0;               ///< forward passes made for the sweep (batched or not)
};

/// Options of a sweep.
struct PatchParams {
  PatchComponent component = PatchComponent::HeadOut;
  bool perPosition = false;  ///< one cell per position, else all positions at once
  std::string positionRole;  ///< patch only each prompt's position of this role (PatchInputs::roles), e.g. "S2"
  Normalisation normalisation = Normalisation::Denoising;
  int64_t maxBatchRows = 256;  ///< upper bound on rows (variants × prompts) per batched forward
};

}  // namespace mechscope::analysis
