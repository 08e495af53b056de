#pragma once
// OV and QK circuits read from the weights (issue #22; Elhage et al. 2021, "A Mathematical Framework for
// Transformer Circuits"; TransformerLens' FactoredMatrix and processed weights). Per head:
//   - the OV circuit W_E W_V^h W_O^h W_U restricted to a token set T, with the norms folded the
//     TransformerLens way (weights folded in, scale ignored, LayerNorm's centring kept, W_U centred over
//     the vocabulary, no biases): its eigenvalue copying score Σλ / Σ|λ| and, per token t of T, the rank
//     of t in its own row over the whole vocabulary (Wang et al. 2022's copy score, on weights);
//   - the QK look-up: the attention score the head gives query token q against key token k when the
//     residual at both positions is the bare token embedding (the layer's own input norm with its scale,
//     biases, qk-norm; no rotation = both tokens at one position; GPT-2: optionally plus W_pos[p]).
// Definitions and their choices: docs/metrics.md, "OV and QK circuits". A plugin: `mechscope-cli ov-qk`.
#include <cstdint>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "core/common/head_ref.hpp"
#include "core/common/tensor.hpp"

namespace mechscope::analysis {

/// What to read out of the weights.
struct OvQkParams {
  std::vector<int64_t> tokens{};       ///< T of the OV scores (distinct ids; see ovTokenSet)
  int64_t topK = 5;                    ///< a copy hit: t among the k largest entries of its own OV row
  std::vector<int64_t> queryTokens{};  ///< rows of the QK look-up (empty: no look-up)
  std::vector<int64_t> keyTokens{};    ///< columns of the QK look-up
  std::vector<HeadRef> heads{};        ///< heads to compute (empty: every head); the others are NaN
  int64_t position = -1;               ///< learned-position families: W_pos[position] added to both QK tokens; -1: none
};

/// Per-head grids; cells of heads not asked for are NaN (ranks 0).
struct OvQkResult {
  std::vector<int64_t> tokens;  ///< T as used
  at::Tensor copyEigen;         ///< [layer, head] fp64: Σλ / Σ|λ| of the OV circuit over T×T (NaN when Σ|λ| = 0)
  at::Tensor copyEigenVocab;    ///< [layer, head] fp64: the same over the whole vocabulary (TransformerLens' full OV circuit)
  at::Tensor copyTopK;          ///< [layer, head] fp64: fraction of t ∈ T ranked ≤ k in its own OV row
  at::Tensor copyTopKNegative;  ///< [layer, head] fp64: the same for the negated circuit (suppression)
  at::Tensor rank;              ///< [layer, head, |T|] int64: 1 + #(entries of row t strictly above entry t)
  at::Tensor rankNegative;      ///< [layer, head, |T|] int64: 1 + #(entries strictly below entry t)
  at::Tensor qk;                ///< [layer, head, query, key] fp64: q·k / √d_head
};

/// T from the prompt rows: their distinct ids in order of first occurrence; with `count` > 0 only the
/// `count` most frequent (ties: first occurrence first), kept in first-occurrence order.
std::vector<int64_t> ovTokenSet(const std::vector<std::vector<int64_t>>& rows, int64_t count = 0);

/// The OV scores and QK look-up of `model`. Checks everything before computing: InputError naming the
/// option for a token id outside the vocabulary, an empty T, top_k outside [1, vocab], a head outside
/// the model, or a position on a rotary model or outside the learned positions.
OvQkResult ovQkCircuits(const HookedTransformer& model, const OvQkParams& params, const RunContext* ctx = nullptr);

/// The plugin (top_k, tokens, query_tokens, key_tokens, heads, position).
AnalysisPlugin ovQkPlugin();

}  // namespace mechscope::analysis
