#pragma once
// Constraint attention (docs/metrics.md §6, §10): α(l,i) = (1/|C|)·Σ_{j∈C} mean_h A[l,h,i,j] for every
// query row i, ᾱ(i) = mean_l α(l,i), β(l) = mean of α(l,·) over the answer steps' query rows, and
// Δβ(l) between two runs. One streaming pass (teacher-forced over prompt + response).
#include <cstdint>
#include <optional>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// What constraint attention finds for one sequence.
struct ConstraintResult {
  at::Tensor alpha;      ///< [layer, pos] fp64
  at::Tensor alphaMean;  ///< [pos] fp64: mean over layers
  std::vector<int64_t> constraintPositions;  ///< C, sorted, unique
  std::vector<int64_t> answerRows;           ///< query rows of the answer steps (row p − 1 predicts token p)
  at::Tensor beta;       ///< [layer] fp64 (undefined without answer rows)
};

/// Runs constraint attention over `ids` with constraint key positions `constraint` and the answer
/// steps' query rows `answerRows` (may be empty). InputError on positions outside the sequence.
ConstraintResult runConstraintAttention(const HookedTransformer& model, const std::vector<int64_t>& ids,
                                        const std::vector<int64_t>& constraint, const std::vector<int64_t>& answerRows,
                                        bool materialize = false, const RunContext* ctx = nullptr);

/// The documented JSON keys; `baselineBeta` (another run's β) adds delta_beta = baseline − this.
AnalysisResult constraintToResult(const ConstraintResult& result, const std::optional<std::vector<double>>& baselineBeta = {});

/// The plugin (constraint_plugin.cpp): `mechscope-cli constraint-attention`, its GUI panel and batch keys.
AnalysisPlugin constraintAttentionPlugin();

}  // namespace mechscope::analysis
