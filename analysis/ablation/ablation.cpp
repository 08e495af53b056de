#include "analysis/ablation/ablation.hpp"

#include <ATen/ATen.h>

#include <map>
#include <random>

#include <fmt/format.h>

#include "analysis/ablation/expert_ablation.hpp"
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

namespace {

/// Layer → (head, [batch, pos] bool where the head is ablated), from the head list, knockout, roles and
/// positions of `p`; heads ablated nowhere are left out.
std::map<int, std::vector<std::pair<int64_t, at::Tensor>>> ablationSites(const ModelConfig& c, const AblationParams& p, int64_t B, int64_t P) {
  const int L = c.nLayers, H = c.nHeads;
  if (!p.headRoles.empty() && p.headRoles.size() != p.heads.size())
    throw InputError(fmt::format("ablation: {} head roles for {} heads (give one per head or none)", p.headRoles.size(), p.heads.size()));
  at::Tensor posMask = at::zeros({P}, at::kBool);
  if (p.positions.empty()) posMask.fill_(true);
  for (int64_t q : p.positions) {
    const int64_t r = q < 0 ? P + q : q;
    if (r < 0 || r >= P) throw InputError(fmt::format("ablation: position {} is outside the {} prompt positions", q, P));
    posMask[r] = true;
  }
  const at::Tensor everywhere = posMask.view({1, P}).expand({B, P});
  // Listed positions of each head ([batch, pos]; all true for an entry without a role).
  std::map<std::pair<int, int>, at::Tensor> listed;
  for (size_t i = 0; i < p.heads.size(); ++i) {
    const HeadRef& h = p.heads[i];
    if (h.layer < 0 || h.layer >= L || h.head < 0 || h.head >= H)
      throw InputError(fmt::format("ablation: head {}.{} is outside the model's {} layers × {} heads", h.layer, h.head, L, H));
    at::Tensor where = at::ones({B, P}, at::kBool);
    const std::string role = p.headRoles.empty() ? std::string() : p.headRoles[i];
    if (!role.empty()) {
      const auto it = p.roles.find(role);
      if (it == p.roles.end()) throw InputError(fmt::format("ablation: head {}.{}@{}: the prompts have no '{}' role position", h.layer, h.head, role, role));
      const at::Tensor pos = it->second.to(at::kLong).cpu().view({-1, 1});
      if (pos.size(0) != B || pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= P)
        throw InputError(fmt::format("ablation: role '{}' positions do not fit {} prompts of {} tokens", role, B, P));
      where = at::zeros({B, P}, at::kBool).scatter_(1, pos, true);
    }
    auto& acc = listed[{h.layer, h.head}];
    acc = acc.defined() ? acc.logical_or(where) : where;
  }
  std::map<int, std::vector<std::pair<int64_t, at::Tensor>>> out;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const auto it = listed.find({l, h});
      at::Tensor ablated;
      if (p.knockout) ablated = it == listed.end() ? everywhere : everywhere.logical_and(it->second.logical_not());
      else if (it != listed.end()) ablated = everywhere.logical_and(it->second);
      if (ablated.defined() && ablated.any().item<bool>()) out[l].push_back({h, ablated});
    }
  return out;
}

bool readsReference(AblationMethod m) { return m == AblationMethod::Mean || m == AblationMethod::Resample; }

void checkReference(const AblationParams& p) {
  if (!p.reference.defined() || p.reference.dim() != 2 || p.reference.size(0) == 0)
    throw InputError(fmt::format("{} ablation needs reference prompts [n, pos] (e.g. the corrupted set)", toString(p.method)));
}

}  // namespace

ActivationCache ablationReference(const HookedTransformer& m, const AblationParams& p, const RunContext* ctx) {
  if (!readsReference(p.method)) return {};
  checkReference(p);
  const std::string z = "blocks.*.attn.hook_z", experts = "blocks.*.mlp.hook_expert_out";  // experts: their mean ablation
  return m.runWithCache(p.reference, p.experts.empty() ? std::vector<std::string>{z} : std::vector<std::string>{z, experts}, {},
                        std::nullopt, nullptr, nullptr, ctx);
}

