#include "analysis/attribution/direct_logit.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "analysis/common/final_norm.hpp"
#include "analysis/common/logit_diff.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {

DirectLogitResult directLogitAttribution(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct,
                                         const at::Tensor& incorrect, const RunContext* ctx) {
  if (!tokens.defined() || tokens.dim() != 2) throw InputError("direct logit attribution: prompts must be a [batch, pos] token batch");
  const int64_t B = tokens.size(0);
  if (correct.numel() != B || incorrect.numel() != B)
    throw InputError(fmt::format("direct logit attribution: {} prompts need {} correct and incorrect answer ids", B, B));
  const ModelConfig& c = m.config();
  const ModelWeights& w = m.weights();
  const int L = c.nLayers;
  const int64_t H = c.nHeads, dh = c.dHead, D = c.dModel;
  for (const at::Tensor& ids : {correct, incorrect})
    if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.dVocab)
      throw InputError(fmt::format("direct logit attribution: an answer id is outside the vocabulary of {} tokens", c.dVocab));
  const std::string finalResid = hook::residPost(L - 1);
  ForwardOptions last;
  last.logitsLastOnly = true;
  ForwardResult fr;
  const ActivationCache cache =
      m.runWithCache(tokens, {"blocks.*.attn.hook_z", "blocks.*.hook_mlp_out", finalResid}, last, at::Device(at::kCPU), &fr, nullptr, ctx);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  // The answer direction in the normed space: γ ⊙ (W_U[correct] − W_U[incorrect]).
  const at::Tensor wU = w.wU.to(at::kCPU).to(at::kDouble);  // [vocab, d_model]
  at::Tensor dir = wU.index_select(0, correct.to(at::kCPU).to(at::kLong)) - wU.index_select(0, incorrect.to(at::kCPU).to(at::kLong));  // [batch, d_model]
  if (w.lnFinalW.defined()) dir = dir * w.lnFinalW.to(at::kCPU).to(at::kDouble);
  // The final norm's scale at the last position of the clean run (TransformerLens' cached hook_scale).
  const bool layerNorm = c.normKind == NormKind::LayerNorm;
  const at::Tensor x = cache.get(finalResid).select(1, -1).to(at::kDouble);  // [batch, d_model]
  const at::Tensor xc = layerNorm ? x - x.mean(-1, true) : x;
  const at::Tensor scale = at::sqrt(xc.pow(2).mean(-1, true) + c.normEps);  // [batch, 1]
  auto attribute = [&](const at::Tensor& comp) {  // [batch, ..., d_model] → [batch, ...]
    const at::Tensor centred = layerNorm ? comp - comp.mean(-1, true) : comp;
    std::vector<int64_t> shape{B};
    for (int64_t i = 1; i + 1 < comp.dim(); ++i) shape.push_back(1);
    shape.push_back(D);
    return (centred * dir.view(shape)).sum(-1) / scale.view(std::vector<int64_t>(shape.begin(), shape.end() - 1));
  };
  DirectLogitResult r;
  r.perPromptHeads = at::zeros({B, L, H}, opt);
  r.perPromptMlp = at::zeros({B, L}, opt);
  for (int l = 0; l < L; ++l) {
    const at::Tensor z = cache.at("z", l).select(1, -1).to(at::kDouble);  // [batch, head, d_head]
    const at::Tensor wO = w.layers[static_cast<size_t>(l)].wO.to(at::kCPU).to(at::kDouble).view({D, H, dh});  // [d_model, head, d_head]
    at::Tensor out = at::einsum("bhe,dhe->bhd", {z, wO});  // [batch, head, d_model], no bias
    if (c.postAttnNorm) {
      // ln1_post (Gemma 2/3, OLMo-2) is linear for its scale in this run (as ln_f above): head h writes
      // γ ⊙ o_h / rms(Σ_h o_h + b_O), so the heads still sum to hook_attn_out.
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      at::Tensor raw = out.sum(1);  // [batch, d_model]
      if (lw.bO.defined()) raw = raw + lw.bO.to(at::kCPU).to(at::kDouble);
      const at::Tensor rms = at::sqrt(raw.pow(2).mean(-1, true) + c.normEps);  // [batch, 1]
      out = out * lw.ln1PostW.to(at::kCPU).to(at::kDouble) / rms.unsqueeze(1);
    }
    r.perPromptHeads.select(1, l).copy_(attribute(out));
    r.perPromptMlp.select(1, l).copy_(attribute(cache.get(hook::mlpOut(l)).select(1, -1).to(at::kDouble)));
  }
  r.logitDiff = logitDiff(fr.logits, correct, incorrect).to(at::kCPU).to(at::kDouble);
  r.rest = r.logitDiff - r.perPromptHeads.sum({1, 2}) - r.perPromptMlp.sum(1);
  r.heads = r.perPromptHeads.mean(0);
  r.mlp = r.perPromptMlp.mean(0);
  return r;
}

