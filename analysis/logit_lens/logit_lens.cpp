#include "analysis/logit_lens/logit_lens.hpp"

#include <ATen/ATen.h>

#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "analysis/common/final_norm.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

LogitLensResult logitLens(const HookedTransformer& model, const std::vector<int64_t>& ids, const LogitLensParams& p, const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int64_t n = static_cast<int64_t>(ids.size()), V = c.dVocab;
  const int L = c.nLayers;
  if (p.topK < 1 || p.topK > V) throw InputError(fmt::format("logit-lens: top_k = {} is outside [1, {}]", p.topK, V));
  for (int64_t t : p.targetIds)
    if (t < 0 || t >= V) throw InputError(fmt::format("logit-lens: target token id {} is outside the vocabulary [0, {})", t, V));
  LogitLensResult out;
  if (p.positions.empty())
    for (int64_t q = 0; q < n; ++q) out.positions.push_back(q);
  for (int64_t q : p.positions) {
    if (q < -n || q >= n) throw InputError(fmt::format("logit-lens: position {} is outside the prompt's {} tokens", q, n));
    out.positions.push_back(q < 0 ? n + q : q);
  }
  const int64_t P = static_cast<int64_t>(out.positions.size());
  const at::Tensor tokens = model.checkTokens(at::tensor(ids, at::kLong).unsqueeze(0));  // [1, n]
  const at::Tensor where = at::tensor(out.positions, at::kLong).to(model.device());      // [P]
  // Only the chosen positions of each residual are kept: [row][P, d_model], so long prompts cost O(L·P·d).
  std::vector<at::Tensor> resid(static_cast<size_t>(L + 1));
  HookSet hooks;
  hooks.add("blocks.0.hook_resid_pre", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    resid[0] = t.select(0, 0).index_select(0, where).clone();
    return std::nullopt;
  });
  hooks.add("blocks.*.hook_resid_post", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    resid[static_cast<size_t>(hc.layer + 1)] = t.select(0, 0).index_select(0, where).clone();
    if (ctx) ctx->step(hc.layer + 1, L, "logit lens");
    return std::nullopt;
  });
  ForwardOptions fo;
  fo.logitsLastOnly = true;
  model.forward(tokens, fo, &hooks, ctx);

  const at::Tensor stack = at::stack(resid, 0);                                             // [row, P, d_model]
  const at::Tensor normed = applyFinalNorm(model, stack);                                   // [row, P, d_model]
  at::Tensor logits = applyUnembed(model, normed);                                         // [row, P, vocab] (Gemma 2: soft-capped)
  const at::Tensor logp = at::log_softmax(logits.to(at::kDouble), -1).cpu();               // [row, P, vocab]
  logits = logits.cpu();
  const auto top = logp.topk(p.topK, -1);
  out.topProbs = std::get<0>(top).exp();
  out.topIds = std::get<1>(top);
  // 1-based rank: 1 + the number of tokens with a strictly larger logit.
  auto rankOf = [&](const at::Tensor& id) {  // id [row, P, m] → [row, P, m]; one row at a time bounds memory to [P, m, vocab]
    std::vector<at::Tensor> ranks;
    for (int64_t row = 0; row < logits.size(0); ++row) {
      const at::Tensor lr = logits.select(0, row);                                           // [P, vocab]
      const at::Tensor mine = lr.gather(-1, id.select(0, row));                              // [P, m]
      ranks.push_back((lr.unsqueeze(-2) > mine.unsqueeze(-1)).sum(-1) + 1);                  // [P, m]
    }
    return at::stack(ranks, 0);
  };
  const int64_t rows = L + 1;
  std::vector<int64_t> next(static_cast<size_t>(P));
  for (int64_t i = 0; i < P; ++i) next[static_cast<size_t>(i)] = out.positions[static_cast<size_t>(i)] + 1 < n ? ids[static_cast<size_t>(out.positions[static_cast<size_t>(i)] + 1)] : 0;
  const at::Tensor nextIds = at::tensor(next, at::kLong).view({1, P, 1}).expand({rows, P, 1}).contiguous();
  out.nextProb = logp.gather(-1, nextIds).squeeze(-1).exp();
  out.nextRank = rankOf(nextIds).squeeze(-1);
  for (int64_t i = 0; i < P; ++i)
    if (out.positions[static_cast<size_t>(i)] + 1 >= n) {
      out.nextProb.select(1, i).fill_(std::numeric_limits<double>::quiet_NaN());
      out.nextRank.select(1, i).fill_(0);
    }
  if (!p.targetIds.empty()) {
    const auto m = static_cast<int64_t>(p.targetIds.size());
    const at::Tensor tid = at::tensor(p.targetIds, at::kLong).view({1, 1, m}).expand({rows, P, m}).contiguous();
    out.targetProb = logp.gather(-1, tid).exp();
    out.targetRank = rankOf(tid);
  } else {
    out.targetProb = at::zeros({rows, P, 0}, at::kDouble);
    out.targetRank = at::zeros({rows, P, 0}, at::kLong);
  }
  return out;
}

