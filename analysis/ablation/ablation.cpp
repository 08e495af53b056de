#include "analysis/ablation/ablation.hpp"

#include <ATen/ATen.h>

#include <map>
#include <random>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::string toString(AblationMethod m) {
  switch (m) {
    case AblationMethod::Zero: return "zero";
    case AblationMethod::Mean: return "mean";
    case AblationMethod::Resample: return "resample";
    case AblationMethod::Uniform: return "uniform";
    case AblationMethod::Force: return "force";
  }
  return "?";
}

AblationMethod parseAblationMethod(const std::string& s) {
  for (auto m : {AblationMethod::Zero, AblationMethod::Mean, AblationMethod::Resample, AblationMethod::Uniform, AblationMethod::Force})
    if (toString(m) == s) return m;
  throw InputError(fmt::format("ablation method '{}' is unknown (expected zero, mean, resample, uniform or force)", s));
}

HookSet ablationHooks(const HookedTransformer& m, const at::Tensor& tokens, const AblationParams& p, const RunContext* ctx) {
  const ModelConfig& c = m.config();
  const int L = c.nLayers, H = c.nHeads;
  const int64_t B = tokens.size(0), P = tokens.size(1);
  std::map<int, std::vector<int64_t>> byLayer;
  std::vector<std::vector<bool>> in(static_cast<size_t>(L), std::vector<bool>(static_cast<size_t>(H), false));
  for (const auto& h : p.heads) {
    if (h.layer < 0 || h.layer >= L || h.head < 0 || h.head >= H)
      throw InputError(fmt::format("ablation: head {}.{} is outside the model's {} layers × {} heads", h.layer, h.head, L, H));
    in[static_cast<size_t>(h.layer)][static_cast<size_t>(h.head)] = true;
  }
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h)
      if (in[static_cast<size_t>(l)][static_cast<size_t>(h)] != p.knockout) byLayer[l].push_back(h);
  at::Tensor posMask = at::zeros({P}, at::kBool);
  if (p.positions.empty()) posMask.fill_(true);
  for (int64_t q : p.positions) {
    const int64_t r = q < 0 ? P + q : q;
    if (r < 0 || r >= P) throw InputError(fmt::format("ablation: position {} is outside the {} prompt positions", q, P));
    posMask[r] = true;
  }
  posMask = posMask.to(m.device());
  HookSet hooks;
  if (byLayer.empty()) return hooks;

  if (p.method == AblationMethod::Zero || p.method == AblationMethod::Mean || p.method == AblationMethod::Resample) {
    std::map<int, at::Tensor> repl;  // layer → [batch, pos, head, d_head]
    if (p.method == AblationMethod::Zero) {
      for (const auto& [l, hs] : byLayer) repl[l] = at::zeros({B, P, H, c.dHead}, at::TensorOptions().dtype(m.dtype()).device(m.device()));
    } else {
      if (!p.reference.defined() || p.reference.dim() != 2 || p.reference.size(0) == 0)
        throw InputError(fmt::format("{} ablation needs reference prompts [n, pos] (e.g. the corrupted set)", toString(p.method)));
      const bool pooled = p.method == AblationMethod::Resample && p.pooled;
      if (!pooled && p.reference.size(1) != P)
        throw InputError(fmt::format("{} ablation: reference prompts have {} tokens but the prompts have {} (position-aligned means need equal length)",
                                     toString(p.method), p.reference.size(1), P));
      const ActivationCache ref = m.runWithCache(p.reference, {"blocks.*.attn.hook_z"}, {}, std::nullopt, nullptr, nullptr, ctx);
      const int64_t R = p.reference.size(0);
      std::mt19937_64 rng(p.seed);
      at::Tensor pooledIdx;
      if (pooled) {
        std::vector<int64_t> idx(static_cast<size_t>(B * P));
        const auto pool = static_cast<uint64_t>(R * p.reference.size(1));
        for (auto& v : idx) v = static_cast<int64_t>(rng() % pool);
        pooledIdx = at::tensor(idx, at::kLong).to(m.device());
      }
      for (const auto& [l, hs] : byLayer) {
        const at::Tensor z = ref.at("z", l);  // [n_ref, pos, head, d_head]
        if (p.method == AblationMethod::Mean) {
          at::Tensor global = z.mean(0);  // [pos, head, d_head]
          if (!p.perTemplate) {
            repl[l] = global.unsqueeze(0).expand({B, P, H, c.dHead});
          } else {
            if (static_cast<int64_t>(p.promptGroups.size()) != B || static_cast<int64_t>(p.referenceGroups.size()) != R)
              throw InputError("mean ablation per template needs a template id for every prompt and reference prompt");
            std::vector<at::Tensor> rows;
            for (int64_t b = 0; b < B; ++b) {
              std::vector<int64_t> members;
              for (int64_t r = 0; r < R; ++r)
                if (p.referenceGroups[static_cast<size_t>(r)] == p.promptGroups[static_cast<size_t>(b)]) members.push_back(r);
              rows.push_back(members.empty() ? global : z.index_select(0, at::tensor(members, at::kLong).to(z.device())).mean(0));
            }
            repl[l] = at::stack(rows, 0);
          }
        } else if (!pooled) {
          repl[l] = z.index_select(0, at::arange(B, at::kLong).remainder(R).to(z.device()));  // paired: prompt b ← reference b mod n
        } else {
          repl[l] = z.reshape({-1, H, c.dHead}).index_select(0, pooledIdx).view({B, P, H, c.dHead});
        }
      }
    }
    for (const auto& [l, hs] : byLayer) {
      const at::Tensor r = repl[l];
      const std::vector<int64_t> heads = hs;
      hooks.add(hookName(PatchComponent::HeadOut, l), [r, heads, posMask](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        if (t.size(0) != r.size(0)) throw InputError("ablation hooks were built for another batch size");
        at::Tensor out = t.clone();
        const at::Tensor pm = posMask.view({1, -1, 1});
        for (int64_t h : heads) out.select(2, h).copy_(at::where(pm, r.select(2, h).to(t.dtype()), t.select(2, h)));
        return out;
      });
    }
    return hooks;
  }

  // Attention-pattern methods: rows [batch, key] written at the chosen query positions.
  at::Tensor rows = at::zeros({B, P, P}, at::kFloat);  // [batch, query, key] target rows
  if (p.method == AblationMethod::Uniform) {
    // Uniform over the keys the model lets a query see: causal, and within the sliding window if any.
    at::Tensor visible = at::ones({P, P}, at::kFloat).tril();  // [query, key]
    if (const auto& w = m.config().slidingWindow; w && *w < P) visible = visible.triu(-(*w - 1));  // i − j < W
    rows.copy_((visible / visible.sum(-1, true)).unsqueeze(0).expand({B, P, P}));
  } else {
    if (p.forceKeys.empty()) throw InputError("attention forcing needs key positions (per prompt or one list for all)");
    if (p.forceKeys.size() != 1 && static_cast<int64_t>(p.forceKeys.size()) != B)
      throw InputError(fmt::format("attention forcing: {} key lists for {} prompts (give one or one per prompt)", p.forceKeys.size(), B));
    for (int64_t b = 0; b < B; ++b) {
      const auto& keys = p.forceKeys.size() == 1 ? p.forceKeys[0] : p.forceKeys[static_cast<size_t>(b)];
      if (keys.empty()) throw InputError(fmt::format("attention forcing: prompt {} has no key position", b));
      if (!p.forceWeights.empty() && p.forceWeights.size() != keys.size())
        throw InputError(fmt::format("attention forcing: {} weights for {} keys", p.forceWeights.size(), keys.size()));
      at::Tensor w = at::zeros({P}, at::kDouble);
      for (size_t i = 0; i < keys.size(); ++i) {
        const int64_t k = keys[i] < 0 ? P + keys[i] : keys[i];
        if (k < 0 || k >= P) throw InputError(fmt::format("attention forcing: key position {} is outside the {} positions", keys[i], P));
        w[k] += p.forceWeights.empty() ? 1.0 : p.forceWeights[i];
      }
      if (w.sum().item<double>() <= 0) throw InputError("attention forcing: the weights sum to 0");
      rows[b].copy_((w / w.sum()).to(at::kFloat).unsqueeze(0).expand({P, P}));
    }
  }
  rows = rows.to(m.device());
  for (const auto& [l, hs] : byLayer) {
    const std::vector<int64_t> heads = hs;
    hooks.add(hookName(PatchComponent::Pattern, l), [rows, heads, posMask](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();  // [batch, head, query, key]
      const at::Tensor pm = posMask.view({1, -1, 1});
      for (int64_t h : heads) out.select(1, h).copy_(at::where(pm, rows.to(t.dtype()), t.select(1, h)));
      return out;
    });
  }
  return hooks;
}

