#include "analysis/ov_qk/ov_qk.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

namespace {

/// What a family's config means for the circuits. Every family is one row of the table in docs/metrics.md
/// ("OV and QK circuits"); the code reads only these config flags, never a family name. The family
/// loaders already turned Conv1D (GPT-2) and fused qkv (GPT-NeoX) into the canonical [out, in] weights.
struct CircuitRules {
  bool centre = false;            ///< LayerNorm centres its input: TL centres reading and writing weights (fold_ln + center_writing_weights)
  bool learnedPositions = false;  ///< W_pos exists: the QK look-up may add W_pos[p]; rotary: no rotation (one shared position)
  bool qkNorm = false;            ///< Qwen3: per-head RMSNorm of q and k after the projection
  NormKind norm = NormKind::LayerNorm;
  bool qkNormWhole = false;       ///< OLMo-2: the q/k RMSNorm spans every head's projection
  bool preNorm = true;            ///< ln1 exists (OLMo-2: the block reads the raw residual)
};

/// The row of `c`'s family, from its config flags.
CircuitRules circuitRules(const ModelConfig& c) {
  return {c.normKind == NormKind::LayerNorm, c.positional == PositionalKind::Learned, c.qkNorm, c.normKind, c.qkNormWhole,
          c.preNorms};
}

/// A weight as fp64 on the CPU (the circuits here are small: rows of T, d_model, d_head).
at::Tensor ovF64(const at::Tensor& t) { return t.to(at::kCPU).to(at::kDouble); }

/// `x` [..., d] minus its mean over the last axis when `centre` (LayerNorm's centring as a projection).
at::Tensor ovCentre(bool centre, const at::Tensor& x) { return centre ? x - x.mean(-1, true) : x; }

/// `x` [..., d] times the norm weight `w` [d] (absent: 1).
at::Tensor ovScale(const at::Tensor& x, const at::Tensor& w) { return w.defined() ? x * ovF64(w) : x; }

/// The family's norm in fp64 with its scale: LayerNorm (x − μ)/√(var + ε)·w + b, RMSNorm x/√(mean x² + ε)·w.
at::Tensor ovNorm(const CircuitRules& r, double eps, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const at::Tensor xc = r.norm == NormKind::LayerNorm ? x - x.mean(-1, true) : x;  // [..., d]
  at::Tensor y = ovScale(xc * at::rsqrt(xc.pow(2).mean(-1, true) + eps), w);
  return b.defined() ? y + ovF64(b) : y;
}

/// Mean of W_U [vocab, d_model] over the vocabulary in fp64, a block of rows at a time (TL's center_unembed).
at::Tensor ovVocabMean(const at::Tensor& wU) {
  at::Tensor sum = at::zeros({wU.size(1)}, at::kDouble);
  for (int64_t r = 0; r < wU.size(0); r += 4096) sum += ovF64(wU.narrow(0, r, std::min<int64_t>(4096, wU.size(0) - r))).sum(0);
  return sum / static_cast<double>(wU.size(0));
}

/// InputError naming `option` and the id for the first id outside [0, vocab).
void ovCheckIds(const std::vector<int64_t>& ids, int64_t vocab, const char* option) {
  for (int64_t t : ids)
    if (t < 0 || t >= vocab) throw InputError(fmt::format("ov-qk: {} token id {} is outside the vocabulary [0, {})", option, t, vocab));
}

/// Σλ / Σ|λ| of A·B (A [n, r], B [r, n]): the eigenvalues of the smaller of A·B and B·A (the same nonzero
/// eigenvalues; the rest of the larger are exact zeros), as TransformerLens' FactoredMatrix.eigenvalues.
/// Σλ / Σ|λ| over the eigenvalues of the square matrix `m` (NaN when they are all 0).
double eigenScore(const at::Tensor& m) {
  const at::Tensor lambda = at::linalg_eigvals(m);  // complex128
  const double total = at::abs(lambda).sum().item<double>();
  return total > 0 ? at::real(lambda.sum()).item<double>() / total : std::numeric_limits<double>::quiet_NaN();
}

double copyingScore(const at::Tensor& a, const at::Tensor& b) {
  return eigenScore(a.size(0) <= a.size(1) ? at::matmul(a, b) : at::matmul(b, a));  // [min(n, r), min(n, r)]
}

/// G = Σ_v (W_U[v] − mean W_U)ᵀ c(W_E[v]) [d_model, d_model] in fp64 on the weights' device, a block of the
/// vocabulary at a time: the full-vocabulary circuit A_V·B_V (A_V = c(W_E)⊙w_ln1·W_Vᵀ [vocab, d_head],
/// B_V = b·W_Uᶜᵀ [d_head, vocab]) has the nonzero eigenvalues of B_V·A_V = b·G·diag(w_ln1)·W_Vᵀ [d_head, d_head].
at::Tensor ovVocabGram(const at::Tensor& wE, const at::Tensor& wU, const at::Tensor& uMean, bool centre) {
  const at::Tensor mean = uMean.to(wU.device());
  at::Tensor g = at::zeros({wE.size(1), wE.size(1)}, wU.options().dtype(at::kDouble));
  for (int64_t r = 0; r < wE.size(0); r += 4096) {
    const int64_t n = std::min<int64_t>(4096, wE.size(0) - r);
    const at::Tensor e = ovCentre(centre, wE.narrow(0, r, n).to(wU.device()).to(at::kDouble));  // [n, d_model]
    g += at::matmul((wU.narrow(0, r, n).to(at::kDouble) - mean).t(), e);                      // [d_model, d_model]
  }
  return g.cpu();
}

}  // namespace