namespace {

/// "Paris, 314": token ids, or strings the tokenizer encodes to one token each.
std::vector<int64_t> parseTargets(const std::string& text, const Tokenizer* tok) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const size_t a = item.find_first_not_of(' ');
    if (a == std::string::npos) continue;
    item = item.substr(a);
    const bool numeric = item.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) {
      ids.push_back(std::stoll(item));
      continue;
    }
    if (!tok) throw InputError(fmt::format("logit-lens: --targets '{}' is text but the model folder has no tokenizer.json; give token ids", item));
    // Prefer the token with a leading space (as it follows a word in a prompt), else the bare text.
    for (const std::string& form : {" " + item, item}) {
      const auto enc = tok->encode(form, false);
      if (enc.ids.size() == 1) {
        ids.push_back(enc.ids[0]);
        break;
      }
      if (form == item)
        throw InputError(fmt::format("logit-lens: --targets '{}' is not one token of the tokenizer ({} tokens); give a token id", item, enc.ids.size()));
    }
  }
  return ids;
}

AnalysisResult runLogitLens(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  LogitLensParams p;
  const std::string where = params.text("positions");
  p.positions.clear();
  if (where != "all") {
    p.positions = parseIntegerList(where, "logit-lens --positions");
    if (p.positions.empty()) throw InputError("logit-lens: --positions names no position (give e.g. -1, 3,7 or all)");
  }
  p.topK = params.integer("top_k");
  p.targetIds = parseTargets(params.text("targets"), in.tokenizer);
  const std::vector<int64_t>& ids = in.rows.at(0);
  const LogitLensResult r = logitLens(*in.model, ids, p, ctx);
  AnalysisResult out;
  out.name = "logit-lens";
  auto& j = out.json;
  const int L = in.model->config().nLayers;
  j["layers"] = nlohmann::json::array({"embed"});
  for (int l = 0; l < L; ++l) j["layers"].push_back(std::to_string(l));
  j["positions"] = r.positions;
  j["top_ids"] = tensorToJson(r.topIds);
  j["top_probs"] = tensorToJson(r.topProbs);
  j["next_token_prob"] = tensorToJson(r.nextProb);
  j["next_token_rank"] = tensorToJson(r.nextRank);
  j["target_ids"] = p.targetIds;
  j["target_prob"] = tensorToJson(r.targetProb);
  j["target_rank"] = tensorToJson(r.targetRank);
  if (in.tokenizer) {
    nlohmann::json top = nlohmann::json::array();
    for (int64_t row = 0; row < r.topIds.size(0); ++row) {
      nlohmann::json perPos = nlohmann::json::array();
      for (int64_t i = 0; i < r.topIds.size(1); ++i) {
        nlohmann::json words = nlohmann::json::array();
        for (int64_t k = 0; k < r.topIds.size(2); ++k) words.push_back(in.tokenizer->displayToken(r.topIds[row][i][k].item<int64_t>()));
        perPos.push_back(std::move(words));
      }
      top.push_back(std::move(perPos));
    }
    j["top_tokens"] = std::move(top);
  }
  // Headline: the first layer whose top-1 is the final layer's top-1, at the last chosen position.
  const int64_t last = r.topIds.size(1) - 1;
  const int64_t final1 = r.topIds[L][last][0].item<int64_t>();
  int64_t settle = L;
  while (settle > 0 && r.topIds[settle - 1][last][0].item<int64_t>() == final1) --settle;
  j["final_top_id"] = final1;
  j["settles_at_row"] = settle;
  out.addArray("top_ids", r.topIds);
  out.addArray("top_probs", r.topProbs);
  out.addArray("next_token_prob", r.nextProb);
  out.addArray("target_prob", r.targetProb);
  return out;
}

}  // namespace

AnalysisPlugin logitLensPlugin() {
  AnalysisPlugin p = makePlugin("logit-lens", "Logit lens",
                                "logit lens: the residual after every layer through the final norm and unembedding (top tokens, next-token and target ranks)",
                                PluginInput::TokenRows, runLogitLens);
  auto& d = p.descriptor;
  d.oneSequence = true;
  ParamInfo k = makeParam("top_k", ParamType::Int, "--top-k", "top tokens per layer and position", "5");
  k.minimum = 1;
  d.params = {makeParam("positions", ParamType::String, "--positions", "query positions, e.g. -1 or 3,7 (negative: from the end), or all", "-1"), k,
              makeParam("targets", ParamType::String, "--targets", "tokens to track at every layer: ids or one-token words, e.g. ' Paris,314'")};
  d.figureKeys = {"next_token_prob"};
  d.headlineKeys = {"final_top_id", "settles_at_row"};
  return p;
}

}  // namespace mechscope::analysis
