#pragma once
// Logit lens (nostalgebraist 2020; TransformerLens' accumulated_resid + apply_ln_to_stack with a freshly
// computed final norm): the residual stream before block 0 (the embeddings) and after every block, at
// chosen positions, through the model's final norm and unembedding. Reports each layer's top tokens and
// the probability and rank of the next token and of chosen target tokens (issue #22). A plugin:
// `mechscope-cli logit-lens`, its GUI panel and batch plans derive from its table.
#include <cstdint>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// What to read out.
struct LogitLensParams {
  std::vector<int64_t> positions{-1};  ///< query positions (negative: from the end); empty: every position
  int64_t topK = 5;                     ///< top tokens per (layer, position)
  std::vector<int64_t> targetIds;       ///< tokens whose probability and rank are tracked at every position
};

/// Rows are readouts: row 0 = the embeddings (resid_pre of block 0), row l + 1 = after block l.
struct LogitLensResult {
  std::vector<int64_t> positions;  ///< resolved, ascending as given
  at::Tensor topIds;               ///< [row, pos, k] int64
  at::Tensor topProbs;             ///< [row, pos, k] fp64
  at::Tensor nextProb;             ///< [row, pos] fp64 probability of the prompt's next token (NaN at the last position)
  at::Tensor nextRank;             ///< [row, pos] int64 1-based rank of the next token (1 = top; 0 at the last position)
  at::Tensor targetProb;           ///< [row, pos, target] fp64
  at::Tensor targetRank;           ///< [row, pos, target] int64, 1-based
};

/// The logit lens of one prompt `ids`. InputError for a position outside the prompt, a target id outside
/// the vocabulary or top_k outside [1, vocab].
LogitLensResult logitLens(const HookedTransformer& model, const std::vector<int64_t>& ids, const LogitLensParams& params,
                          const RunContext* ctx = nullptr);

/// The plugin (positions, top_k, targets).
AnalysisPlugin logitLensPlugin();

}  // namespace mechscope::analysis