std::vector<int64_t> ovTokenSet(const std::vector<std::vector<int64_t>>& rows, int64_t count) {
  std::vector<int64_t> order;
  std::map<int64_t, int64_t> freq;
  for (const auto& row : rows)
    for (int64_t t : row)
      if (freq[t]++ == 0) order.push_back(t);
  if (count <= 0 || count >= static_cast<int64_t>(order.size())) return order;
  std::vector<int64_t> byFreq = order;
  std::stable_sort(byFreq.begin(), byFreq.end(), [&](int64_t a, int64_t b) { return freq[a] > freq[b]; });
  byFreq.resize(static_cast<size_t>(count));
  std::vector<int64_t> kept;
  for (int64_t t : order)
    if (std::find(byFreq.begin(), byFreq.end(), t) != byFreq.end()) kept.push_back(t);
  return kept;
}

OvQkResult ovQkCircuits(const HookedTransformer& model, const OvQkParams& p, const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const CircuitRules rules = circuitRules(c);
  const int L = c.nLayers;
  const int64_t H = c.nHeads, rep = c.nHeads / c.nKvHeads, dh = c.dHead, D = c.dModel, V = c.dVocab;
  // Every check before any compute.
  if (p.tokens.empty()) throw InputError("ov-qk: the token set T is empty (give a prompt or --token-ids)");
  ovCheckIds(p.tokens, V, "the prompt's");
  ovCheckIds(p.queryTokens, V, "--query-tokens");
  ovCheckIds(p.keyTokens, V, "--key-tokens");
  if (p.queryTokens.empty() != p.keyTokens.empty()) throw InputError("ov-qk: the QK look-up needs both --query-tokens and --key-tokens");
  if (p.topK < 1 || p.topK > V) throw InputError(fmt::format("ov-qk: --top-k {} is outside [1, {}]", p.topK, V));
  for (const HeadRef& h : p.heads)
    if (h.layer < 0 || h.layer >= L || h.head < 0 || h.head >= H)
      throw InputError(fmt::format("ov-qk: --heads {} is outside the model's {} layers × {} heads", toString(h), L, H));
  if (p.position >= 0 && !rules.learnedPositions)
    throw InputError("ov-qk: --position applies to learned position embeddings; a rotary model's look-up has no rotation "
                     "(query and key at one position), so leave --position out");
  if (p.position >= 0 && (!w.wPos.defined() || p.position >= w.wPos.size(0)))
    throw InputError(fmt::format("ov-qk: --position {} is outside the model's {} positions", p.position, c.nCtx));

  std::vector<std::vector<bool>> chosen(static_cast<size_t>(L), std::vector<bool>(static_cast<size_t>(H), p.heads.empty()));
  for (const HeadRef& h : p.heads) chosen[static_cast<size_t>(h.layer)][static_cast<size_t>(h.head)] = true;
  const auto T = static_cast<int64_t>(p.tokens.size());
  const auto nq = static_cast<int64_t>(p.queryTokens.size()), nk = static_cast<int64_t>(p.keyTokens.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  OvQkResult out;
  out.tokens = p.tokens;
  out.copyEigen = at::full({L, H}, nan, at::kDouble);
  out.copyEigenVocab = at::full({L, H}, nan, at::kDouble);
  out.copyTopK = at::full({L, H}, nan, at::kDouble);
  out.copyTopKNegative = at::full({L, H}, nan, at::kDouble);
  out.rank = at::zeros({L, H, T}, at::kLong);
  out.rankNegative = at::zeros({L, H, T}, at::kLong);
  out.qk = at::full({L, H, nq, nk}, nan, at::kDouble);

  const at::Tensor tIds = at::tensor(p.tokens, at::kLong);
  // OV, folded: E_T centred (LayerNorm) [T, d_model]; W_U centred over the vocabulary, rows of T [T, d_model].
  const at::Tensor eT = ovCentre(rules.centre, ovF64(w.wE.index_select(0, tIds.to(w.wE.device()))));
  const at::Tensor uMean = ovVocabMean(w.wU);                                                   // [d_model]
  const at::Tensor uT = ovF64(w.wU.index_select(0, tIds.to(w.wU.device()))) - uMean;
  const at::Tensor gram = ovVocabGram(w.wE, w.wU, uMean, rules.centre);                        // [d_model, d_model]
  const at::Tensor wUf = w.wU.to(at::kFloat);                     // [vocab, d_model] on the model's device
  const at::Tensor selfCol = tIds.to(model.device()).unsqueeze(1);  // [T, 1]
  // QK inputs: the bare embeddings (plus W_pos[p]) [q or k, d_model].
  auto embed = [&](const std::vector<int64_t>& ids) {
    at::Tensor x = ovF64(w.wE.index_select(0, at::tensor(ids, at::kLong).to(w.wE.device()))) * c.embedScale;  // Gemma: × √d_model
    return p.position >= 0 ? x + ovF64(w.wPos[p.position]) : x;
  };
  const at::Tensor xq = nq > 0 ? embed(p.queryTokens) : at::Tensor(), xk = nk > 0 ? embed(p.keyTokens) : at::Tensor();
  const double invSqrt = c.attentionScale();  // 1/√d_head, or query_pre_attn_scalar^−½ (Gemma)

  for (int l = 0; l < L; ++l) {
    if (ctx) ctx->step(l, L, "ov-qk circuits");
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const at::Tensor wV = ovF64(lw.wV).view({c.nKvHeads, dh, D});                     // [kv_head, d_head, d_model]
    const at::Tensor wO = ovF64(lw.wO).view({D, H, dh});                              // [d_model, head, d_head]
    const at::Tensor eFolded = ovScale(eT, lw.ln1W);                                  // [T, d_model]
    const at::Tensor wQ = nq > 0 ? ovF64(lw.wQ).view({H, dh, D}) : at::Tensor();          // [head, d_head, d_model]
    const at::Tensor wK = nq > 0 ? ovF64(lw.wK).view({c.nKvHeads, dh, D}) : at::Tensor();  // [kv_head, d_head, d_model]
    // Without pre-norms (OLMo-2) the projections read the embedding itself.
    const at::Tensor xqN = nq > 0 ? (rules.preNorm ? ovNorm(rules, c.normEps, xq, lw.ln1W, lw.ln1B) : xq) : at::Tensor();  // [query, d_model]
    const at::Tensor xkN = nk > 0 ? (rules.preNorm ? ovNorm(rules, c.normEps, xk, lw.ln1W, lw.ln1B) : xk) : at::Tensor();  // [key, d_model]
    // OLMo-2: q/k normed over every head's projection at once, so they are formed for all heads first.
    const CircuitRules rmsRules{false, false, true, NormKind::RMSNorm};
    at::Tensor qAll, kAll;  // [query, head, d_head], [key, kv_head, d_head]
    if (nq > 0 && rules.qkNorm && rules.qkNormWhole) {
      qAll = at::matmul(xqN, ovF64(lw.wQ).t());  // [query, head·d_head]
      kAll = at::matmul(xkN, ovF64(lw.wK).t());  // [key, kv_head·d_head]
      if (lw.bQ.defined()) qAll = qAll + ovF64(lw.bQ);
      if (lw.bK.defined()) kAll = kAll + ovF64(lw.bK);
      qAll = ovNorm(rmsRules, c.normEps, qAll, lw.qNormW, {}).view({nq, H, dh});
      kAll = ovNorm(rmsRules, c.normEps, kAll, lw.kNormW, {}).view({nk, c.nKvHeads, dh});
    }
    for (int64_t h = 0; h < H; ++h) {
      if (!chosen[static_cast<size_t>(l)][static_cast<size_t>(h)]) continue;
      const int64_t kv = h / rep;  // GQA: query head h reads the shared K/V head h / (n_heads / n_kv_heads)
      const at::Tensor a = at::matmul(eFolded, wV[kv].t());                              // [T, d_head]
      // Post-norm families (Gemma 2/3, OLMo-2): ln1_post's weight on the head's output, like ln_f's (its
      // scale is ignored as every norm scale here).
      const at::Tensor b = ovScale(ovScale(ovCentre(rules.centre, wO.select(1, h).t()), lw.ln1PostW), w.lnFinalW);  // [d_head, d_model]
      out.copyEigen[l][h] = copyingScore(a, at::matmul(b, uT.t()));                    // A [T, d_head] · B [d_head, T]
      out.copyEigenVocab[l][h] = eigenScore(at::matmul(at::matmul(b, ovScale(gram, lw.ln1W)), wV[kv].t()));  // [d_head, d_head]
      // Rows over the whole vocabulary in fp32 (the one large product), a block of T at a time.
      const at::Tensor rowsIn = at::matmul(a, b).to(at::kFloat).to(model.device());    // [T, d_model]
      int64_t hits = 0, hitsNeg = 0;
      for (int64_t r = 0; r < T; r += 256) {
        const int64_t n = std::min<int64_t>(256, T - r);
        const at::Tensor logits = at::matmul(rowsIn.narrow(0, r, n), wUf.t());          // [n, vocab]
        const at::Tensor own = logits.gather(1, selfCol.narrow(0, r, n));              // [n, 1]
        const at::Tensor rk = ((logits > own).sum(1) + 1).cpu(), rkNeg = ((logits < own).sum(1) + 1).cpu();  // [n]
        out.rank[l][h].narrow(0, r, n).copy_(rk);
        out.rankNegative[l][h].narrow(0, r, n).copy_(rkNeg);
        hits += rk.le(p.topK).sum().item<int64_t>();
        hitsNeg += rkNeg.le(p.topK).sum().item<int64_t>();
      }
      out.copyTopK[l][h] = static_cast<double>(hits) / static_cast<double>(T);
      out.copyTopKNegative[l][h] = static_cast<double>(hitsNeg) / static_cast<double>(T);
      if (nq == 0) continue;
      at::Tensor q, k;  // [query, d_head], [key, d_head]
      if (qAll.defined()) {
        q = qAll.select(1, h);
        k = kAll.select(1, kv);
      } else {
        q = at::matmul(xqN, wQ[h].t());
        k = at::matmul(xkN, wK[kv].t());
        if (lw.bQ.defined()) q = q + ovF64(lw.bQ).view({H, dh})[h];
        if (lw.bK.defined()) k = k + ovF64(lw.bK).view({c.nKvHeads, dh})[kv];
        if (rules.qkNorm) {  // per-head RMSNorm with its scale, as the forward pass
          q = ovNorm(rmsRules, c.normEps, q, lw.qNormW, {});
          k = ovNorm(rmsRules, c.normEps, k, lw.kNormW, {});
        }
      }
      at::Tensor score = at::matmul(q, k.t()) * invSqrt;  // [query, key]
      if (c.attnSoftcap > 0) score = at::tanh(score / c.attnSoftcap) * c.attnSoftcap;  // Gemma 2, as the forward
      out.qk[l][h].copy_(score);
    }
  }
  return out;
}

}  // namespace mechscope::analysis