CopyScoreResult ovCopyScores(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& positions, int64_t k,
                             const RunContext* ctx) {
  const ModelConfig& c = m.config();
  const ModelWeights& w = m.weights();
  const int L = c.nLayers;
  const int64_t H = c.nHeads, rep = c.nHeads / c.nKvHeads, dh = c.dHead, D = c.dModel;
  if (!tokens.defined() || tokens.dim() != 2) throw InputError("copy score: prompts must be a [batch, pos] token batch");
  const int64_t B = tokens.size(0), P = tokens.size(1);
  if (positions.dim() != 2 || positions.size(0) != B)
    throw InputError(fmt::format("copy score: positions must be [batch = {}, n]", B));
  if (positions.min().item<int64_t>() < 0 || positions.max().item<int64_t>() >= P)
    throw InputError(fmt::format("copy score: a position lies outside the {}-token prompts", P));
  if (k < 1 || k > c.dVocab) throw InputError(fmt::format("copy score: top-k must be in [1, {}], found {}", c.dVocab, k));
  const at::Tensor pos = positions.to(at::kCPU).to(at::kLong);  // [batch, n]
  const int64_t n = pos.size(1);
  const ActivationCache cache = m.runWithCache(tokens, {"blocks.0.hook_resid_post"}, {}, at::Device(at::kCPU), nullptr, nullptr, ctx);
  const at::Tensor resid = cache.get("blocks.0.hook_resid_post");  // [batch, pos, d_model]
  const at::Tensor flat = (at::arange(B, at::kLong).view({B, 1}) * P + pos).view({-1});  // [batch * n] row-major (prompt, position)
  const at::Tensor x = resid.reshape({B * P, D}).index_select(0, flat).view({B, n, D}).to(at::kFloat).to(m.device());  // [batch, n, d_model]
  const at::Tensor target = tokens.to(at::kCPU).to(at::kLong).reshape({B * P}).index_select(0, flat).view({B, n}).to(m.device());  // [batch, n]
  CopyScoreResult r;
  r.positive = at::zeros({L, H}, at::kDouble);
  r.negative = at::zeros({L, H}, at::kDouble);
  r.pairs = B * n;
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    // Without pre-norms (OLMo-2) the head reads the residual itself.
    const at::Tensor y = c.preNorms ? applyNorm(m, x.to(m.dtype()), lw.ln1W, lw.ln1B).to(at::kFloat) : x;  // [batch, n, d_model]
    const at::Device home = m.device();  // a split model's block weights come home
    const at::Tensor wV = lw.wV.to(home, at::kFloat).view({c.nKvHeads, dh, D});            // [kv_head, d_head, d_model]
    const at::Tensor wO = lw.wO.to(home, at::kFloat).view({D, H, dh});                      // [d_model, head, d_head]
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor v = at::matmul(y, wV[h / rep].t());                                        // [batch, n, d_head]
      if (lw.bV.defined()) v = v + lw.bV.to(home, at::kFloat).view({c.nKvHeads, dh})[h / rep];
      at::Tensor o = at::matmul(v, wO.select(1, h).t());                                    // [batch, n, d_model]
      if (c.postAttnNorm) o = o * lw.ln1PostW.to(home, at::kFloat);  // ln1_post's weight; ln_f below re-normalises
      for (const double sign : {1.0, -1.0}) {
        const at::Tensor normed = applyFinalNorm(m, (sign * o).to(m.dtype())).to(at::kFloat);  // [batch, n, d_model]
        at::Tensor logits = at::matmul(normed, w.wU.to(at::kFloat).t());                        // [batch, n, vocab]
        if (w.bU.defined()) logits = logits + w.bU.to(at::kFloat);
        const at::Tensor top = std::get<1>(logits.topk(k, -1));                                 // [batch, n, k]
        const double hits = top.eq(target.unsqueeze(-1)).any(-1).sum().item<double>();
        (sign > 0 ? r.positive : r.negative)[l][h] = 100.0 * hits / static_cast<double>(r.pairs);
      }
    }
  }
  return r;
}

}  // namespace mechscope::analysis
