#include "analysis/common/logit_diff.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

at::Tensor logitDiff(const at::Tensor& logits, const at::Tensor& correct, const at::Tensor& incorrect) {
  if (!logits.defined() || (logits.dim() != 3 && logits.dim() != 2))
    throw InputError("logitDiff: logits must be [batch, pos, vocab] or [batch, vocab]");
  at::Tensor last = logits.dim() == 3 ? logits.select(1, logits.size(1) - 1) : logits;  // [batch, vocab]
  const int64_t B = last.size(0);
  if (correct.numel() != B || incorrect.numel() != B)
    throw InputError(fmt::format("logitDiff: {} prompts but {} correct / {} incorrect answer ids", B, correct.numel(),
                                 incorrect.numel()));
  const at::Tensor c = correct.to(last.device(), at::kLong).view({B, 1});
  const at::Tensor w = incorrect.to(last.device(), at::kLong).view({B, 1});
  return (last.gather(1, c) - last.gather(1, w)).squeeze(1).to(at::kFloat);  // [batch]
}

std::string toString(Normalisation n) {
  switch (n) {
    case Normalisation::Denoising: return "denoising";
    case Normalisation::Noising: return "noising";
    case Normalisation::IoiPercent: return "ioi-percent";
    case Normalisation::MerulloPercent: return "merullo-percent";
    case Normalisation::Raw: return "raw";
  }
  return "raw";
}

Normalisation parseNormalisation(const std::string& name) {
  for (auto n : {Normalisation::Denoising, Normalisation::Noising, Normalisation::IoiPercent,
                 Normalisation::MerulloPercent, Normalisation::Raw})
    if (toString(n) == name) return n;
  throw InputError(fmt::format("normalisation '{}' is unknown (expected denoising, noising, ioi-percent, "
                               "merullo-percent or raw)",
                               name));
}

at::Tensor normalise(const at::Tensor& patched, double clean, double corrupt, Normalisation n) {
  const at::Tensor p = patched.to(at::kDouble);
  switch (n) {
    case Normalisation::Denoising: return ((p - corrupt) / (clean - corrupt)).to(at::kFloat);
    case Normalisation::Noising: return ((clean - p) / (clean - corrupt)).to(at::kFloat);
    case Normalisation::IoiPercent: return (100.0 * (p - clean) / clean).to(at::kFloat);
    case Normalisation::MerulloPercent: return (-100.0 * (p - clean) / (corrupt - clean)).to(at::kFloat);
    case Normalisation::Raw: return p.to(at::kFloat);
  }
  return p.to(at::kFloat);
}

}  // namespace mechscope::analysis
