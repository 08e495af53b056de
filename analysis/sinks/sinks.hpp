#pragma once
// Attention sinks (docs/metrics.md §2, §10; official code JeffreyWong20/Secondary-Attention-Sinks): the
// primary sink b (detected among positions {0, 1, 2} by mean hidden-state norm, or forced), its
// per-head sink score and the sink rate; secondary sinks by hidden-state alignment with b inside the
// clipper window, their lifetimes, creation layers and labels; at the creation layer the MLP output's
// cosine with b's and its ℓ2 norm; each sink's own sink score per layer and head and its lifetime on
// that score; the sink-level histogram. Every attention number comes from the probe's columnKeys
// (O(n) per column after the row normalisers), never from an [n, n] pattern.
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// Which per-layer hidden states the secondary-sink detection and the primary-sink choice read.
enum class SinkHiddenStates {
  HfOutput,   ///< HF `hidden_states[1:]` (the official code): block outputs, the last one after the final norm
  ResidPost,  ///< `blocks.{l}.hook_resid_post` of every block, the last one before the final norm
};

/// "hf" or "resid_post".
std::string toString(SinkHiddenStates s);
/// Parses "hf" / "resid_post"; InputError otherwise.
SinkHiddenStates parseSinkHiddenStates(const std::string& s);

/// Settings of the sinks analysis.
struct SinksOptions {
  int64_t bosPosition = -1;                    ///< b forced when ≥ 0; −1: detected among bosCandidates
  std::vector<int64_t> bosCandidates{0, 1, 2};  ///< positions competing for b (largest mean hidden-state norm)
  double sinkThreshold = 0.3;    ///< ε of the sink rate and of a sink's score lifetime (Gu et al. 2024)
  double cosineThreshold = 0.9;  ///< |cos(h_l[p], h_l[b])| above which p is a sink at layer l
  SinkHiddenStates hiddenStates = SinkHiddenStates::HfOutput;
  bool materialize = false;  ///< read hook_pattern instead of probing q/k
  /// The candidates' own scores need a second, probe-only pass; it reuses the first pass's row normalisers
  /// (up to kKeptNormaliserBytes: on the GPU where a quarter of its free memory holds them, else on the host) instead of
  /// recomputing them. false recomputes them (checks).
  bool reuseNormalisers = true;
  /// The second pass also starts each layer from the first pass's residual stream, kept where it fits (host: up to
  /// kKeptResidualBytes; CUDA: up to a quarter of what the device can still allocate), and computes only queries and
  /// keys: no attention, MLP or logits. false runs the whole forward again (checks).
  bool reuseResiduals = true;
};

/// Host bytes of residuals (layers × tokens × d_model in the compute dtype) sinks keeps for its second pass.
inline constexpr int64_t kKeptResidualBytes = int64_t{2} << 30;

/// Host bytes of row normalisers (layers × heads × tokens × 8) sinks keeps for its second pass; above it the
/// second pass recomputes them.
inline constexpr int64_t kKeptNormaliserBytes = int64_t{2} << 30;

/// One detected sink candidate (lifetime ≥ 1 inside the clipper window).
struct SecondarySink {
  int64_t batch = 0;
  int64_t position = 0;
  int64_t tokenId = 0;
  int creationLayer = 0;    ///< first layer recorded
  int lifetime = 0;         ///< number of layers recorded (hidden-state cosine)
  std::string label;        ///< "bos_sink", "secondary" or "noise" (§2.1 step 5)
  double mlpCosine = 0;     ///< cos(mlp_out[l*][p], mlp_out[l*][b])
  double mlpNorm = 0;       ///< ‖mlp_out[l*][p]‖₂
  std::vector<int> layers;  ///< every recorded layer
  at::Tensor score;         ///< [layer, head] fp64: mean over i > p of A[l,h,i,p] (0 for the last position)
  std::vector<int> scoreLayers;  ///< layers where some head's score > ε
  int scoreLifetime = 0;         ///< scoreLayers.size()
};

/// The primary sink of one batch row.
struct PrimarySink {
  int64_t position = 0;               ///< b
  bool detected = false;              ///< chosen among the candidates (false: forced by bosPosition)
  std::vector<int64_t> candidates;    ///< positions that competed
  std::vector<double> candidateNorms; ///< their mean hidden-state norm over the layers
  int windowStart = 0, windowEnd = 0; ///< clipper window [start, end)
};

/// What the sinks analysis finds.
struct SinksResult {
  at::Tensor sinkScore;  ///< [layer, head] fp64: mean over i > b of A[l,h,i,b], averaged over batch rows (each its own b)
  at::Tensor sinkRate;   ///< [layer] fp64: fraction of heads with sinkScore > ε (per row, averaged)
  std::vector<std::pair<int, int>> window;  ///< per batch row: clipper window [start, end)
  std::vector<PrimarySink> primary;         ///< per batch row
  std::vector<SecondarySink> sinks;         ///< every candidate, in batch then position order
  /// [layer, head] fp64: the learned sink's share of attention, 1 − Σ_j A[l,h,i,j], averaged over queries i and
  /// batch rows (gpt-oss's per-head sink logits); undefined for models without learned sinks. The sink scores
  /// above are over the keys only (HF's attention weights), so a head whose learned sink takes the mass shows
  /// it here, not as a key's score.
  at::Tensor learnedSinkMass;
  int nLayers = 0;
};

/// Runs the analysis over `rows` (each a token sequence; one forward each, plus one probe-only
/// forward for the rows with candidates, whose columns are known only after the first).
SinksResult runSinks(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                     const SinksOptions& options = {}, const RunContext* ctx = nullptr);

/// The documented JSON keys (docs/cli.md) and HDF5 arrays.
AnalysisResult sinksToResult(const SinksResult& result, const SinksOptions& options);

/// The plugin (sinks_plugin.cpp): `mechscope-cli sinks`, its GUI panel and batch keys.
AnalysisPlugin sinksPlugin();

}  // namespace mechscope::analysis
