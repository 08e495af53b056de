#include "analysis/attention_influence/attention_influence.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "analysis/common/final_norm.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {

at::Tensor tokenLosses(const at::Tensor& logits, const at::Tensor& ids) {
  const int64_t n = ids.size(0);
  const at::Tensor logp = at::log_softmax(logits[0].narrow(0, 0, n - 1).to(at::kDouble), -1);  // [pos − 1, vocab]
  const at::Tensor next = ids.narrow(0, 1, n - 1).to(logp.device()).unsqueeze(1);               // [pos − 1, 1]
  return -logp.gather(1, next).squeeze(1).cpu();                                                // [pos − 1]
}

namespace {

/// Token losses [pos − 1] of one forward with `hooks` (may be null): the last block's residual goes
/// through the final norm and the unembedding in chunks (tokenPredictions, as WAAD/FAI), so no
/// [pos, vocab] logits are held — the forward itself computes only the last position's.
at::Tensor forwardTokenLosses(const HookedTransformer& model, const std::vector<int64_t>& row, const HookSet* hooks) {
  HookSet all = hooks ? *hooks : HookSet{};
  at::Tensor losses;
  all.add(hook::residPost(model.config().nLayers - 1),
          [&](const at::Tensor& h, const HookContext&) -> std::optional<at::Tensor> {
            const TokenPredictions p = tokenPredictions(model, applyFinalNorm(model, h[0]), row);  // h: [1, pos, d_model]
            losses = -at::tensor(std::vector<double>(p.logProb.begin() + 1, p.logProb.end()), at::kDouble);
            return std::nullopt;
          });
  ForwardOptions fo;
  fo.logitsLastOnly = true;
  (void)model.forward(at::tensor(row, at::kLong).unsqueeze(0), fo, &all);
  return losses;
}

}  // namespace

AttentionInfluenceResult runAttentionInfluence(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows,
                                               const AttentionInfluenceOptions& options, const RunContext* ctx) {
  const ModelConfig& c = model.config();
  if (rows.empty()) throw InputError("attention-influence: no input sequence");
  if (options.heads.empty()) throw InputError("attention-influence: no heads to mask (give --heads LAYER.HEAD,...)");
  if (options.method != AblationMethod::Uniform && options.method != AblationMethod::Zero)
    throw InputError(fmt::format("attention-influence: method '{}' is not supported (uniform or zero)", toString(options.method)));
  for (const HeadRef& h : options.heads)
    if (h.layer < 0 || h.layer >= c.nLayers || h.head < 0 || h.head >= c.nHeads)
      throw InputError(fmt::format("attention-influence: head {}.{} is outside the model ({} layers × {} heads)", h.layer,
                                   h.head, c.nLayers, c.nHeads));
  AttentionInfluenceResult out;
  const auto R = static_cast<int64_t>(rows.size());
  out.lossBase = at::zeros({R}, at::kDouble);
  out.lossMasked = at::zeros({R}, at::kDouble);
  AblationParams mask;
  mask.method = options.method;
  mask.heads = options.heads;
  for (int64_t r = 0; r < R; ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    if (row.size() < 2)
      throw InputError(fmt::format("attention-influence: row {} has {} token(s); a loss needs at least 2", r, row.size()));
    if (ctx) ctx->check();
    const at::Tensor base = forwardTokenLosses(model, row, nullptr);
    const HookSet hooks = ablationHooks(model, at::tensor(row, at::kLong).unsqueeze(0), mask, ctx);  // tokens [1, pos]
    const at::Tensor masked = forwardTokenLosses(model, row, &hooks);
    out.tokenLossBase.push_back(base);
    out.tokenLossMasked.push_back(masked);
    out.lossBase[r] = base.mean().item<double>();
    out.lossMasked[r] = masked.mean().item<double>();
    if (ctx) ctx->step(static_cast<int>(r + 1), static_cast<int>(R), fmt::format("attention-influence row {}", r));
  }
  out.score = (out.lossMasked - out.lossBase) / out.lossBase;
  return out;
}

AnalysisResult attentionInfluenceToResult(const AttentionInfluenceResult& r, const AttentionInfluenceOptions& o) {
  AnalysisResult out;
  out.name = "attention-influence";
  auto& j = out.json;
  j["analysis"] = "attention-influence";
  j["method"] = toString(o.method);
  j["heads"] = nlohmann::json::array();
  for (const HeadRef& h : o.heads) j["heads"].push_back(fmt::format("{}.{}", h.layer, h.head));
  j["loss_base"] = tensorToJson(r.lossBase);
  j["loss_masked"] = tensorToJson(r.lossMasked);
  j["score"] = tensorToJson(r.score);
  j["mean_score"] = r.score.mean().item<double>();
  j["rows"] = nlohmann::json::array();
  for (size_t i = 0; i < r.tokenLossBase.size(); ++i) {
    nlohmann::json row;
    row["token_loss_base"] = tensorToJson(r.tokenLossBase[i]);
    row["token_loss_masked"] = tensorToJson(r.tokenLossMasked[i]);
    row["token_delta"] = tensorToJson(r.tokenLossMasked[i] - r.tokenLossBase[i]);
    j["rows"].push_back(std::move(row));
    out.addArray(fmt::format("row{}_token_loss_base", i), r.tokenLossBase[i]);
    out.addArray(fmt::format("row{}_token_loss_masked", i), r.tokenLossMasked[i]);
  }
  out.addArray("loss_base", r.lossBase);
  out.addArray("loss_masked", r.lossMasked);
  out.addArray("score", r.score);
  return out;
}

}  // namespace mechscope::analysis