AblationResult ablate(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct, const at::Tensor& incorrect,
                      const AblationParams& p, const RunContext* ctx) {
  if (!tokens.defined() || tokens.dim() != 2) throw InputError("ablation: prompts must be a [batch, pos] token batch");
  if (correct.numel() != tokens.size(0) || incorrect.numel() != tokens.size(0))
    throw InputError(fmt::format("ablation: {} prompts need {} correct and incorrect answer ids", tokens.size(0), tokens.size(0)));
  const HookSet hooks = ablationHooks(m, tokens, p, ctx);
  ForwardOptions last;
  last.logitsLastOnly = true;
  const at::Tensor before = m.forward(tokens, last, nullptr, ctx).logits;  // [batch, 1, vocab]
  const at::Tensor after = m.forward(tokens, last, &hooks, ctx).logits;
  AblationResult r;
  r.perPromptBefore = logitDiff(before, correct, incorrect).cpu();
  r.perPromptAfter = logitDiff(after, correct, incorrect).cpu();
  r.metricBefore = r.perPromptBefore.to(at::kDouble).mean().item<double>();
  r.metricAfter = r.perPromptAfter.to(at::kDouble).mean().item<double>();
  const at::Tensor c = correct.to(at::kLong).cpu();
  r.accuracyBefore = (before.select(1, 0).argmax(-1).cpu() == c).to(at::kDouble).mean().item<double>();
  r.accuracyAfter = (after.select(1, 0).argmax(-1).cpu() == c).to(at::kDouble).mean().item<double>();
  int n = 0;
  for (int l = 0; l < m.config().nLayers; ++l)
    for (int h = 0; h < m.config().nHeads; ++h) {
      const bool listed = std::find(p.heads.begin(), p.heads.end(), HeadRef{l, h}) != p.heads.end();
      n += listed != p.knockout ? 1 : 0;
    }
  r.ablatedHeads = n;
  return r;
}

}  // namespace mechscope::analysis
