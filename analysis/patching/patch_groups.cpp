#include "analysis/patching/patch_groups.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "analysis/patching/activation_patching.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

at::Tensor groupsToDatasetOrder(const std::vector<PatchGroup>& groups) {
  std::vector<int64_t> rows;  // dataset index of each concatenated row
  for (const auto& g : groups) rows.insert(rows.end(), g.promptIndex.begin(), g.promptIndex.end());
  return at::argsort(at::tensor(rows, at::kLong));  // [prompts]
}

int64_t groupPromptCount(const std::vector<PatchGroup>& groups) {
  int64_t n = 0;
  for (const auto& g : groups) n += g.inputs.clean.size(0);
  return n;
}

namespace {

void patchGroupsRequire(const std::vector<PatchGroup>& groups, size_t parts) {
  if (groups.empty()) throw InputError("patching: no prompts to patch");
  if (parts != groups.size()) throw Error("patching: one result per prompt group expected");
}

/// Concatenates [..., batch_g] tensors on the last dimension, padding dimension `posDim` (when ≥ 0) to the
/// longest with NaN, and reorders the prompts by `order`.
at::Tensor patchGroupsCat(const std::vector<at::Tensor>& parts, int64_t posDim, const at::Tensor& order) {
  std::vector<at::Tensor> padded;
  int64_t maxPos = 0;
  if (posDim >= 0)
    for (const auto& t : parts) maxPos = std::max(maxPos, t.size(posDim));
  for (const auto& t : parts) {
    if (posDim < 0 || t.size(posDim) == maxPos) {
      padded.push_back(t);
      continue;
    }
    std::vector<int64_t> shape = t.sizes().vec();
    shape[static_cast<size_t>(posDim)] = maxPos - t.size(posDim);
    padded.push_back(at::cat({t, at::full(shape, std::numeric_limits<double>::quiet_NaN(), t.options())}, posDim));
  }
  const at::Tensor all = at::cat(padded, -1);
  return all.index_select(-1, order.to(all.device()));
}

}  // namespace

PatchResult combinePatchResults(const std::vector<PatchResult>& parts, const std::vector<PatchGroup>& groups) {
  patchGroupsRequire(groups, parts.size());
  if (parts.size() == 1) return parts[0];
  const at::Tensor order = groupsToDatasetOrder(groups);
  PatchResult r;
  r.component = parts[0].component;
  r.perPosition = parts[0].perPosition;
  r.normalisation = parts[0].normalisation;
  r.method = parts[0].method;
  std::vector<at::Tensor> patched, clean, corrupt;
  for (const auto& p : parts) {
    patched.push_back(p.metricPatched);
    clean.push_back(p.metricCleanPerPrompt);
    corrupt.push_back(p.metricCorruptPerPrompt);
    r.forwards += p.forwards;
  }
  // metricPatched is [layer, (head,) (pos,) batch]: the position is the dimension before the batch.
  r.metricPatched = patchGroupsCat(patched, r.perPosition ? parts[0].metricPatched.dim() - 2 : -1, order);
  r.metricCleanPerPrompt = patchGroupsCat(clean, -1, order);      // [prompts]
  r.metricCorruptPerPrompt = patchGroupsCat(corrupt, -1, order);  // [prompts]
  // The same formulas as one batch of every prompt (activation_patching.cpp's finish).
  r.metricClean = r.metricCleanPerPrompt.to(at::kDouble).mean().item<double>();
  r.metricCorrupt = r.metricCorruptPerPrompt.to(at::kDouble).mean().item<double>();
  const at::Tensor p = r.metricPatched.to(at::kDouble);
  at::Tensor mean = p.mean(-1);
  if (r.perPosition) {  // the mean over the prompts that have the position (NaN marks the others)
    const at::Tensor has = p.isnan().logical_not();
    mean = at::where(has, p, at::zeros_like(p)).sum(-1) / has.sum(-1).to(at::kDouble);
  }
  r.scores = normalise(mean, r.metricClean, r.metricCorrupt, r.normalisation);
  return r;
}

PathPatchResult combinePathPatchResults(const std::vector<PathPatchResult>& parts, const std::vector<PatchGroup>& groups) {
  patchGroupsRequire(groups, parts.size());
  if (parts.size() == 1) return parts[0];
  PathPatchResult r;
  r.senders = parts[0].senders;
  r.normalisation = parts[0].normalisation;
  std::vector<at::Tensor> patched;
  double clean = 0, corrupt = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].senders != r.senders) throw Error("path patching: the prompt groups have different senders");
    patched.push_back(parts[i].metricPatched);  // [sender, batch_g]
    // The group means weighted by prompt count are the means over every prompt.
    const auto n = static_cast<double>(groups[i].inputs.clean.size(0));
    clean += n * parts[i].metricClean;
    corrupt += n * parts[i].metricCorrupt;
  }
  const auto total = static_cast<double>(groupPromptCount(groups));
  r.metricClean = clean / total;
  r.metricCorrupt = corrupt / total;
  r.metricPatched = patchGroupsCat(patched, -1, groupsToDatasetOrder(groups));  // [sender, prompts]
  // The same formulas as path_patching.cpp on one batch of every prompt.
  const at::Tensor meanPatched = r.metricPatched.to(at::kDouble).mean(1);  // [sender]
  const at::Tensor eff = normalise(meanPatched, r.metricClean, r.metricCorrupt, Normalisation::Noising);
  const at::Tensor sc = normalise(meanPatched, r.metricClean, r.metricCorrupt, r.normalisation);
  r.effect = at::zeros_like(parts[0].effect);  // [layer, head]
  r.scores = at::zeros_like(parts[0].scores);  // [layer, head]
  for (size_t i = 0; i < r.senders.size(); ++i) {
    const HeadRef s = r.senders[i];
    r.effect[s.layer][s.head] = eff[static_cast<int64_t>(i)];
    r.scores[s.layer][s.head] = sc[static_cast<int64_t>(i)];
  }
  return r;
}

PatchResult activationPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const PatchParams& params,
                                  const RunContext* ctx) {
  std::vector<PatchResult> parts;
  for (const auto& g : groups) parts.push_back(activationPatch(model, g.inputs, params, ctx));
  return combinePatchResults(parts, groups);
}

PatchResult attributionPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const PatchParams& params,
                                   const RunContext* ctx) {
  std::vector<PatchResult> parts;
  for (const auto& g : groups) parts.push_back(attributionPatch(model, g.inputs, params, ctx));
  return combinePatchResults(parts, groups);
}

PathPatchResult pathPatchGroups(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const PathPatchParams& params,
                                const RunContext* ctx) {
  std::vector<PathPatchResult> parts;
  for (const auto& g : groups) parts.push_back(pathPatch(model, g.inputs, params, ctx));
  return combinePathPatchResults(parts, groups);
}

}  // namespace mechscope::analysis
