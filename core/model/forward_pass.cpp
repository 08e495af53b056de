// The forward pass: explicit attention math with a hook at every TransformerLens site, an optional
// fused attention kernel (LibTorch ≥ 2) when no attention-internal hook is active, KV caching.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::GradMode: not pulled in by ATen.h in LibTorch 2.x
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "core/common/env.hpp"
#include "core/common/errors.hpp"
#include "core/model/hooked_transformer_impl.hpp"
#include "core/model/moe_mlp.hpp"
#include "core/model/normalization.hpp"
#include "core/model/recomputed_attention.hpp"
#include "core/model/rotary.hpp"

namespace mechscope {

namespace {

#if TORCH_VERSION_MAJOR >= 2
constexpr bool kHasFused = true;
#else
constexpr bool kHasFused = false;
#endif


at::Tensor activate(Activation a, const at::Tensor& x) {
  switch (a) {
    case Activation::GeluNew: return at::gelu(x, "tanh");
    case Activation::Gelu: return at::gelu(x);
    case Activation::Silu: return at::silu(x);
    case Activation::Relu: return at::relu(x);
  }
  return x;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

/// Per-pass attention geometry shared by the layers. The [query, key] mask is built only when a
/// path needs it whole (explicit, fused with padding); the chunked path asks for row tiles.
struct AttnGeometry {
  int64_t past = 0, q = 0, n = 0;
  int64_t window = 0;       // sliding window length (0: none)
  at::Tensor keyMask;       // [batch, key] bool (undefined: no padding)
  at::Device device = at::kCPU;
  bool padded = false;       // some rows may be fully masked
  bool plainCausal = false;  // no padding, no window, no past: is_causal works
  bool noMask = false;       // one query after a cache, no padding/window: nothing to mask

  /// Allowed keys for query rows [r0, r1) over keys [0, kEnd): [batch or 1, 1, r1 − r0, kEnd] bool.
  [[nodiscard]] at::Tensor rows(int64_t r0, int64_t r1, int64_t kEnd) const {
    auto opts = at::TensorOptions().dtype(at::kLong).device(device);
    at::Tensor qi = at::arange(past + r0, past + r1, opts).unsqueeze(1);  // [query, 1] absolute index
    at::Tensor kj = at::arange(0, kEnd, opts).unsqueeze(0);               // [1, key]
    at::Tensor allowed = kj <= qi;                                        // [query, key]
    if (window > 0) allowed = allowed.logical_and(qi - kj < window);
    allowed = allowed.unsqueeze(0).unsqueeze(0);  // [1, 1, query, key]
    if (keyMask.defined()) allowed = allowed.logical_and(keyMask.narrow(1, 0, kEnd).unsqueeze(1).unsqueeze(1));
    return allowed;
  }
  /// The whole mask [batch or 1, 1, query, key], built once per pass on first use.
  [[nodiscard]] const at::Tensor& all() const {
    if (!m_all.defined()) m_all = rows(0, q, n);
    return m_all;
  }
  /// Sets masked scores of query rows [r0, r1) over keys [0, kEnd) to −inf in `scores`
  /// [batch, head, r1 − r0, kEnd]. Plain causal rows (no window, no padding) touch only the last
  /// r1 − r0 keys, where the mask is a strict upper triangle; anything else uses rows().
  void maskScores(at::Tensor& scores, int64_t r0, int64_t r1, int64_t kEnd) const {
    const float ninf = -std::numeric_limits<float>::infinity();
    const int64_t t = r1 - r0;
    if (window == 0 && !padded && kEnd == past + r1) {
      if (t == 1) return;  // the newest key is the query itself: nothing above the diagonal
      if (!m_triu.defined() || m_triu.size(0) != t)
        m_triu = at::ones({t, t}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1);  // [query, key]
      scores.narrow(3, kEnd - t, t).masked_fill_(m_triu, ninf);
      return;
    }
    scores.masked_fill_(rows(r0, r1, kEnd).logical_not(), ninf);
  }

 private:
  mutable at::Tensor m_all;
  mutable at::Tensor m_triu;  // [tile, tile] strict upper triangle of the last tile size asked for
};

/// The geometry of the layers with sliding window `slidingWindow` (0: full attention).
AttnGeometry geometry(int slidingWindow, int64_t q, int64_t past, const at::Tensor& keyMask, at::Device device) {
  AttnGeometry g;
  g.past = past;
  g.q = q;
  g.n = past + q;
  g.device = device;
  const bool window = slidingWindow > 0 && slidingWindow < g.n;
  if (window) g.window = slidingWindow;
  if (keyMask.defined()) {
    g.keyMask = keyMask;
    g.padded = true;
  }
  g.plainCausal = !g.padded && !window && past == 0;
  g.noMask = !g.padded && !window && q == 1;
  return g;
}

/// Query rows per tile of the chunked path: one fp32 score block [batch, head, tile, key] stays near
/// 16 MB on CPU and 256 MB on CUDA (about three such blocks are alive at once).
int64_t chunkRows(int64_t batch, int64_t heads, int64_t keys, bool cuda) {
  const int64_t budget = (cuda ? int64_t{256} : int64_t{16}) << 20;
  const int64_t perRow = std::max<int64_t>(1, batch * heads * keys * 4);
  return std::max<int64_t>(16, budget / perRow);
}

/// Masked attention scores of query rows [r0, r1) over keys [0, kEnd): scale · q·kᵀ (soft-capped to
/// tanh(s / c)·c when `softcap` > 0) with −inf where masked, [batch, head, r1 − r0, kEnd] fp32. Query
/// heads sharing a kv head are stacked on the GEMM's
/// rows ([batch·kv, rep·rows, d_head]), so keys are never repeated. fp32 models take the scale inside
/// the GEMM (alpha) and mask in place: no separate scale or masked_fill copies.
/// qTile [batch, head, t, d_head] holds the query rows [r0, r0 + t).
at::Tensor attnScoresOfRows(const AttnGeometry& geo, const at::Tensor& qTile, const at::Tensor& kh, int64_t r0, int64_t kEnd,
                            double scale, double softcap) {
  const int64_t B = qTile.size(0), H = qTile.size(1), dh = qTile.size(3), Hkv = kh.size(1), rep = H / Hkv, t = qTile.size(2);
  const int64_t r1 = r0 + t;
  at::Tensor q3 = qTile.reshape({B * Hkv, rep * t, dh});                                  // [batch·kv, rep·query, d_head]
  at::Tensor k3 = kh.narrow(2, 0, kEnd).reshape({B * Hkv, kEnd, dh}).transpose(1, 2);   // [batch·kv, d_head, key]
  at::Tensor sc;
  // LibTorch 1.13's naive kernel for tiny products (d_head·rows·keys < 400, e.g. one decode step)
  // reads the output even with beta 0 (NaN from at::empty survives); BLAS-sized products do not.
  const bool blasSized = dh * rep * t * kEnd >= 400;
  if (qTile.scalar_type() == at::kFloat && blasSized) {
    sc = at::empty({B * Hkv, rep * t, kEnd}, qTile.options()).baddbmm_(q3, k3, 0.0, scale);  // beta 0: not read
  } else {
    sc = at::bmm(q3, k3).to(at::kFloat).mul_(scale);
  }
  if (softcap > 0) sc = at::tanh(sc / softcap) * softcap;  // Gemma 2: before the mask, as HF (out of place: autograd)
  sc = sc.view({B, H, t, kEnd});  // [batch, head, query, key]
  geo.maskScores(sc, r0, r1, kEnd);
  return sc;
}

/// attnScoresOfRows of the query rows [r0, r1) of qh [batch, head, query, d_head].
at::Tensor attnScores(const AttnGeometry& geo, const at::Tensor& qh, const at::Tensor& kh, int64_t r0, int64_t r1,
                      int64_t kEnd, double scale, double softcap) {
  return attnScoresOfRows(geo, qh.narrow(2, r0, r1 - r0), kh, r0, kEnd, scale, softcap);
}

/// Softmax of scores [batch, head, rows, key] fp32 over the keys. With learned sinks (gpt-oss; sinks [head])
/// each head's sink logit joins every row as one more column, which is dropped after the softmax: the row
/// then sums to 1 − p(sink), as HF's attention weights. Fully masked rows give 0 with sinks (NaN without).
at::Tensor attnSoftmax(const at::Tensor& scores, const at::Tensor& sinks) {
  if (!sinks.defined()) return at::softmax(scores, -1);
  const int64_t B = scores.size(0), H = scores.size(1), t = scores.size(2), n = scores.size(3);
  at::Tensor sinkColumn = sinks.to(scores.scalar_type()).view({1, H, 1, 1}).expand({B, H, t, 1});  // [batch, head, rows, 1]
  return at::softmax(at::cat({scores, sinkColumn}, -1), -1).narrow(-1, 0, n).contiguous();  // [batch, head, rows, key]
}

/// pattern [batch, head, rows, kEnd] (fp32) · values [batch, kv, ≥ kEnd, d_head] → [batch, head, rows, d_head].
at::Tensor attnValues(const at::Tensor& pattern, const at::Tensor& vh, int64_t kEnd, at::ScalarType dtype) {
  const int64_t B = pattern.size(0), H = pattern.size(1), t = pattern.size(2), Hkv = vh.size(1), dh = vh.size(3);
  at::Tensor p3 = pattern.to(dtype).reshape({B * Hkv, (H / Hkv) * t, kEnd});  // [batch·kv, rep·query, key]
  at::Tensor v3 = vh.narrow(2, 0, kEnd).reshape({B * Hkv, kEnd, dh});      // [batch·kv, key, d_head]
  return at::bmm(p3, v3).view({B, H, t, dh});
}

/// Whether autograd records attention on these queries, keys and values.
bool gradientFlows(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh) {
  return at::GradMode::is_enabled() && (qh.requires_grad() || kh.requires_grad() || vh.requires_grad());
}

/// What every block of one pass shares: config, hooks, mask geometry, rotary tables and shapes.
struct PassContext {
  const ModelConfig& c;
  const Hooker& hp;
  const AttnGeometry& geo;
  const ForwardOptions& opts;
  const RunContext* ctx;
  int64_t batch = 0;                  // B
  int64_t positions = 0;              // P: new positions of this pass
  int64_t past = 0;                   // cached positions before them
  double scale = 1.0;                 // 1 / √d_head (or query_pre_attn_scalar)
  double softcap = 0.0;               // attention soft-cap (0: none)
  at::ScalarType dtype = at::kFloat;  // the model's
  bool cuda = false;                  // the model lives on a CUDA device
  at::Tensor cos, sin;                // [batch, pos, rotary_dim] (rotary models only)
};

/// How many layers of a pass took each attention path.
struct AttnPathCounts {
  int explicitLayers = 0, fusedLayers = 0, chunkedLayers = 0;
  /// "explicit", "fused", "chunked", or "mixed" when the layers differ.
  [[nodiscard]] std::string name() const {
    const int nKinds = (fusedLayers > 0) + (explicitLayers > 0) + (chunkedLayers > 0);
    return nKinds > 1 ? "mixed" : fusedLayers > 0 ? "fused" : chunkedLayers > 0 ? "chunked" : "explicit";
  }
};

enum class AttnKind { Explicit, Fused, Chunked };

/// The attention path of one layer with `queries` rows over `keys` keys. Fused when asked (or Auto) and
/// LibTorch has the kernel. Chunked on request, or Auto without a fused kernel once one layer's scores
/// would exceed one tile budget (short inputs keep the explicit path and its exact numbers).
/// Attention-internal hooks need the whole pattern: explicit. Soft-capped scores and learned sinks
/// (`softcap` true for either) cannot go through the fused kernel: explicit, or chunked under the chunked rule.
AttnKind chooseAttnKind(AttentionPath path, bool internalHooked, bool softcap, int64_t batch, int64_t heads, int64_t queries,
                        int64_t keys, bool cuda) {
  const bool fusable = kHasFused && !softcap;
  const bool wantFused = (path == AttentionPath::Auto || path == AttentionPath::Fused) && fusable && !internalHooked;
  const bool bigScores = queries > chunkRows(batch, heads, keys, cuda);
  const bool wantChunked = !wantFused && !internalHooked &&
                           (path == AttentionPath::Chunked || (path == AttentionPath::Auto && !fusable && bigScores));
  if (wantChunked) return AttnKind::Chunked;
  if (wantFused) return AttnKind::Fused;
  return AttnKind::Explicit;
}

/// Queries [batch, pos, head, d_head], keys and values [batch, pos, kv_head, d_head] of one block.
struct QueryKeyValue {
  at::Tensor q, k, v;
};

/// Q/K/V projections of x1 = ln1(resid) [batch, pos, d_model], qk-norm, hook_q/k/v, then rotary with
/// hook_rot_q/k.
QueryKeyValue projectQkv(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& x1) {
  const ModelConfig& c = pc.c;
  const int64_t B = pc.batch, P = pc.positions, H = c.nHeads, Hkv = c.nKvHeads, dh = c.dHead;
  at::Tensor q = linear(x1, L.wQ, L.bQ);  // [batch, pos, head·d_head]
  at::Tensor k = linear(x1, L.wK, L.bK);  // [batch, pos, kv_head·d_head]
  if (c.qkNorm && c.qkNormWhole) {        // OLMo-2: over the whole projection
    q = applyModelNorm(c, q, L.qNormW, {});
    k = applyModelNorm(c, k, L.kNormW, {});
  }
  q = q.view({B, P, H, dh});                                    // [batch, pos, head, d_head]
  k = k.view({B, P, Hkv, dh});                                  // [batch, pos, kv_head, d_head]
  at::Tensor v = linear(x1, L.wV, L.bV).view({B, P, Hkv, dh});  // [batch, pos, kv_head, d_head]
  if (c.qkNorm && !c.qkNormWhole) {
    q = applyModelNorm(c, q, L.qNormW, {});
    k = applyModelNorm(c, k, L.kNormW, {});
  }
  q = pc.hp(q, nm.q, l);
  k = pc.hp(k, nm.k, l);
  v = pc.hp(v, nm.v, l);
  if (c.positional == PositionalKind::Rotary) {
    q = pc.hp(applyRope(q, pc.cos, pc.sin), nm.rotQ, l);
    k = pc.hp(applyRope(k, pc.cos, pc.sin), nm.rotK, l);
  }
  return {q, k, v};
}

/// Makes room for one key and value entry per layer in `cache`.
void ensureCacheLayers(KVCache& cache, int nLayers) {
  if (static_cast<int>(cache.keys.size()) >= nLayers) return;
  cache.keys.resize(nLayers);
  cache.values.resize(nLayers);
}

/// Appends this pass's keys and values [batch, pos, kv_head, d_head] to layer `l` of `cache`; `k` and
/// `v` become every cached one [batch, past + pos, kv_head, d_head].
void appendToKvCache(KVCache& cache, int l, at::Tensor& k, at::Tensor& v) {
  at::Tensor& ck = cache.keys[l];
  at::Tensor& cv = cache.values[l];
  ck = ck.defined() ? at::cat({ck, k}, 1) : k;
  cv = cv.defined() ? at::cat({cv, v}, 1) : v;
  k = ck;
  v = cv;
}

/// What a caller of attentionTiles sees of each tile: its rows [r0, r0 + t), its key range [0, kEnd), its masked
/// scores and its pattern, both [batch, head, t, kEnd] fp32.
using AttentionTileFn = std::function<void(int64_t r0, int64_t t, int64_t kEnd, const at::Tensor& scores, const at::Tensor& pattern)>;

/// The chunked path's loop (no autograd): query tiles of scores over the keys up to the tile's last row → fp32
/// softmax → @ V, each tile's output written into z [batch, pos, head, d_head]; `onTile` (when set) sees each tile.
at::Tensor attentionTiles(const PassContext& pc, const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh,
                          const at::TensorOptions& zOptions, const at::Tensor& sinks, const AttentionTileFn& onTile) {
  const AttnGeometry& geo = pc.geo;
  const int64_t B = pc.batch, P = pc.positions, H = pc.c.nHeads, dh = pc.c.dHead, N = kh.size(2);
  const int64_t tile = chunkRows(B, H, N, pc.cuda);
  at::Tensor z = at::empty({B, P, H, dh}, zOptions);  // [batch, pos, head, d_head]
  for (int64_t r0 = 0; r0 < P; r0 += tile) {
    const int64_t r1 = std::min(P, r0 + tile);
    const int64_t kEnd = geo.window > 0 || geo.padded ? N : std::min(N, pc.past + r1);  // later keys are all masked
    const at::Tensor st = attnScores(geo, qh, kh, r0, r1, kEnd, pc.scale, pc.softcap);  // [batch, head, tile, key] fp32
    at::Tensor pt = attnSoftmax(st, sinks);                                            // [batch, head, tile, key] fp32
    if (geo.padded) pt = at::nan_to_num(pt, 0.0);
    z.narrow(1, r0, r1 - r0).copy_(attnValues(pt, vh, kEnd, pc.dtype).permute({0, 2, 1, 3}));
    if (onTile) onTile(r0, r1 - r0, kEnd, st, pt);
    if (pc.ctx) pc.ctx->check();
  }
  return z;
}

/// Chunked attention: query tiles of scores [batch, head, tile, keys ≤ last row] → fp32 softmax → @ V;
/// never [.., P, N]. Each tile's output lands in z directly (no concatenation, and hook_z / the O
/// projection read a contiguous [batch, pos, head, d_head]).
/// qh [batch, head, query, d_head], kh and vh [batch, kv_head, key, d_head] → z [batch, pos, head, d_head].
at::Tensor chunkedAttention(const PassContext& pc, const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh,
                            const at::TensorOptions& zOptions, const at::Tensor& sinks) {
  const AttnGeometry& geo = pc.geo;
  const int64_t tile = chunkRows(pc.batch, pc.c.nHeads, kh.size(2), pc.cuda);
  if (gradientFlows(qh, kh, vh)) {
    // Under autograd the tiles' softmax would be kept for the backward ([.., P, N] again): recompute them there.
    RecomputedAttention spec;
    spec.scores = [geo, scale = pc.scale, softcap = pc.softcap](const at::Tensor& qTile, const at::Tensor& keys, int64_t r0) {
      return attnScoresOfRows(geo, qTile, keys, r0, keys.size(2), scale, softcap);
    };
    spec.tile = tile;
    spec.keysUpToRow = !(geo.window > 0 || geo.padded);
    spec.past = pc.past;
    spec.dtype = pc.dtype;
    if (sinks.defined()) spec.sinks = sinks.to(at::kFloat);
    return recomputedAttention(qh, kh, vh, spec);
  }
  return attentionTiles(pc, qh, kh, vh, zOptions, sinks, {});
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
/// Whether cuDNN's causal attention output `zh` [batch, head, query, d_head] agrees with LibTorch's own SDPA choice on
/// the same inputs (kr, vr: the kv heads already repeated per query head), checked on the first call per (d_head, dtype, device, heads, length mod 128) in a process, as the
/// probe checks cuDNN's normalisers. Both are p-weighted means of bf16/fp16 values with p rounded to that type before
/// P·V at worst, and the output rounded once: |Δo_i| ≤ 2·2⁻⁸ (Σ_j p_ij |v_j| + |o_i|) for bf16 (fp16 is finer), checked
/// with 2× margin, where Σ_j p_ij |v_j| is SDPA's output for |v|. A wrong mask or layout moves early rows by O(|v|).
bool cudnnOutputTrusted(const at::Tensor& qh, const at::Tensor& kr, const at::Tensor& vr, const at::Tensor& zh, double scale) {
  using Key = std::tuple<int64_t, int, int, int64_t, int64_t>;
  static std::mutex mutex;
  static std::map<Key, bool> agreed;
  const Key key{qh.size(3), static_cast<int>(qh.scalar_type()), qh.device().index(), qh.size(1), qh.size(2) % 128};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (const auto it = agreed.find(key); it != agreed.end()) return it->second;
  }
  const at::Tensor ref = at::scaled_dot_product_attention(qh, kr, vr, {}, 0.0, true, scale).to(at::kFloat);
  const at::Tensor absMean = at::scaled_dot_product_attention(qh, kr, vr.abs(), {}, 0.0, true, scale).to(at::kFloat);
  const at::Tensor bound = (absMean + ref.abs()) * (4.0 / 256.0) + 1e-6;
  const bool ok = ((zh.to(at::kFloat) - ref).abs() <= bound).all().item<bool>();
  if (!ok)
    std::fprintf(stderr, "forward: cuDNN's attention differs from SDPA's (d_head %lld, %lld positions); its normalisers are not used\n",
                 static_cast<long long>(qh.size(3)), static_cast<long long>(qh.size(2)));
  const std::lock_guard<std::mutex> lock(mutex);
  agreed[key] = ok;
  return ok;
}
#endif

#if TORCH_VERSION_MAJOR >= 2
/// cuDNN's causal attention with its row log-sum-exps shown to attn.hook_lse: z [batch, pos, head, d_head], or undefined
/// when the hook is not on, the inputs are not a plain causal bf16/fp16 CUDA pass, or cuDNN does not take them (then
/// fusedAttention runs as without the hook, and the hook does not fire). kv heads are repeated for grouped queries.
at::Tensor attentionWithLse(const PassContext& pc, const LayerHookNames& nm, int l, const at::Tensor& qh, const at::Tensor& kh,
                            const at::Tensor& vh, int64_t rep) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
  const bool lowPrecision = qh.scalar_type() == at::kBFloat16 || qh.scalar_type() == at::kHalf;
  if (!pc.hp.on(nm.lse) || !pc.geo.plainCausal || !lowPrecision || !qh.is_cuda() || qh.size(3) % 8 != 0 || qh.size(3) > 256 ||
      switchedOff("MECHSCOPE_FORWARD_LSE"))
    return {};
  const at::Tensor kr = rep > 1 ? kh.repeat_interleave(rep, 1) : kh;  // [batch, head, key, d_head]
  const at::Tensor vr = rep > 1 ? vh.repeat_interleave(rep, 1) : vh;  // [batch, head, key, d_head]
  at::Tensor zh, lse;  // [batch, head, query, d_head], [batch, head, query(, 1)] fp32
  try {
    auto out = at::_scaled_dot_product_cudnn_attention(qh, kr, vr, std::nullopt, true, 0.0, true, false, pc.scale);
    zh = std::get<0>(out);
    lse = std::get<1>(out);
  } catch (const c10::Error&) {
    return {};  // cuDNN absent or not taking this shape: the plain fused call
  }
  if (lse.numel() != qh.size(0) * qh.size(1) * qh.size(2) || !cudnnOutputTrusted(qh, kr, vr, zh, pc.scale)) return {};
  (void)pc.hp(lse.reshape({qh.size(0), qh.size(1), qh.size(2)}), nm.lse, l);  // shown, not taken back
  return zh.permute({0, 2, 1, 3});
#else
  (void)pc, (void)nm, (void)l, (void)qh, (void)kh, (void)vh, (void)rep;
  return {};
#endif
}
#endif

/// Fused attention (scaled_dot_product_attention, LibTorch ≥ 2). Grouped queries: the kernel reads each kv head for
/// its group itself where LibTorch takes enable_gqa (≥ 2.5) and a fused kernel serves it (CUDA, bf16/fp16, no mask;
/// MECHSCOPE_SDPA_GQA=0: never), else kv heads are repeated.
/// With attn.hook_lse hooked, a plain causal bf16/fp16 pass on CUDA runs cuDNN's kernel, which also returns each row's
/// log-sum-exp of the scaled scores, and shows those [batch, head, query] fp32 to the hook (the attention probe's row
/// normalisers, one attention-sized call per layer saved; LibTorch ≥ 2.6, MECHSCOPE_FORWARD_LSE=0: never).
/// qh [batch, head, query, d_head], kh and vh [batch, kv_head, key, d_head] → z [batch, pos, head, d_head].
at::Tensor fusedAttention(const PassContext& pc, const LayerHookNames& nm, int l, const at::Tensor& qh, const at::Tensor& kh,
                          const at::Tensor& vh) {
#if TORCH_VERSION_MAJOR >= 2
  const AttnGeometry& geo = pc.geo;
  const int64_t rep = pc.c.nHeads / pc.c.nKvHeads;
  if (at::Tensor z = attentionWithLse(pc, nm, l, qh, kh, vh, rep); z.defined()) return z;
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5
  // Only where a fused kernel takes grouped heads: flash / cuDNN need bf16/fp16, d_head ≤ 256 and no explicit mask;
  // anything else with enable_gqa falls to the math kernel ([batch, head, q, k] scores), worse than repeated kv heads.
  const bool lowPrecision = qh.scalar_type() == at::kBFloat16 || qh.scalar_type() == at::kHalf;
  const bool gqa = rep > 1 && (geo.plainCausal || geo.noMask) && lowPrecision && qh.size(3) <= 256 && qh.is_cuda() &&
                   !switchedOff("MECHSCOPE_SDPA_GQA");
#define MECHSCOPE_SDPA_GQA , gqa
#else
  const bool gqa = false;
#define MECHSCOPE_SDPA_GQA
#endif
  const bool repeat = rep > 1 && !gqa;
  at::Tensor kr = repeat ? kh.repeat_interleave(rep, 1) : kh;  // [batch, head (kv_head with gqa), key, d_head]
  at::Tensor vr = repeat ? vh.repeat_interleave(rep, 1) : vh;  // [batch, head (kv_head with gqa), key, d_head]
  // The kernel scales by 1/√d_head unless told otherwise; Gemma's query_pre_attn_scalar (and any family whose
  // scale differs) needs the model's own: passed where LibTorch takes it (≥ 2.1), else folded into q.
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1
  const at::Tensor& qs = qh;
#define MECHSCOPE_SDPA_SCALE , pc.scale
#else
  const at::Tensor qs = qh * (pc.scale * std::sqrt(static_cast<double>(qh.size(3))));
#define MECHSCOPE_SDPA_SCALE
#endif
  at::Tensor zh;  // [batch, head, query, d_head]
  if (geo.plainCausal) zh = at::scaled_dot_product_attention(qs, kr, vr, {}, 0.0, true MECHSCOPE_SDPA_SCALE MECHSCOPE_SDPA_GQA);
  else if (geo.noMask) zh = at::scaled_dot_product_attention(qs, kr, vr, {}, 0.0, false MECHSCOPE_SDPA_SCALE MECHSCOPE_SDPA_GQA);
  else zh = at::scaled_dot_product_attention(qs, kr, vr, geo.all(), 0.0, false MECHSCOPE_SDPA_SCALE MECHSCOPE_SDPA_GQA);
#undef MECHSCOPE_SDPA_SCALE
#undef MECHSCOPE_SDPA_GQA
  if (geo.padded) zh = at::nan_to_num(zh, 0.0);  // fully masked (padding) query rows
  return zh.permute({0, 2, 1, 3});
#else
  return {};  // never chosen: chooseAttnKind picks Fused only when kHasFused
#endif
}

/// The explicit path from the (hooked) scores [batch, head, query, key] on: fp32 softmax (rows sum to < 1 with sinks),
/// hook_pattern, @ V → z [batch, pos, head, d_head].
at::Tensor explicitFromScores(const PassContext& pc, const LayerHookNames& nm, int l, const at::Tensor& scores, const at::Tensor& vh,
                              const at::Tensor& sinks) {
  at::Tensor pattern = attnSoftmax(scores, sinks);  // [batch, head, query, key] fp32
  if (pc.geo.padded) pattern = at::nan_to_num(pattern, 0.0);
  pattern = pc.hp(pattern, nm.pattern, l);
  return attnValues(pattern, vh, scores.size(3), pc.dtype).permute({0, 2, 1, 3}).contiguous();
}

/// Explicit attention with hook_attn_scores and hook_pattern. Grouped heads: query head h reads kv head
/// h / rep, without materialising repeated keys.
/// qh [batch, head, query, d_head], kh and vh [batch, kv_head, key, d_head] → z [batch, pos, head, d_head].
at::Tensor explicitAttention(const PassContext& pc, const LayerHookNames& nm, int l, const at::Tensor& qh, const at::Tensor& kh,
                             const at::Tensor& vh, const at::Tensor& sinks) {
  const int64_t N = kh.size(2);
  at::Tensor scores = pc.hp(attnScores(pc.geo, qh, kh, 0, pc.positions, N, pc.scale, pc.softcap), nm.scores, l);  // [batch, head, query, key]
  return explicitFromScores(pc, nm, l, scores, vh, sinks);
}

/// Lays one query tile's scores and pattern st, pt [batch, head, t, kEnd] into the whole maps [batch, head, query, key]
/// at rows [r0, r0 + t): −inf and 0 in the keys past kEnd, as the explicit path has them there.
void layTileInto(AttentionMaps& maps, int64_t r0, int64_t t, int64_t kEnd, const at::Tensor& st, const at::Tensor& pt) {
  const int64_t N = maps.scores.size(3);
  maps.scores.narrow(2, r0, t).narrow(3, 0, kEnd).copy_(st);
  maps.pattern.narrow(2, r0, t).narrow(3, 0, kEnd).copy_(pt);
  if (kEnd == N) return;
  maps.scores.narrow(2, r0, t).narrow(3, kEnd, N - kEnd).fill_(-std::numeric_limits<float>::infinity());
  maps.pattern.narrow(2, r0, t).narrow(3, kEnd, N - kEnd).zero_();
}

/// What formDeferredMaps needs of a pass, copied so that it can run on any thread after the pass.
struct DeferredMapsSpec {
  AttnGeometry geo;
  int64_t batch = 0, positions = 0, past = 0, heads = 0;
  double scale = 1.0, softcap = 0.0;
  bool cuda = false;
  bool tiled = false;  // as tiledShown would choose for a hooked pass
};

/// The scores and pattern a pass with both hooks on would have shown for qh [batch, head, query, d_head] over kh
/// [batch, kv_head, key, d_head]: tiledShownAttention's tiles where it would have tiled them, else the explicit
/// path's whole square; the same functions, so the same values. No autograd.
AttentionMaps formDeferredMaps(const DeferredMapsSpec& d, const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& sinks) {
  const at::NoGradGuard noGrad;
  const int64_t B = d.batch, P = d.positions, H = d.heads, N = kh.size(2);
  if (!d.tiled) {
    AttentionMaps m;
    m.scores = attnScores(d.geo, qh, kh, 0, P, N, d.scale, d.softcap);  // [batch, head, query, key]
    m.pattern = attnSoftmax(m.scores, sinks);                           // [batch, head, query, key]
    if (d.geo.padded) m.pattern = at::nan_to_num(m.pattern, 0.0);
    return m;
  }
  const at::TensorOptions f32 = qh.options().dtype(at::kFloat);
  AttentionMaps maps{at::empty({B, H, P, N}, f32), at::empty({B, H, P, N}, f32)};  // [batch, head, query, key] each
  const int64_t tile = chunkRows(B, H, N, d.cuda);
  for (int64_t r0 = 0; r0 < P; r0 += tile) {  // attentionTiles' loop without the values
    const int64_t r1 = std::min(P, r0 + tile);
    const int64_t kEnd = d.geo.window > 0 || d.geo.padded ? N : std::min(N, d.past + r1);
    const at::Tensor st = attnScores(d.geo, qh, kh, r0, r1, kEnd, d.scale, d.softcap);  // [batch, head, tile, key]
    at::Tensor pt = attnSoftmax(st, sinks);                                            // [batch, head, tile, key]
    if (d.geo.padded) pt = at::nan_to_num(pt, 0.0);
    layTileInto(maps, r0, r1 - r0, kEnd, st, pt);
  }
  return maps;
}

/// Attention with hook_attn_scores and hook_pattern, computed in the chunked path's query tiles (keys up to each
/// tile's last row) and laid into whole [batch, head, query, key] tensors for the hooks: the scores above the
/// diagonal are −inf and the pattern there 0, as the explicit path gives them, but the masked key blocks are never
/// multiplied (at 1K tokens and 4 tiles 62.5 % of the explicit path's attention products, toward half at long
/// contexts). z is the chunked path's, bit for bit, so reading these hooks leaves the logits of a pass that would
/// have been chunked unchanged. A hook that changed the scores or the pattern gets the explicit path's arithmetic
/// from there on. Not under autograd (the whole tensors would be kept twice): explicitAttention.
/// qh [batch, head, query, d_head], kh and vh [batch, kv_head, key, d_head] → z [batch, pos, head, d_head].
at::Tensor tiledShownAttention(const PassContext& pc, const LayerHookNames& nm, int l, const at::Tensor& qh, const at::Tensor& kh,
                               const at::Tensor& vh, const at::TensorOptions& zOptions, const at::Tensor& sinks) {
  const int64_t B = pc.batch, P = pc.positions, H = pc.c.nHeads, N = kh.size(2);
  const at::TensorOptions f32 = qh.options().dtype(at::kFloat);
  AttentionMaps maps{at::empty({B, H, P, N}, f32), at::empty({B, H, P, N}, f32)};  // [batch, head, query, key] each
  const at::Tensor z = attentionTiles(pc, qh, kh, vh, zOptions, sinks,
                                      [&](int64_t r0, int64_t t, int64_t kEnd, const at::Tensor& st, const at::Tensor& pt) {
                                        layTileInto(maps, r0, t, kEnd, st, pt);
                                      });  // [batch, pos, head, d_head]
  const at::Tensor& scores = maps.scores;
  const at::Tensor& pattern = maps.pattern;
  const ShownToHook shownScores = showToHook(pc.hp, scores, nm.scores, l);
  if (shownScores.changed) return explicitFromScores(pc, nm, l, shownScores.value, vh, sinks);
  const ShownToHook shownPattern = showToHook(pc.hp, pattern, nm.pattern, l);
  if (shownPattern.changed) return attnValues(shownPattern.value, vh, N, pc.dtype).permute({0, 2, 1, 3}).contiguous();
  return z;
}

/// `out` [batch, pos, d_model] through a post-norm (ln1_post / ln2_post: Gemma 2/3, OLMo-2) when `on`.
at::Tensor postNorm(const PassContext& pc, bool on, const at::Tensor& out, const at::Tensor& w, const std::string& hookName, int l) {
  return on ? pc.hp(applyModelNorm(pc.c, out, w, {}), hookName, l) : out;
}

/// The per-head outputs result[b, p, h, :] = z[b, p, h, :] · W_O[:, h, :]ᵀ → [batch, pos, head, d_model], laid out
/// contiguously. einsum forms them as [head, pos, d_model] and hands back a permuted view, which every reader
/// (the cache writer first) then copies; on the CPU outside autograd each head's product goes straight into
/// its strided slice of one contiguous tensor (BLAS writes rows at a stride of head · d_model). On a GPU one
/// batched product and one copy beat batch · head small kernels.
at::Tensor perHeadOutputs(const at::Tensor& z, const at::Tensor& wO, int64_t H, int64_t dh) {
  const int64_t B = z.size(0), P = z.size(1), D = wO.size(0);
  at::Tensor wO3 = wO.view({D, H, dh});  // [d_model, head, d_head]
  if (!z.device().is_cpu()) return at::einsum("bphe,dhe->bphd", {z, wO3}).contiguous();
  if (at::GradMode::is_enabled() && (z.requires_grad() || wO.requires_grad()))
    return at::einsum("bphe,dhe->bphd", {z, wO3});
  at::Tensor result = at::empty({B, P, H, D}, z.options());  // [batch, pos, head, d_model]
  at::Tensor wT = wO3.permute({1, 2, 0});                    // [head, d_head, d_model] (a view)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor out = result.select(0, b).select(1, h);  // [pos, d_model], rows H·D apart
      at::mm_out(out, z.select(0, b).select(1, h), wT.select(0, h));
    }
  return result;
}

/// hook_z [batch, pos, head, d_head] through W_O (and ln1_post) → hook_attn_out [batch, pos, d_model], what
/// joins the residual; per-head outputs (hook_result [batch, pos, head, d_model], before ln1_post) are
/// formed only when that hook is on.
at::Tensor attentionOutput(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& z) {
  const ModelConfig& c = pc.c;
  const int64_t H = c.nHeads, dh = c.dHead;
  at::Tensor attnOut;  // [batch, pos, d_model]
  // Per-head outputs that a hook changed are summed; read-only ones leave the unhooked output projection.
  const ShownToHook result = pc.hp.on(nm.result) ? showToHook(pc.hp, perHeadOutputs(z, L.wO, H, dh), nm.result, l)
                                                 : ShownToHook{};  // [batch, pos, head, d_model]
  if (result.changed) {
    attnOut = result.value.sum(2);
    if (L.bO.defined()) attnOut = attnOut + L.bO;
  } else {
    attnOut = linear(z.reshape({pc.batch, pc.positions, H * dh}), L.wO, L.bO);
  }
  attnOut = postNorm(pc, c.postAttnNorm, attnOut, L.ln1PostW, nm.ln1Post, l);
  return pc.hp(attnOut, nm.attnOut, l);  // [batch, pos, d_model]
}

/// Whether a layer's hooked maps are formed in query tiles: its scores exceed one chunk tile (where an unhooked pass
/// would be chunked or fused) and the explicit path was not asked for.
bool mapsInTiles(const PassContext& pc, int64_t keys) {
  return pc.opts.path != AttentionPath::Explicit && pc.positions > chunkRows(pc.batch, pc.c.nHeads, keys, pc.cuda);
}

/// Whether a layer whose scores or pattern are hooked takes tiledShownAttention: its scores exceed one chunk tile
/// (where an unhooked pass would be chunked or fused), the explicit path was not asked for, and no gradient flows.
bool tiledShown(const PassContext& pc, bool internalHooked, int64_t keys, const at::Tensor& qh, const at::Tensor& kh,
                const at::Tensor& vh) {
  if (!internalHooked) return false;
  if (gradientFlows(qh, kh, vh)) return false;
  return mapsInTiles(pc, keys);
}

/// Hands opts.onDeferredMaps (when set) the forming of layer l's maps from qh and kh (see formDeferredMaps), for a
/// layer whose maps are not hooked and where no gradient flows.
void deferMaps(const PassContext& pc, int l, const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh,
               const at::Tensor& sinks) {
  if (!pc.opts.onDeferredMaps) return;
  if (gradientFlows(qh, kh, vh)) return;
  DeferredMapsSpec d{.geo = pc.geo, .batch = pc.batch, .positions = pc.positions, .past = pc.past, .heads = pc.c.nHeads,
                     .scale = pc.scale, .softcap = pc.softcap, .cuda = pc.cuda};
  d.tiled = mapsInTiles(pc, kh.size(2));
  const int64_t mapBytes = pc.batch * pc.c.nHeads * pc.positions * kh.size(2) * 4;
  pc.opts.onDeferredMaps(l, mapBytes, [d = std::move(d), qh, kh, sinks] { return formDeferredMaps(d, qh, kh, sinks); });
}

/// The attention of one block on x1 = ln1(resid) [batch, pos, d_model] → hook_attn_out [batch, pos, d_model].
/// Extends `cache` when given; counts the path it took in `counts`.
at::Tensor attentionBlock(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& x1,
                          KVCache* cache, AttnPathCounts& counts) {
  QueryKeyValue qkv = projectQkv(pc, L, nm, l, x1);
  if (cache) appendToKvCache(*cache, l, qkv.k, qkv.v);
  const int64_t N = qkv.k.size(1);
  at::Tensor qh = qkv.q.permute({0, 2, 1, 3});  // [batch, head, query, d_head]
  at::Tensor kh = qkv.k.permute({0, 2, 1, 3});  // [batch, kv_head, key, d_head]
  at::Tensor vh = qkv.v.permute({0, 2, 1, 3});  // [batch, kv_head, key, d_head]
  const bool internalHooked = pc.hp.on(nm.scores) || pc.hp.on(nm.pattern);
  at::Tensor z;  // [batch, pos, head, d_head]
  // Learned sinks (gpt-oss), like soft-capping, have no fused kernel: explicit or chunked.
  const bool unfusable = pc.softcap > 0 || L.sinks.defined();
  switch (chooseAttnKind(pc.opts.path, internalHooked, unfusable, pc.batch, pc.c.nHeads, pc.positions, N, pc.cuda)) {
    case AttnKind::Chunked:
      z = chunkedAttention(pc, qh, kh, vh, qkv.q.options(), L.sinks);
      ++counts.chunkedLayers;
      break;
    case AttnKind::Fused:
      z = fusedAttention(pc, nm, l, qh, kh, vh);
      ++counts.fusedLayers;
      break;
    case AttnKind::Explicit:
      z = tiledShown(pc, internalHooked, N, qh, kh, vh) ? tiledShownAttention(pc, nm, l, qh, kh, vh, qkv.q.options(), L.sinks)
                                                        : explicitAttention(pc, nm, l, qh, kh, vh, L.sinks);
      ++counts.explicitLayers;
      break;
  }
  if (!internalHooked) deferMaps(pc, l, qh, kh, vh, L.sinks);
  z = pc.hp(z, nm.z, l);  // [batch, pos, head, d_head]
  return attentionOutput(pc, L, nm, l, z);
}

/// The MLP of one block on x2 = ln2(…) [batch, pos, d_model] (and ln2_post) → hook_mlp_out [batch, pos, d_model].
at::Tensor mlpBlock(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& x) {
  const ModelConfig& c = pc.c;
  if (c.isMoeLayer(l)) {  // the mixture of experts (core/model/moe_mlp.hpp)
    at::Tensor out = moeMlp(c, L.moe, MoeSite{.names = nm, .layer = l, .hp = pc.hp}, x);  // [batch, pos, d_model]
    return pc.hp(postNorm(pc, c.postMlpNorm, out, L.ln2PostW, nm.ln2Post, l), nm.mlpOut, l);
  }
  at::Tensor post;  // [batch, pos, d_mlp]
  if (c.gatedMlp) {
    at::Tensor pre = pc.hp(linear(x, L.wGate, L.bGate), nm.mlpPre, l);          // [batch, pos, d_mlp]
    at::Tensor preLinear = pc.hp(linear(x, L.wIn, L.bIn), nm.mlpPreLinear, l);  // [batch, pos, d_mlp]
    post = activate(c.activation, pre) * preLinear;
  } else {
    at::Tensor pre = pc.hp(linear(x, L.wIn, L.bIn), nm.mlpPre, l);  // [batch, pos, d_mlp]
    post = activate(c.activation, pre);
  }
  post = pc.hp(post, nm.mlpPost, l);
  return pc.hp(postNorm(pc, c.postMlpNorm, linear(post, L.wOut, L.bOut), L.ln2PostW, nm.ln2Post, l), nm.mlpOut, l);  // [batch, pos, d_model]
}

/// ln2 of `x` (hook ln2.hook_normalized), or `x` itself without pre-norms (OLMo-2).
at::Tensor preNorm2(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& x) {
  return pc.c.preNorms ? pc.hp(applyModelNorm(pc.c, x, L.ln2W, L.ln2B), nm.ln2, l) : x;
}

/// resid_pre + attention + MLP [batch, pos, d_model]: parallel blocks read ln2 of resid_pre and sum in
/// HF's order; sequential ones pass through hook_resid_mid.
at::Tensor addAttnAndMlp(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& resid,
                         const at::Tensor& attnOut) {
  const ModelConfig& c = pc.c;
  if (c.parallelAttnMlp) {
    at::Tensor x2 = preNorm2(pc, L, nm, l, resid);
    at::Tensor mlpOut = mlpBlock(pc, L, nm, l, x2);
    return mlpOut + attnOut + resid;  // HF's summation order
  }
  at::Tensor mid = pc.hp(resid + attnOut, nm.residMid, l);
  at::Tensor x2 = preNorm2(pc, L, nm, l, mid);
  return mid + mlpBlock(pc, L, nm, l, x2);
}

/// One transformer block: resid_pre [batch, pos, d_model] → hook_resid_post [batch, pos, d_model].
at::Tensor runBlock(const PassContext& pc, const LayerWeights& L, const LayerHookNames& nm, int l, const at::Tensor& residIn,
                    KVCache* cache, AttnPathCounts& counts) {
  at::Tensor resid = pc.hp(residIn, nm.residPre, l);  // [batch, pos, d_model]
  at::Tensor x1 = pc.c.preNorms ? pc.hp(applyModelNorm(pc.c, resid, L.ln1W, L.ln1B), nm.ln1, l) : resid;  // OLMo-2: no pre-norm
  if (pc.opts.queriesAndKeysOnly) {
    (void)projectQkv(pc, L, nm, l, x1);  // only its hooks are wanted
    return resid;
  }
  at::Tensor attnOut = attentionBlock(pc, L, nm, l, x1, cache, counts);
  return pc.hp(addAttnAndMlp(pc, L, nm, l, resid, attnOut), nm.residPost, l);
}

/// Positions per block of the unembedding of `positions`: `asked` when > 0, else about 64 MiB of fp32 logits (at
/// least 16 positions), evened out over the blocks (GPT-2 at 1,024 tokens: 4 × 256; Qwen3's 151,936-token
/// vocabulary: 10 blocks).
int64_t logitBlockPositions(int64_t asked, int64_t batch, int64_t positions, int64_t vocab) {
  if (asked > 0) return asked;
  constexpr int64_t kBlockBytes = int64_t{64} << 20;
  const int64_t most = std::max<int64_t>(16, kBlockBytes / std::max<int64_t>(1, batch * vocab * 4));
  const int64_t blocks = (positions + most - 1) / most;
  return (positions + blocks - 1) / std::max<int64_t>(1, blocks);
}

/// The unembedding of x [batch, pos, d_model] (contiguous) in blocks of `step` positions → fp32 logits
/// [batch, pos, vocab], announcing each block to `onRows` (when set) once its rows are final. fp32 without a
/// soft-cap or a gradient goes straight into the logits' rows, batch row by batch row (the product at::linear
/// forms, on fewer rows); otherwise each block is formed and copied in.
at::Tensor unembedInBlocks(const ModelConfig& c, const ModelWeights& W, const at::Tensor& x, int64_t step,
                           const std::function<void(const at::Tensor&, int64_t, int64_t)>& onRows) {
  const int64_t B = x.size(0), P = x.size(1), V = W.wU.size(0);
  at::Tensor logits = at::empty({B, P, V}, x.options().dtype(at::kFloat));  // [batch, pos, vocab]
  // out= products keep no gradient: a pass that needs one forms each block and copies it in.
  const bool direct = x.scalar_type() == at::kFloat && W.wU.scalar_type() == at::kFloat && c.finalSoftcap <= 0 &&
                      !x.requires_grad() && !W.wU.requires_grad();
  for (int64_t p0 = 0; p0 < P; p0 += step) {
    const int64_t n = std::min(step, P - p0);
    if (direct) {
      for (int64_t b = 0; b < B; ++b) {
        at::Tensor rows = logits.select(0, b).narrow(0, p0, n);  // [n, vocab], contiguous
        const at::Tensor xs = x.select(0, b).narrow(0, p0, n);  // [n, d_model]
        if (W.bU.defined()) at::addmm_out(rows, W.bU, xs, W.wU.t());
        else at::mm_out(rows, xs, W.wU.t());
      }
    } else {
      at::Tensor part = linear(x.narrow(1, p0, n), W.wU, W.bU);  // [batch, n, vocab]
      if (c.finalSoftcap > 0) part = at::tanh(part.to(at::kFloat) / c.finalSoftcap) * c.finalSoftcap;  // Gemma 2
      logits.narrow(1, p0, n).copy_(part);
    }
    if (onRows) onRows(logits, p0, p0 + n);
  }
  return logits;
}

/// Final norm and unembedding of resid [batch, pos, d_model] (its last position only when `lastOnly`)
/// → fp32 logits [batch, pos or 1, vocab]. On the CPU, long inputs are unembedded in blocks of positions
/// (logitBlockPositions), whether or not opts.onLogitRows hears of them, so the logits do not depend on it.
at::Tensor unembed(const ModelConfig& c, const ModelWeights& W, const Hooker& hp, const at::Tensor& resid,
                   const ForwardOptions& opts) {
  const bool lastOnly = opts.logitsLastOnly;
  at::Tensor x = lastOnly ? resid.narrow(1, resid.size(1) - 1, 1) : resid;
  x = hp(applyModelNorm(c, x, W.lnFinalW, W.lnFinalB), "ln_final.hook_normalized", -1);
  const int64_t P = x.size(1);
  const int64_t step = logitBlockPositions(opts.logitBlockPositions, x.size(0), P, W.wU.size(0));
  at::Tensor logits;  // [batch, pos, vocab]
  // On the CPU only: a GPU keeps one large product (the GPU forward's GEMM rate is measured with it; cuBLAS may
  // pick another algorithm for fewer rows), and a cache of a GPU run waits for device-to-host copies anyway.
  if (step < P && x.device().is_cpu()) {
    logits = unembedInBlocks(c, W, x.is_contiguous() ? x : x.contiguous(), step, opts.onLogitRows);
  } else {
    logits = linear(x, W.wU, W.bU).to(at::kFloat);
    if (c.finalSoftcap > 0) logits = at::tanh(logits / c.finalSoftcap) * c.finalSoftcap;  // Gemma 2
    if (opts.onLogitRows && P > 0) opts.onLogitRows(logits, 0, P);
  }
  return hp(logits, "unembed.hook_logits", -1);
}

}  // namespace