HookSet ablationHooks(const HookedTransformer& m, const at::Tensor& tokens, const AblationParams& p, const RunContext* ctx) {
  // The reference run only when a head is ablated somewhere (a knockout of every head ablates none).
  const bool any = !ablationSites(m.config(), p, tokens.size(0), tokens.size(1)).empty() || !p.experts.empty();
  return ablationHooks(m, tokens, p, any ? ablationReference(m, p, ctx) : ActivationCache{});
}

HookSet ablationHooks(const HookedTransformer& m, const at::Tensor& tokens, const AblationParams& p, const ActivationCache& reference) {
  const ModelConfig& c = m.config();
  const int H = c.nHeads;
  const int64_t B = tokens.size(0), P = tokens.size(1);
  const auto sites = ablationSites(c, p, B, P);
  std::map<int, std::vector<int64_t>> byLayer;
  for (const auto& [l, hs] : sites)
    for (const auto& [h, where] : hs) byLayer[l].push_back(h);
  const bool patternMethod = p.method == AblationMethod::Uniform || p.method == AblationMethod::Force;
  if (patternMethod && !p.headRoles.empty())
    throw InputError(fmt::format("{} ablation takes query rows from --positions, not head roles", toString(p.method)));
  at::Tensor posMask = at::zeros({P}, at::kBool);
  if (p.positions.empty()) posMask.fill_(true);
  for (int64_t q : p.positions) posMask[q < 0 ? P + q : q] = true;  // checked by ablationSites
  HookSet hooks;
  addExpertAblationHooks(hooks, m, tokens, p, reference);
  if (byLayer.empty()) return hooks;

  if (p.method == AblationMethod::Zero || p.method == AblationMethod::Mean || p.method == AblationMethod::Resample) {
    std::map<int, at::Tensor> repl;  // layer → [batch, pos, head, d_head]
    if (p.method == AblationMethod::Zero) {
      for (const auto& [l, hs] : byLayer) repl[l] = at::zeros({B, P, H, c.dHead}, at::TensorOptions().dtype(m.dtype()).device(m.device()));
    } else {
      checkReference(p);
      const bool pooled = p.method == AblationMethod::Resample && p.pooled;
      if (!pooled && p.reference.size(1) != P)
        throw InputError(fmt::format("{} ablation: reference prompts have {} tokens but the prompts have {} (position-aligned means need equal length)",
                                     toString(p.method), p.reference.size(1), P));
      if (!reference.has(ActivationCache::fullName("z", 0)))
        throw InputError(fmt::format("{} ablation: the reference run (ablationReference) is missing", toString(p.method)));
      const ActivationCache& ref = reference;
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
    for (const auto& [l, hs] : sites) {
      const at::Tensor r = repl[l];
      std::vector<std::pair<int64_t, at::Tensor>> heads;  // (head, [batch, pos, 1] where ablated)
      for (const auto& [h, where] : hs) heads.push_back({h, where.to(m.device()).unsqueeze(-1)});
      hooks.add(hookName(PatchComponent::HeadOut, l), [r, heads](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        if (t.size(0) != r.size(0)) throw InputError("ablation hooks were built for another batch size");
        at::Tensor out = t.clone();
        for (const auto& [h, where] : heads) out.select(2, h).copy_(at::where(where, r.select(2, h).to(t.dtype()), t.select(2, h)));
        return out;
      });
    }
    return hooks;
  }

  // Attention-pattern methods: rows [batch, key] written at the chosen query positions. Forcing with no
  // positions given writes only the rows at or after a prompt's last forced key: an earlier row cannot
  // see that key, and forcing it would move attention onto the future.
  at::Tensor rowMask = posMask.view({1, P}).expand({B, P}).clone();  // [batch, query]
  at::Tensor rows = at::zeros({B, P, P}, at::kFloat);  // [batch, query, key] target rows
  std::map<int, at::Tensor> uniformRows;  // Uniform: the layer's sliding window (0: none) → [batch, query, key]
  if (p.method == AblationMethod::Uniform) {
    // Uniform over the keys the model lets a query see: causal, and within the layer's sliding window if any.
    for (const auto& [l, hs] : byLayer) {
      const int w = c.windowOf(l);
      if (uniformRows.count(w)) continue;
      at::Tensor visible = at::ones({P, P}, at::kFloat).tril();     // [query, key]
      if (w > 0 && w < P) visible = visible.triu(-(w - 1));         // i − j < W
      uniformRows[w] = (visible / visible.sum(-1, true)).unsqueeze(0).expand({B, P, P}).to(m.device());
    }
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
      if (p.positions.empty()) {
        const int64_t lastKey = w.nonzero().max().item<int64_t>();
        rowMask[b].narrow(0, 0, lastKey).fill_(false);
      }
    }
  }
  const at::Tensor rowsAll = rows.to(m.device());
  const at::Tensor queryRows = rowMask.to(m.device()).view({B, 1, P, 1});  // [batch, 1, query, 1]
  for (const auto& [l, hs] : byLayer) {
    const std::vector<int64_t> heads = hs;
    const at::Tensor layerRows = p.method == AblationMethod::Uniform ? uniformRows.at(c.windowOf(l)) : rowsAll;
    hooks.add(hookName(PatchComponent::Pattern, l), [rows = layerRows, heads, queryRows](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();  // [batch, head, query, key]
      const at::Tensor pm = queryRows.select(1, 0);  // [batch, query, 1]
      for (int64_t h : heads) out.select(1, h).copy_(at::where(pm, rows.to(t.dtype()), t.select(1, h)));
      return out;
    });
  }
  return hooks;
}

