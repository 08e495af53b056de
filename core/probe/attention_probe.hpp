#pragma once
// AttentionProbe: per-head attention statistics computed from Q and K in tiles, never holding the
// full [heads, n, n] pattern (docs/metrics.md §11). The engine under sinks, WAAD/FAI, constraint
// attention and retrieval heads. Qt-free; works on CPU and CUDA tensors alike (only at:: ops).
//
// Conventions (shared with statsFromPattern):
// - Row r of q sits at absolute position i = r + queryOffset; key j is visible to it iff
//   j <= i and key j is not padded. Every "i" below (distances, bands, queryStart) is absolute.
// - A row with no visible key (left padding) has p = 0 everywhere: all its statistics are 0 and it
//   counts in no column.
// - Statistics are in fp32 (fp64 when q is fp64) on the device of q.
#include <cstdint>
#include <limits>
#include <vector>

#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"

namespace mechscope {

/// How the probe computes (not what): both give the same statistics (tested against the materialised
/// pattern); they differ in speed and in the precision of the entropy of very peaked rows.
enum class ProbeAlgorithm {
  Auto,      ///< Moments on CUDA where it applies and fused kernels give its log-sum-exps, else LseFirst on CUDA and for
             ///< column-key-only requests; Scan otherwise and whenever entropy is asked
  Scan,      ///< online softmax in one pass over key tiles (+ a second pass for column sums); fp64 row sums
  LseFirst,  ///< row log-sum-exp first (flash attention's on CUDA when it applies), then one statistics pass
  Moments,   ///< every statistic from causal log-sum-exps (flash attention's on CUDA) and O(n·band) gathers: no pass
             ///< over the n² probabilities. Causal prefills without padding, window, soft-cap, sinks or uniform heads,
             ///< no top-k/entropy (else LseFirst runs). Auto picks it on CUDA (MECHSCOPE_PROBE_MOMENTS=0: never,
             ///< =all: on the CPU too); docs/attention-probe.md, "Moments"
};

/// Which statistics to accumulate; everything off by default (ask only for what you read).
struct ProbeRequest {
  /// Σ_i p_ij over rows i with (i − j) in [bandMin, bandMax] and i ≥ queryStart → [head, key].
  bool columnSums = false;
  /// Band of (i − j) for columnSums/columnCounts; the default counts strictly later queries (sink
  /// score, FAI to the end); [a, b] gives FAI's horizon {s+a ≤ t ≤ s+b}.
  int64_t bandMin = 1, bandMax = std::numeric_limits<int64_t>::max();
  /// Number of non-empty rows i ≥ queryStart with j ≤ i and (i − j) in the band, per column (to turn
  /// columnSums into means; geometric, independent of key padding) → [key] int64.
  bool columnCounts = false;
  /// Per-row top-k probabilities and their key indices (k = 1 → argmax, ties to the lowest index;
  /// index −1 where the probability is 0) → [head, query, k].
  int topK = 0;
  /// Σ_j p_ij (i − j) → [head, query].
  bool distance = false;
  /// Σ over rows i ≥ queryStart of Σ_j p_ij (i − j) → [head] fp64: all a head's mean distance needs. Moments gets it
  /// from column passes that open-band column sums share (one fused call per layer fewer than per-row distances);
  /// the other algorithms add up their per-row distances.
  bool distanceTotal = false;
  /// > 0: Σ_j p_ij min(i − j, window) (WAAD) → [head, query].
  int64_t window = 0;
  /// Non-empty: Σ_{j∈C} p_ij (constraint attention; duplicates count once) → [head, query].
  std::vector<int64_t> keySet;
  /// −Σ_j p_ij log p_ij (nats) → [head, query].
  bool entropy = false;
  /// Non-empty: Σ_i p_ij for these keys only, with the band and queryStart rules of columnSums → [head, |columnKeys|].
  /// O(n·|keys|) after the row normalisers, instead of a pass over the whole causal square (sink scores).
  std::vector<int64_t> columnKeys;
  /// Absolute query positions i < queryStart are skipped: their rows are 0 (top-k indices −1) and they
  /// add to no column (response-only statistics).
  int64_t queryStart = 0;
  /// How to compute it (Auto unless a test or benchmark pins one).
  ProbeAlgorithm algorithm = ProbeAlgorithm::Auto;
};

/// The statistics asked for; tensors not requested stay undefined.
struct ProbeResult {
  at::Tensor columnSums;    ///< [head, key]
  at::Tensor columnCounts;  ///< [key] int64
  at::Tensor columnKeySums; ///< [head, |columnKeys|]
  at::Tensor topValues;     ///< [head, query, k]
  at::Tensor topIndices;    ///< [head, query, k] int64, −1 where the probability is 0
  at::Tensor distance;      ///< [head, query]
  at::Tensor distanceTotal; ///< [head] fp64
  at::Tensor windowed;      ///< [head, query]
  at::Tensor keySetMass;    ///< [head, query]
  at::Tensor entropy;       ///< [head, query]
  int64_t nQueries = 0;     ///< rows of q (pattern rows)
  int64_t nKeys = 0;        ///< rows of k (pattern columns)
  ProbeAlgorithm algorithm = ProbeAlgorithm::Scan;  ///< what actually ran (never Auto)
  bool flashLse = false;    ///< the row normalisers came from a fused attention kernel (cuDNN or FA-2); false when given
  /// [head, pos_q] fp64 row normalisers log Σ_j exp(s_ij) (learned sinks folded in, −inf before queryStart), as
  /// LseFirst and Moments computed or were given them; undefined after Scan. Reusable as ProbeInputs::rowLse.
  at::Tensor rowLse;
};

/// What is multiplied inside one attention layer for one batch row.
struct ProbeInputs {
  at::Tensor q;  ///< [pos_q, n_heads, d_head], after rotary / qk-norm: exactly what is multiplied
  at::Tensor k;  ///< [pos_k, n_kv_heads, d_head]; GQA: query head h uses kv head h / (n_heads / n_kv_heads)
  double scale = 1.0;           ///< score = (q · k) · scale, usually 1/sqrt(d_head)
  int64_t queryOffset = 0;      ///< absolute position of q row 0 (decode: pos_k − pos_q)
  at::Tensor keyPadding;        ///< optional [pos_k] bool, true = masked (left padding)
  /// > 0: sliding-window attention (Mistral, Qwen2 with a window): query i sees keys j with
  /// i − W < j ≤ i, as the model's own forward and Hugging Face mask them; 0 = full causal.
  int64_t slidingWindow = 0;
  /// > 0: scores are soft-capped, s → tanh(s / c)·c, before the mask and the softmax (Gemma 2).
  double softcap = 0.0;
  std::vector<int64_t> uniformHeads;  ///< heads whose row is uniform over visible keys (head masking, §1.3)
  /// Optional [n_heads] learned sink logits (gpt-oss): each head's sink joins every non-empty row's
  /// normaliser as one more key with no value and no position, so p over the keys sums to < 1 (HF's
  /// attention weights with the sink column dropped). Statistics stay over the keys; entropy is −Σ_j p log p
  /// over them.
  at::Tensor sinks;
  /// Optional [n_heads, pos_q]: these q/k's row normalisers from an earlier probe of the same q, k, sinks and
  /// queryStart (ProbeResult::rowLse). LseFirst and Moments then skip computing them (a flash call or a tiled
  /// pass per layer); Scan ignores it.
  at::Tensor rowLse;
  /// rowLse came from the forward's own attention kernel (attn.hook_lse: cuDNN on CUDA), not from a probe: it is
  /// checked once per shape against FlashAttention-2's normalisers, like the probe's own cuDNN calls, and computed
  /// afresh where that check fails.
  bool rowLseFromForward = false;
};

/// Two-pass tiled statistics (§11): pass 1 keeps a running max and log-sum-exp per row over key tiles;
/// pass 2 recomputes p_ij = exp(s_ij − lse_i) tile by tile and accumulates only what was asked.
/// Memory O(tileQ·tileK·heads + n); fully masked (future) tiles are skipped. Tile sizes shrink so one
/// score block stays ≤ 256 MB on GPU, ≤ 64 MB on CPU (see chooseProbeTiles). Checks ctx between tiles.
/// Throws InputError on inconsistent shapes, devices or requests.
ProbeResult probeAttention(const ProbeInputs& inputs, const ProbeRequest& request, int64_t tileQ = 512,
                           int64_t tileK = 2048, const RunContext* ctx = nullptr);

/// ProbeResult::columnCounts of a pass without key padding, which is geometry alone: per key j, the rows i ≥
/// request.queryStart (absolute positions queryOffset … queryOffset + nQueries − 1) with j ≤ i and i − j in
/// [bandMin, bandMax] → [key] int64 on `device`. A caller that probes every layer of one sequence needs them once,
/// not per layer.
at::Tensor probeColumnCounts(const ProbeRequest& request, int64_t nQueries, int64_t nKeys, int64_t queryOffset, at::Device device);

/// The same statistics from a materialised pattern [head, query, key] (the reference path and the
/// `--materialize` option); rows whose pattern is all zero count as empty.
ProbeResult statsFromPattern(const at::Tensor& pattern, const ProbeRequest& request, int64_t queryOffset = 0);

}  // namespace mechscope