at::Tensor applyActivation(Activation activation, const at::Tensor& x) { return activate(activation, x); }

at::Tensor ForwardPass::positionIds(const at::Tensor& keyMask, int64_t batch, int64_t pos, int64_t past, at::Device device) {
  if (keyMask.defined()) {
    // As HF generate: position = number of real tokens before it (padding does not count).
    at::Tensor p = keyMask.to(at::kLong).cumsum(1) - 1;  // [batch, past + pos]
    return p.narrow(1, past, pos).clamp_min(0);
  }
  return at::arange(past, past + pos, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0).expand({batch, pos});
}

void ForwardPass::prepare(HookedTransformer& m) {
  m.m_impl = std::make_unique<HookedTransformer::Impl>();
  for (int l = 0; l < m.m_config.nLayers; ++l) {
    const std::string b = fmt::format("blocks.{}.", l);
    LayerHookNames n;
    n.residPre = b + "hook_resid_pre";
    n.ln1 = b + "ln1.hook_normalized";
    n.q = b + "attn.hook_q";
    n.k = b + "attn.hook_k";
    n.v = b + "attn.hook_v";
    n.rotQ = b + "attn.hook_rot_q";
    n.rotK = b + "attn.hook_rot_k";
    n.scores = b + "attn.hook_attn_scores";
    n.pattern = b + "attn.hook_pattern";
    n.z = b + "attn.hook_z";
    n.lse = b + "attn.hook_lse";
    n.result = b + "attn.hook_result";
    n.attnOut = b + "hook_attn_out";
    n.ln1Post = b + "ln1_post.hook_normalized";
    n.residMid = b + "hook_resid_mid";
    n.ln2 = b + "ln2.hook_normalized";
    n.mlpPre = b + "mlp.hook_pre";
    n.mlpPreLinear = b + "mlp.hook_pre_linear";
    n.mlpPost = b + "mlp.hook_post";
    n.ln2Post = b + "ln2_post.hook_normalized";
    n.mlpOut = b + "hook_mlp_out";
    n.residPost = b + "hook_resid_post";
    n.routerLogits = b + "mlp.hook_router_logits";
    n.expertWeights = b + "mlp.hook_expert_weights";
    n.expertIndices = b + "mlp.hook_expert_indices";
    n.expertOut = b + "mlp.hook_expert_out";
    n.sharedExpertOut = b + "mlp.hook_shared_expert_out";
    m.m_impl->names.push_back(std::move(n));
  }
  const ModelConfig& c = m.m_config;
  if (c.positional == PositionalKind::Rotary) {
    m.m_impl->invFreq = ropeInvFreq(c, m.device());
    if (c.ropeScaling.kind == RopeScalingKind::LongRope) m.m_impl->invFreqLong = ropeInvFreq(c, m.device(), true);
    if (c.slidingRope) {
      if (c.slidingRope->scaling.kind == RopeScalingKind::LongRope)
        throw UnsupportedError(fmt::format("{}: longrope on the sliding layers' rotary is not supported", c.modelType));
      m.m_impl->invFreqSliding = ropeInvFreq(c.rotaryDim, c.slidingRope->theta, c.slidingRope->scaling, m.device());
    }
  }
}

