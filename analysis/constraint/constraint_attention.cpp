#include "analysis/constraint/constraint_attention.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

ConstraintResult runConstraintAttention(const HookedTransformer& model, const std::vector<int64_t>& ids,
                                        const std::vector<int64_t>& constraint, const std::vector<int64_t>& answerRows,
                                        bool materialize, const RunContext* ctx) {
  const int L = model.config().nLayers;
  const int64_t n = static_cast<int64_t>(ids.size());
  ConstraintResult out;
  out.constraintPositions = constraint;
  std::sort(out.constraintPositions.begin(), out.constraintPositions.end());
  out.constraintPositions.erase(std::unique(out.constraintPositions.begin(), out.constraintPositions.end()), out.constraintPositions.end());
  if (out.constraintPositions.empty()) throw InputError("constraint-attention: the constraint set is empty (give --constraint a:b or --constraint-tokens a:b)");
  for (int64_t j : out.constraintPositions)
    if (j < 0 || j >= n) throw InputError(fmt::format("constraint-attention: constraint position {} is outside the {} tokens", j, n));
  for (int64_t i : answerRows)
    if (i < 0 || i >= n) throw InputError(fmt::format("constraint-attention: answer row {} is outside the {} tokens", i, n));
  out.answerRows = answerRows;
  ProbeRequest req;
  req.keySet = out.constraintPositions;
  AttentionStatsOptions so;
  so.materialize = materialize;
  const double size = static_cast<double>(out.constraintPositions.size());
  out.alpha = at::zeros({L, n}, at::kDouble);  // [layer, pos]
  runAttentionStats(
      model, ids, req,
      [&](int l, const ProbeResult& s) {
        out.alpha[l] = s.keySetMass.to(at::kDouble).mean(0).cpu() / size;  // mean over heads of the mass on C, / |C|
        if (ctx) ctx->step(l + 1, L, "constraint-attention");
      },
      so, nullptr, ctx);
  out.alphaMean = out.alpha.mean(0);
  if (!answerRows.empty()) {
    const at::Tensor rowsT = at::tensor(at::ArrayRef<int64_t>(answerRows), at::kLong);
    out.beta = out.alpha.index_select(1, rowsT).mean(1);  // [layer]
  }
  return out;
}

AnalysisResult constraintToResult(const ConstraintResult& result, const std::optional<std::vector<double>>& baselineBeta) {
  AnalysisResult r;
  r.name = "constraint_attention";
  r.json["alpha"] = tensorToJson(result.alpha);
  r.json["alpha_mean"] = tensorToJson(result.alphaMean);
  r.json["constraint_positions"] = result.constraintPositions;
  r.json["answer_rows"] = result.answerRows;
  r.addArray("alpha", result.alpha);
  r.addArray("alpha_mean", result.alphaMean);
  r.addArray("constraint_positions", at::tensor(at::ArrayRef<int64_t>(result.constraintPositions), at::kLong));
  if (result.beta.defined()) {
    r.json["beta"] = tensorToJson(result.beta);
    r.addArray("beta", result.beta);
    if (baselineBeta) {
      if (static_cast<int64_t>(baselineBeta->size()) != result.beta.size(0))
        throw InputError(fmt::format("constraint-attention: the comparison run has {} layers of beta, this run {}", baselineBeta->size(),
                                     result.beta.size(0)));
      const at::Tensor base = at::tensor(at::ArrayRef<double>(*baselineBeta), at::kDouble);
      const at::Tensor delta = base - result.beta;
      r.json["delta_beta"] = tensorToJson(delta);
      r.addArray("delta_beta", delta);
    }
  } else if (baselineBeta) {
    throw InputError("constraint-attention: --compare-json needs answer steps in this run (give --response or --generate)");
  }
  return r;
}

}  // namespace mechscope::analysis
