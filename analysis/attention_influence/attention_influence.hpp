#pragma once
// AttentionInfluence (Hua et al. 2025, arXiv 2505.07293): how much a sequence's language-modelling loss
// rises when a head set (in the paper, the model's retrieval heads) is masked. Per token t the loss is
// −log p(x_{t+1} | x_{≤t}); the sequence score is (L_masked − L_base) / L_base with L the mean token
// loss. The paper masks a head by giving it uniform causal attention (within the sliding window if the
// model has one); zeroing the head's output is offered as the alternative.
#include <cstdint>
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Settings of AttentionInfluence.
struct AttentionInfluenceOptions {
  std::vector<HeadRef> heads;                       ///< the heads to mask (at least one)
  AblationMethod method = AblationMethod::Uniform;  ///< Uniform (the paper's) or Zero
};

/// Per-token and per-sequence losses with and without the mask.
struct AttentionInfluenceResult {
  std::vector<at::Tensor> tokenLossBase;    ///< per row [pos − 1] fp64: −log p(x_{t+1} | x_{≤t})
  std::vector<at::Tensor> tokenLossMasked;  ///< per row [pos − 1] fp64, the heads masked
  at::Tensor lossBase;                      ///< [rows] fp64 mean token loss
  at::Tensor lossMasked;                    ///< [rows] fp64 mean token loss with the heads masked
  at::Tensor score;                         ///< [rows] fp64 (lossMasked − lossBase) / lossBase
};

/// Per-token losses of one forward: logits [1, pos, vocab] and the ids [pos] → [pos − 1] fp64.
at::Tensor tokenLosses(const at::Tensor& logits, const at::Tensor& ids);

/// Runs every row (≥ 2 tokens; one forward each with and without the mask). InputError on no heads, a
/// head outside the model, a method other than uniform/zero, or a row shorter than 2 tokens.
AttentionInfluenceResult runAttentionInfluence(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                                               const AttentionInfluenceOptions& options, const RunContext* ctx = nullptr);

/// The documented JSON keys (docs/cli.md) and HDF5 arrays.
AnalysisResult attentionInfluenceToResult(const AttentionInfluenceResult& result, const AttentionInfluenceOptions& options);

/// The plugin (attention_influence_plugin.cpp): `mechscope-cli attention-influence`, its GUI panel and batch keys.
AnalysisPlugin attentionInfluencePlugin();

}  // namespace mechscope::analysis