at::Tensor ForwardPass::embed(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& positions,
                              const HookSet* hooks, int step) {
  const Hooker hp{hooks, step};
  const auto& w = m.weights();
  at::Tensor x = at::embedding(w.wE, tokens);  // [batch, pos, d_model]
  // Gemma: × √d_model with the multiplier rounded to the compute dtype first, as HF.
  if (m.config().embedScale != 1.0) x = x * at::scalar_tensor(m.config().embedScale, x.options());
  x = hp(x, "hook_embed", -1);
  if (m.config().positional == PositionalKind::Learned) {
    at::Tensor pe = hp(at::embedding(w.wPos, positions), "hook_pos_embed", -1);  // [batch, pos, d_model]
    x = x + pe;
  }
  return x;
}

ForwardResult ForwardPass::run(const HookedTransformer& m, PassInput in, const ForwardOptions& opts, const HookSet* hooks,
                               const RunContext* ctx) {
  const ModelConfig& c = m.config();
  const auto& W = m.weights();
  const auto& impl = *m.m_impl;
  const DevicePlan& plan = m.devicePlan();
  const Hooker hp{hooks, in.step, plan.split() ? std::optional<at::Device>(m.device()) : std::nullopt};
  const int64_t B = in.resid.size(0), P = in.resid.size(1);
  const int64_t past = in.cache ? in.cache->length : 0;
  const int endLayer = opts.stopAtLayer >= 0 ? std::min(opts.stopAtLayer, c.nLayers) : c.nLayers;
  // Rotary tables [batch, pos, rotary_dim]: the global one and the sliding layers' own (Gemma 3).
  at::Tensor cos, sin, cosSliding, sinSliding;
  if (c.positional == PositionalKind::Rotary) {
    at::Tensor inv = impl.invFreq;
    if (c.ropeScaling.kind == RopeScalingKind::LongRope) {
      // As HF, every pass picks LongRope's factors from its longest position: long once it passes
      // original_max_position_embeddings. Keys cached with the other factors would be stale.
      const bool useLong = in.positions.max().item<int64_t>() + 1 > c.ropeScaling.originalMaxPositionEmbeddings;
      if (in.cache && past > 0 && in.cache->longRope != useLong)
        throw UnsupportedError(fmt::format(
            "longrope: this pass reaches {} positions, past original_max_position_embeddings {}, but the {} cached keys "
            "were rotated with the {} factors; recompute the whole sequence without the cache (generate does this)",
            past + P, c.ropeScaling.originalMaxPositionEmbeddings, past, in.cache->longRope ? "long" : "short"));
      if (in.cache) in.cache->longRope = useLong;
      inv = useLong ? impl.invFreqLong : impl.invFreq;
    }
    std::tie(cos, sin) = ropeCosSin(inv, in.positions, m.dtype(), c.ropeScaling.attentionFactor);
    if (impl.invFreqSliding.defined())
      std::tie(cosSliding, sinSliding) =
          ropeCosSin(impl.invFreqSliding, in.positions, m.dtype(), c.slidingRope->scaling.attentionFactor);
  }
  // One mask geometry and context per distinct (sliding window, device) of the layers that run (window 0:
  // full attention); a split model copies the key mask and rotary tables to each of its devices once.
  using ContextKey = std::pair<int, std::string>;
  std::map<ContextKey, AttnGeometry> geos;
  std::map<ContextKey, PassContext> contexts;
  auto on = [](const at::Tensor& t, at::Device d) { return t.defined() ? t.to(d) : t; };
  for (int l = in.startLayer; l < endLayer; ++l) {
    const int w = c.windowOf(l);
    const at::Device dev = m.layerDevice(l);
    const ContextKey key{w, dev.str()};
    if (geos.count(key)) continue;
    const AttnGeometry& geo = geos.emplace(key, geometry(w, P, past, on(in.keyMask, dev), dev)).first->second;
    const bool slidingRope = w > 0 && cosSliding.defined();
    contexts.emplace(key, PassContext{.c = c,
                                      .hp = hp,
                                      .geo = geo,
                                      .opts = opts,
                                      .ctx = ctx,
                                      .batch = B,
                                      .positions = P,
                                      .past = past,
                                      .scale = c.attentionScale(),
                                      .softcap = c.attnSoftcap,
                                      .dtype = m.dtype(),
                                      .cuda = dev.is_cuda(),
                                      .cos = on(slidingRope ? cosSliding : cos, dev),
                                      .sin = on(slidingRope ? sinSliding : sin, dev)});
  }

  if (in.cache) ensureCacheLayers(*in.cache, c.nLayers);
  AttnPathCounts counts;
  at::Tensor resid = in.resid;  // [batch, pos, d_model]
  for (int l = in.startLayer; l < endLayer; ++l) {
    if (ctx) ctx->check();
    const at::Device dev = m.layerDevice(l);
    if (resid.device() != dev) resid = resid.to(dev);  // the residual hops at a device boundary
    resid = runBlock(contexts.at({c.windowOf(l), dev.str()}), W.layers[l], impl.names[l], l, resid, in.cache, counts);
  }
  if (resid.device() != m.device()) resid = resid.to(m.device());  // back home: unembedding, returned residual
  if (in.cache) in.cache->length = past + P;

  ForwardResult out;
  out.attentionPath = counts.name();
  if (opts.queriesAndKeysOnly) {
    out.attentionPath = "none";
    return out;
  }
  if (opts.stopAtLayer >= 0 && opts.stopAtLayer < c.nLayers) {
    out.residual = resid;
    return out;
  }
  out.logits = unembed(c, W, hp, resid, opts);  // [batch, pos, vocab]
  return out;
}

}  // namespace mechscope
