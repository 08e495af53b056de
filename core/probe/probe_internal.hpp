#pragma once
// Pieces shared by the probe's two algorithms and the materialised reference path (not a public API).
#include <cstdint>
#include <string>

#include "core/common/env.hpp"
#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "core/probe/attention_probe.hpp"
#include "core/probe/probe_tiles.hpp"

namespace mechscope::probe_detail {

/// Throw InputError when the request cannot apply to nKeys keys (negative k/window, empty band, key
/// set or column keys out of range). `who` names the caller in the message.
void validateRequest(const ProbeRequest& request, int64_t nKeys, const std::string& who);

/// Zero-filled result tensors for everything requested (top-k indices −1), on the options' device; column sums left
/// unfilled when `zeroColumnSums` is false (for a caller that writes all of them).
ProbeResult allocateResult(const ProbeRequest& request, int64_t heads, int64_t nQueries, int64_t nKeys,
                           const at::TensorOptions& floatOptions, const at::TensorOptions& longOptions, bool zeroColumnSums = true);

/// Column counts on `device`, in closed form (no host copy): rows i in [max(j + max(bandMin, 0), queryStart, offset,
/// firstNonEmptyRow), min(j + bandMax, offset + nQueries − 1)] → [nKeys] int64.
at::Tensor columnCounts(const ProbeRequest& request, int64_t nQueries, int64_t nKeys, int64_t offset,
                        int64_t firstNonEmptyRow, at::Device device);

/// statsFromPattern over chunks of `chunkRows` query rows (0: chosen so temporaries stay ~32M elements).
ProbeResult statsFromPatternChunked(const at::Tensor& pattern, const ProbeRequest& request, int64_t queryOffset,
                                    int64_t chunkRows);

/// Shapes and positions of one probe call.
struct Geometry {
  int64_t nq = 0, nk = 0, heads = 0, kvHeads = 0, dHead = 0, group = 1, offset = 0;
};

/// Everything both algorithms derive once per call from the inputs and the request.
struct ProbeSetup {
  Geometry g;
  at::ScalarType cdt = at::kFloat;  ///< compute dtype: fp32 (fp64 when q is fp64)
  at::TensorOptions fopt, lopt;     ///< compute-dtype and int64 options on q's device
  at::Tensor pad;                   ///< [nk] bool on the device, true = masked; undefined without padding
  int64_t firstVisibleKey = 0;      ///< rows before it are empty
  int64_t window = 0;               ///< sliding window W (> 0): key j is visible to row i only if i − j < W
  double softcap = 0.0;             ///< > 0: every score s becomes tanh(s / c)·c before masking (ProbeInputs::softcap)
  at::Tensor uniformIdx;            ///< [u] int64 uniform heads; undefined when none
  at::Tensor sinks;                 ///< [head] learned sink logits in the compute dtype (ProbeInputs::sinks); undefined when none
  at::Tensor keySetInd;             ///< [nk] 0/1 key-set indicator; undefined when no key set
  at::Tensor keyPos, keyPosF;       ///< [nk] int64 / compute dtype
  int64_t rowBegin = 0;             ///< first q row not skipped by queryStart
  ProbeTiles tiles;
  bool lowPrecisionInputs = false;  ///< q and k are bf16/fp16: exact in TF32, so TF32 matmuls lose nothing
};

/// Validate inputs and request and build the per-call setup (throws InputError).
ProbeSetup prepareProbe(const ProbeInputs& in, const ProbeRequest& req, int64_t tileQ, int64_t tileK);

/// Query rows [r0, r1) in the compute dtype as [kvHeads, group·rows, d_head] (heads of one kv head side by side).
at::Tensor queryTile(const ProbeInputs& in, const ProbeSetup& s, int64_t r0, int64_t r1);

/// [rows, cols] bool mask (true = masked: future or padded key) of rows [r0, r1) × keys [c0, c1);
/// undefined when nothing in the tile is masked.
at::Tensor tileMask(const ProbeSetup& s, int64_t r0, int64_t r1, int64_t c0, int64_t c1);

/// The first key any row of [iFirst, …] can see: i − W + 1 with a sliding window, else 0. Key tiles
/// before it are fully masked and skipped.
int64_t firstKeyInWindow(const ProbeSetup& s, int64_t iFirst);

/// Keys [c0, c1) as [kvHeads, d_head, cols] in the compute dtype, contiguous (BLAS-friendly).
at::Tensor keyTile(const ProbeInputs& in, const ProbeSetup& s, int64_t c0, int64_t c1);

/// Scaled (and soft-capped, s.softcap) scores of one tile, [head, rows, cols]: uniform heads zeroed, masked
/// keys −inf; when `rowShift` ([head, rows]) is given it is added to every score of its row (the matmul's
/// epilogue does it, after the soft-cap).
at::Tensor tileScores(const at::Tensor& qt, const at::Tensor& kt, const ProbeSetup& s, double scale, int64_t rows,
                      const at::Tensor& mask, const at::Tensor& rowShift = {});

/// Merge one tile's best keys into the running top-k of its rows: `x` [head, rows, cols] scores (or any
/// monotone transform) of keys [c0, c0 + cols); `topS`/`topI` [head, rows, k]. k = 1 keeps the lowest index
/// on ties (earlier tiles win).
void mergeTileTopK(const at::Tensor& x, int64_t c0, int topK, at::Tensor& topS, at::Tensor& topI);

/// Add Σ_rows p of one tile ([head, rows, cols] for rows [r0, r1) × keys [c0, c1)) to columnSums [head, nk],
/// counting only rows whose (i − j) lies in the request's band; zeroes the out-of-band entries of `p`.
void addBandedColumnSums(at::Tensor& p, const ProbeRequest& req, const ProbeSetup& s, int64_t r0, int64_t r1,
                         int64_t c0, int64_t c1, at::Tensor& columnSums);

/// `req` with per-row distances on where distanceTotal asks for their sum (how every path but Moments gets it).
ProbeRequest withRowDistances(const ProbeRequest& req);

/// Sets res.distanceTotal [head] fp64 to the sum of res.distance over rows (rows before queryStart are 0), then drops
/// the per-row distances unless `req` asked for them; nothing when `req` did not ask for the total.
void sumRowDistances(const ProbeRequest& req, ProbeResult& res);

/// Row log-sum-exp of the scaled, masked scores for rows [rowBegin, nq) → [head, nq] fp64 (−inf for empty
/// or skipped rows). Uses flash attention's normaliser on CUDA when it applies (sets *flash), else key tiles.
at::Tensor rowLogSumExp(const ProbeInputs& in, const ProbeSetup& s, const RunContext* ctx, bool* flash);

/// Whether a fused attention kernel (cuDNN or FlashAttention-2) gives the row normalisers of these inputs with
/// `dHead` head dims: CUDA, bf16/fp16, a plain causal prefill, LibTorch ≥ 2.1, MECHSCOPE_PROBE_FLASH not 0.
bool fusedNormalisersApply(const ProbeInputs& in, const ProbeSetup& s, int64_t dHead);

/// Folds each head's sink logit (s.sinks) into the row normalisers lse [head, nq] fp64 of non-empty rows
/// (empty rows stay −inf); lse itself when there are no sinks.
at::Tensor foldSinks(const ProbeSetup& s, const at::Tensor& lse);

/// Σ_i p_ij for the request's columnKeys given each row's log-sum-exp ([head, nq] fp64) → res.columnKeySums.
void sumColumnKeys(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const at::Tensor& lse,
                   ProbeResult& res);

/// The online-softmax algorithm (ProbeAlgorithm::Scan).
ProbeResult probeScan(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx);

/// The normaliser-first algorithm (ProbeAlgorithm::LseFirst); entropy is not supported (Scan does it).
ProbeResult probeLseFirst(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx);

/// Moments' head distance gathers offsets below this exactly; only the mass beyond it comes from log-sum-exps.
inline constexpr int64_t kMomentsNearDistance = 32;

/// Whether ProbeAlgorithm::Moments can compute `req` for these inputs (probe_moments.cpp).
bool momentsApply(const ProbeRequest& req, const ProbeSetup& s);

/// Whether every log-sum-exp of Moments (head dims d_head and d_head + its bias dims) comes from a fused kernel;
/// without one Moments makes several tiled passes where LseFirst makes two, so Auto does not pick it.
bool momentsFused(const ProbeInputs& in, const ProbeSetup& s);

/// The log-sum-exp moments algorithm (ProbeAlgorithm::Moments); call only when momentsApply.
ProbeResult probeMoments(const ProbeInputs& in, const ProbeRequest& req, const ProbeSetup& s, const RunContext* ctx);

/// While alive, lets CUDA fp32 matmuls use TF32 when `enable` (restores the previous setting).
class Tf32Scope {
 public:
  /// Switch TF32 on for CUDA matmuls when `enable`; no effect otherwise.
  explicit Tf32Scope(bool enable);
  ~Tf32Scope();
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool changed_ = false, previous_ = false;
};

}  // namespace mechscope::probe_detail
