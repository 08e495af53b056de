#include "analysis/common/final_norm.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/logit_stats.hpp"
#include "core/model/normalization.hpp"

namespace mechscope::analysis {

at::Tensor applyNorm(const HookedTransformer& model, const at::Tensor& x, const at::Tensor& wIn, const at::Tensor& bIn) {
  const ModelConfig& c = model.config();
  // A split model's block weights live on their block's device; analyses work on the home device.
  const at::Tensor w = wIn.defined() ? wIn.to(x.device()) : wIn, b = bIn.defined() ? bIn.to(x.device()) : bIn;
  return applyModelNorm(c, x, w, b);  // as the forward pass: HF's norm, or the same fused kernel
}

at::Tensor applyFinalNorm(const HookedTransformer& model, const at::Tensor& resid) {
  return applyNorm(model, resid, model.weights().lnFinalW, model.weights().lnFinalB);
}

namespace {

/// Logits of `normed` in the model's dtype (fp32 where the family soft-caps them), as the forward's head computes them
/// before its fp32 copy.
at::Tensor unembedLogits(const HookedTransformer& model, const at::Tensor& normed) {
  const ModelWeights& w = model.weights();
  at::Tensor logits = w.bU.defined() ? at::linear(normed, w.wU, w.bU) : at::linear(normed, w.wU);
  const double cap = model.config().finalSoftcap;
  return cap > 0 ? at::tanh(logits.to(at::kFloat) / cap) * cap : logits;
}

}  // namespace

at::Tensor applyUnembed(const HookedTransformer& model, const at::Tensor& normed) {
  return unembedLogits(model, normed).to(at::kFloat);
}

TokenPredictions tokenPredictions(const HookedTransformer& model, const at::Tensor& normed, const std::vector<int64_t>& ids,
                                  int64_t chunk) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (normed.dim() != 2 || normed.size(0) != n)
    throw InputError(fmt::format("token predictions: expected final-normed states [{}, d_model], found {} dims of size {}", n,
                                 normed.dim(), normed.dim() > 0 ? normed.size(0) : 0));
  RECORD_USER_SCOPE("analysis::token_predictions");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  TokenPredictions out;
  out.entropy.assign(static_cast<size_t>(n), nan);
  out.logProb.assign(static_cast<size_t>(n), nan);
  const at::Tensor next = at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).to(normed.device());  // [pos]
  // A bf16/fp16 model's logits carry ~2⁻⁸ relative error of their own, so fp32 sums over the vocabulary (2⁻²⁴ per
  // term) lose nothing measurable and halve the memory traffic of fp64 on a GPU; fp32/fp64 models keep fp64 sums.
  const bool halfModel = model.dtype() == at::kBFloat16 || model.dtype() == at::kHalf;
  const at::ScalarType acc = halfModel ? at::kFloat : at::kDouble;
  chunk = std::max<int64_t>(1, chunk);
  std::vector<at::Tensor> ents, gots;  // per chunk [len] on the device: one copy to the host at the end, no sync per chunk
  for (int64_t s = 0; s + 1 < n; s += chunk) {
    const int64_t len = std::min(chunk, n - 1 - s);  // rows s..s+len−1 predict tokens s+1..s+len
    const at::Tensor x = normed.narrow(0, s, len);   // [len, d_model]
    const at::Tensor z = unembedLogits(model, x);        // [len, vocab], soft-capped as the forward
    const at::Tensor target = next.narrow(0, s + 1, len);  // [len]
    if (halfModel) {  // CUDA: one read of the bf16/fp16 logits (core/model/logit_stats_kernel.cu), fp32 sums as below
      if (const std::optional<LogitStats> k = logitStatsOnDevice(z, target)) {
        ents.push_back(k->entropy);
        gots.push_back(k->logProb);
        continue;
      }
    }
    const at::Tensor p = at::softmax(z, -1, acc);         // [len, vocab]
    // H = −Σ p log p (no difference of large terms); log Z from the most likely token, whose p ≥ 1/vocab keeps its
    // log exact: log p(next) = z_next − (z_top − log p_top).
    const at::Tensor top = z.argmax(-1, true);                                 // [len, 1]
    const at::Tensor logZ = z.gather(1, top).to(acc) - p.gather(1, top).log();  // [len, 1]
    ents.push_back(at::special_entr(p).sum(-1));
    gots.push_back((z.gather(1, target.unsqueeze(1)).to(acc) - logZ).squeeze(1));
  }
  if (ents.empty()) return out;
  const at::Tensor ent = at::cat(ents).to(at::kDouble).cpu().contiguous();  // [n − 1]
  const at::Tensor got = at::cat(gots).to(at::kDouble).cpu().contiguous();  // [n − 1]
  std::copy_n(ent.data_ptr<double>(), n - 1, out.entropy.begin() + 1);
  std::copy_n(got.data_ptr<double>(), n - 1, out.logProb.begin() + 1);
  return out;
}

}  // namespace mechscope::analysis