at::Tensor ablationLogitDiff(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct, const at::Tensor& incorrect,
                             const HookSet* hooks, const RunContext* ctx, at::Tensor* logits) {
  ForwardOptions last;
  last.logitsLastOnly = true;
  const at::Tensor out = m.forward(tokens, last, hooks, ctx).logits;  // [batch, 1, vocab]
  if (logits) *logits = out;
  return logitDiff(out, correct, incorrect).cpu();
}

double ablationMetric(const at::Tensor& perPrompt) { return perPrompt.to(at::kDouble).mean().item<double>(); }

AblationResult ablate(const HookedTransformer& m, const at::Tensor& tokens, const at::Tensor& correct, const at::Tensor& incorrect,
                      const AblationParams& p, const RunContext* ctx) {
  if (!tokens.defined() || tokens.dim() != 2) throw InputError("ablation: prompts must be a [batch, pos] token batch");
  if (correct.numel() != tokens.size(0) || incorrect.numel() != tokens.size(0))
    throw InputError(fmt::format("ablation: {} prompts need {} correct and incorrect answer ids", tokens.size(0), tokens.size(0)));
  const HookSet hooks = ablationHooks(m, tokens, p, ctx);
  at::Tensor before, after;  // [batch, 1, vocab]
  AblationResult r;
  r.perPromptBefore = ablationLogitDiff(m, tokens, correct, incorrect, nullptr, ctx, &before);
  r.perPromptAfter = ablationLogitDiff(m, tokens, correct, incorrect, &hooks, ctx, &after);
  r.metricBefore = ablationMetric(r.perPromptBefore);
  r.metricAfter = ablationMetric(r.perPromptAfter);
  const at::Tensor c = correct.to(at::kLong).cpu();
  r.accuracyBefore = (before.select(1, 0).argmax(-1).cpu() == c).to(at::kDouble).mean().item<double>();
  r.accuracyAfter = (after.select(1, 0).argmax(-1).cpu() == c).to(at::kDouble).mean().item<double>();
  const at::Tensor idx = c.view({-1, 1}).to(before.device());
  r.answerProbBefore = before.select(1, 0).to(at::kDouble).softmax(-1).gather(1, idx).view({-1}).to(at::kFloat).cpu();
  r.answerProbAfter = after.select(1, 0).to(at::kDouble).softmax(-1).gather(1, idx).view({-1}).to(at::kFloat).cpu();
  r.aboveBefore = (r.perPromptBefore > 0).to(at::kDouble).mean().item<double>();
  r.aboveAfter = (r.perPromptAfter > 0).to(at::kDouble).mean().item<double>();
  int n = 0;
  for (const auto& [l, hs] : ablationSites(m.config(), p, tokens.size(0), tokens.size(1))) n += static_cast<int>(hs.size());
  r.ablatedHeads = n;
  r.ablatedExperts = static_cast<int>(p.experts.size());
  return r;
}

}  // namespace mechscope::analysis
