#pragma once
// The logit-difference metric of the causal analyses and the normalisations of patching scores
// (docs/metrics.md §3.2, §4.3, §7.2). Raw values are always kept; the normalisation is recorded by name.
#include <string>

#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// LD = logit[last, correct] − logit[last, incorrect] per prompt: logits [batch, pos, vocab] or
/// [batch, vocab], correct/incorrect [batch] int64 → [batch] fp32 (keeps autograd).
at::Tensor logitDiff(const at::Tensor& logits, const at::Tensor& correct, const at::Tensor& incorrect);

/// How a patched metric is turned into a score (docs/metrics.md §7.2).
enum class Normalisation {
  Denoising,  ///< (patched − corrupt) / (clean − corrupt): 1 = clean behaviour restored (default)
  Noising,    ///< (clean − patched) / (clean − corrupt): 1 = fully broken by the patch
  IoiPercent,      ///< 100 · (patched − orig) / orig, orig = the clean run (IOI path patching)
  MerulloPercent,  ///< −100 · (patched − clean) / (corrupt − clean) (Merullo path patching)
  Raw              ///< the patched metric itself
};

/// "denoising", "noising", "ioi-percent", "merullo-percent", "raw".
std::string toString(Normalisation n);
/// Parses the names of toString; InputError naming the option otherwise.
Normalisation parseNormalisation(const std::string& name);
/// Applies `n` elementwise to `patched` given the clean and corrupt baselines (scalars or broadcastable).
at::Tensor normalise(const at::Tensor& patched, double clean, double corrupt, Normalisation n);

}  // namespace mechscope::analysis
