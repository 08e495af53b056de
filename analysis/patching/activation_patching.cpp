// Activation patching: batched sweep (variants on the batch dimension, shared prefix through
// forwardFrom), the one-forward-per-cell reference loop, and attribution patching.
#include "analysis/patching/activation_patching.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {
namespace {

/// Geometry of one component's site: per-sample axes (batch removed) of the head and the position.
struct SiteGeometry {
  int headAxis = -1;  // axis in the per-sample shape, -1 when not per head
  int posAxis = 0;
  int64_t nUnits = 1;  // heads (or KV heads) per layer, 1 for layer components
  int64_t nPos = 1;    // positions per cell set (P when per position, else 1)
};

SiteGeometry geometryOf(const HookedTransformer& m, const PatchParams& p, int64_t P) {
  SiteGeometry g;
  const auto& c = m.config();
  switch (p.component) {
    case PatchComponent::ResidPre:
    case PatchComponent::AttnOut:
    case PatchComponent::MlpOut: g.posAxis = 0; break;
    case PatchComponent::HeadOut:
    case PatchComponent::Q: g.posAxis = 0; g.headAxis = 1; g.nUnits = c.nHeads; break;
    case PatchComponent::K:
    case PatchComponent::V: g.posAxis = 0; g.headAxis = 1; g.nUnits = c.nKvHeads; break;
    case PatchComponent::Pattern: g.headAxis = 0; g.posAxis = 1; g.nUnits = c.nHeads; break;
    case PatchComponent::ExpertOut:
      if (c.moe.nExperts == 0)
        throw InputError(fmt::format("patching: expert_out needs a mixture-of-experts model ({} has no experts)", c.modelType));
      g.posAxis = 0;
      g.headAxis = 1;
      g.nUnits = c.moe.nExperts;
      break;
  }
  g.nPos = p.perPosition ? P : 1;
  return g;
}

/// Mask [V, sample...] bool: variant i (cell v0 + i) selects its head/position slice.
at::Tensor cellMask(const SiteGeometry& g, at::IntArrayRef sample, int64_t v0, int64_t V, bool perPosition) {
  std::vector<int64_t> shape{V};
  shape.insert(shape.end(), sample.begin(), sample.end());
  at::Tensor mask = at::zeros(shape, at::kBool);
  for (int64_t i = 0; i < V; ++i) {
    const int64_t cell = v0 + i, unit = cell / g.nPos, pos = cell % g.nPos;
    at::Tensor s = mask[i];
    if (g.headAxis >= 0) s = s.narrow(g.headAxis, unit, 1);
    if (perPosition) s = s.narrow(g.posAxis, pos, 1);
    s.fill_(true);
  }
  return mask;
}

/// [batch, pos] bool of each prompt's `role` position (PatchParams::positionRole); undefined without a role.
at::Tensor rolePositionMask(const PatchInputs& in, const PatchParams& p) {
  if (p.positionRole.empty()) return {};
  if (p.perPosition) throw InputError("patching: a role position and one cell per position exclude each other");
  const auto it = in.roles.find(p.positionRole);
  if (it == in.roles.end())
    throw InputError(fmt::format("patching: the prompts have no '{}' role position (roles come from `dataset` or a JSONL \"positions\" object)",
                                 p.positionRole));
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const at::Tensor pos = it->second.to(at::kLong).cpu().view({B, 1});
  if (pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= P)
    throw InputError(fmt::format("patching: role '{}' lies outside the {}-token prompts", p.positionRole, P));
  return at::zeros({B, P}, at::kBool).scatter_(1, pos, true);
}

/// `roleRows` [batch, pos] shaped to broadcast over [V, batch, sample...] (pos on the sample's posAxis).
at::Tensor roleRowsFor(const at::Tensor& roleRows, const SiteGeometry& g, int64_t sampleDims) {
  std::vector<int64_t> shape(static_cast<size_t>(2 + sampleDims), 1);
  shape[1] = roleRows.size(0);
  shape[static_cast<size_t>(2 + g.posAxis)] = roleRows.size(1);
  return roleRows.view(shape);
}

/// Replaces, in `t` [V*B, sample...], the masked cells of each variant by `clean` [B, sample...]; with
/// `roleRows` [batch, pos] only at each prompt's role position.
at::Tensor patchCells(const at::Tensor& t, const at::Tensor& clean, const at::Tensor& mask, const SiteGeometry& g,
                      const at::Tensor& roleRows = {}) {
  const int64_t V = mask.size(0), B = clean.size(0);
  std::vector<int64_t> vb{V, B};
  vb.insert(vb.end(), clean.sizes().begin() + 1, clean.sizes().end());
  at::Tensor tv = t.view(vb);                                            // [V, B, sample...]
  at::Tensor m = mask.to(t.device()).unsqueeze(1);                       // [V, 1, sample...]
  if (roleRows.defined()) m = m.logical_and(roleRowsFor(roleRows.to(t.device()), g, clean.dim() - 1));
  at::Tensor out = at::where(m, clean.to(t.dtype()).unsqueeze(0), tv);
  return out.view(t.sizes());
}

/// Output layout [layer, (unit,) (pos,) batch] of a sweep.
std::vector<int64_t> resultShape(const HookedTransformer& m, const PatchParams& p, const SiteGeometry& g, int64_t B) {
  std::vector<int64_t> s{m.config().nLayers};
  if (isHeadComponent(p.component)) s.push_back(g.nUnits);
  if (p.perPosition) s.push_back(g.nPos);
  s.push_back(B);
  return s;
}

/// Baselines and the clean cache of the component plus the corrupted resid_pre of every layer.
struct Baselines {
  ActivationCache clean;
  ActivationCache corrupt;
  at::Tensor ldClean, ldCorrupt;  // [batch]
};

Baselines baselines(const HookedTransformer& m, const PatchInputs& in, PatchComponent c, const RunContext* ctx) {
  checkPatchInputs(in, m.config().dVocab);
  Baselines b;
  const std::string glob = hookGlob(c);
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  ForwardResult rc, rx;
  b.clean = m.runWithCache(in.clean, {glob}, opts, std::nullopt, &rc, nullptr, ctx);
  b.corrupt = m.runWithCache(in.corrupt, {"blocks.*.hook_resid_pre", glob}, opts, std::nullopt, &rx, nullptr, ctx);
  b.ldClean = logitDiff(rc.logits, in.correct, in.incorrect);
  b.ldCorrupt = logitDiff(rx.logits, in.correct, in.incorrect);
  return b;
}

void finish(PatchResult& r, const Baselines& b, const PatchParams& p) {
  r.component = p.component;
  r.perPosition = p.perPosition;
  r.normalisation = p.normalisation;
  r.metricCleanPerPrompt = b.ldClean.cpu();
  r.metricCorruptPerPrompt = b.ldCorrupt.cpu();
  r.metricClean = b.ldClean.to(at::kDouble).mean().item<double>();
  r.metricCorrupt = b.ldCorrupt.to(at::kDouble).mean().item<double>();
  r.scores = normalise(r.metricPatched.to(at::kDouble).mean(-1), r.metricClean, r.metricCorrupt, p.normalisation);
}

}  // namespace

PatchResult activationPatch(const HookedTransformer& m, const PatchInputs& in, const PatchParams& p, const RunContext* ctx) {
  Baselines b = baselines(m, in, p.component, ctx);
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const SiteGeometry g = geometryOf(m, p, P);
  const at::Tensor roleRows = rolePositionMask(in, p);  // [batch, pos] or undefined
  const int64_t cells = g.nUnits * g.nPos;
  const int64_t perChunk = std::max<int64_t>(1, p.maxBatchRows / B);
  const int L = m.config().nLayers;
  PatchResult r;
  r.method = "activation";
  r.forwards = 2;
  r.metricPatched = at::zeros(resultShape(m, p, g, B), at::kFloat);
  at::Tensor flat = r.metricPatched.view({L, cells, B});
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  for (int l = 0; l < L; ++l) {
    const std::string site = hookName(p.component, l);
    if (!b.clean.has(site)) {  // no such site at this layer (expert_out of a dense layer): nothing to patch
      flat[l].copy_(b.ldCorrupt.cpu().to(at::kFloat).unsqueeze(0).expand({cells, B}));
      continue;
    }
    const at::Tensor& clean = b.clean.get(site);                             // [batch, sample...]
    const at::Tensor& base = b.corrupt.get(hookName(PatchComponent::ResidPre, l));  // [batch, pos, d_model]
    for (int64_t v0 = 0; v0 < cells; v0 += perChunk) {
      if (ctx) ctx->step(l * cells + v0, L * cells, "activation patching");
      const int64_t V = std::min(perChunk, cells - v0);
      const at::Tensor mask = cellMask(g, clean.sizes().slice(1), v0, V, p.perPosition);
      at::Tensor resid = base.repeat({V, 1, 1});  // [V*batch, pos, d_model], variant-major
      HookSet hooks;
      if (p.component == PatchComponent::ResidPre) {
        resid = patchCells(resid, clean, mask, g, roleRows);
      } else {
        hooks.add(site, [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
          return patchCells(t, clean, mask, g, roleRows);
        });
      }
      const ForwardResult fr = m.forwardFrom(l, resid, opts, &hooks, ctx);
      ++r.forwards;
      const at::Tensor correct = in.correct.repeat({V}), incorrect = in.incorrect.repeat({V});
      flat[l].narrow(0, v0, V).copy_(logitDiff(fr.logits, correct, incorrect).view({V, B}).cpu());
    }
  }
  finish(r, b, p);
  return r;
}

PatchResult activationPatchLoop(const HookedTransformer& m, const PatchInputs& in, const PatchParams& p,
                                const RunContext* ctx) {
  Baselines b = baselines(m, in, p.component, ctx);
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const SiteGeometry g = geometryOf(m, p, P);
  const at::Tensor roleRows = rolePositionMask(in, p);  // [batch, pos] or undefined
  const int64_t cells = g.nUnits * g.nPos;
  const int L = m.config().nLayers;
  PatchResult r;
  r.method = "activation-loop";
  r.forwards = 2;
  r.metricPatched = at::zeros(resultShape(m, p, g, B), at::kFloat);
  at::Tensor flat = r.metricPatched.view({L, cells, B});
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  for (int l = 0; l < L; ++l) {
    const std::string site = hookName(p.component, l);
    if (!b.clean.has(site)) {  // no such site at this layer (expert_out of a dense layer): nothing to patch
      flat[l].copy_(b.ldCorrupt.cpu().to(at::kFloat).unsqueeze(0).expand({cells, B}));
      continue;
    }
    const at::Tensor& clean = b.clean.get(site);
    for (int64_t cell = 0; cell < cells; ++cell) {
      if (ctx) ctx->step(l * cells + cell, L * cells, "activation patching (loop)");
      const at::Tensor mask = cellMask(g, clean.sizes().slice(1), cell, 1, p.perPosition);
      HookSet hooks;
      hooks.add(site, [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        return patchCells(t, clean, mask, g, roleRows);
      });
      const ForwardResult fr = m.forward(in.corrupt, opts, &hooks, ctx);
      ++r.forwards;
      flat[l][cell].copy_(logitDiff(fr.logits, in.correct, in.incorrect).cpu());
    }
  }
  finish(r, b, p);
  return r;
}

PatchResult attributionPatch(const HookedTransformer& m, const PatchInputs& in, const PatchParams& p,
                             const RunContext* ctx) {
  Baselines b = baselines(m, in, p.component, ctx);
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const SiteGeometry g = geometryOf(m, p, P);
  const at::Tensor roleRows = rolePositionMask(in, p);  // [batch, pos] or undefined
  const int L = m.config().nLayers;
  std::vector<at::Tensor> eps(static_cast<size_t>(L));
  std::vector<at::Tensor> acts(static_cast<size_t>(L));
  HookSet hooks;
  hooks.add(hookGlob(p.component), [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    // Adding a zero leaf keeps every path through the site (a replacing leaf would cut earlier ones).
    at::Tensor e = at::zeros_like(t).requires_grad_(true);
    eps[static_cast<size_t>(hc.layer)] = e;
    acts[static_cast<size_t>(hc.layer)] = t.detach();
    return t + e;
  });
  ForwardOptions opts;
  opts.logitsLastOnly = true;
  const ForwardResult fr = m.forward(in.corrupt, opts, &hooks, ctx);
  logitDiff(fr.logits, in.correct, in.incorrect).sum().backward();
  PatchResult r;
  r.method = "attribution";
  r.forwards = 3;
  r.metricPatched = at::zeros(resultShape(m, p, g, B), at::kFloat);
  for (int l = 0; l < L; ++l) {
    const auto li = static_cast<size_t>(l);
    if (!b.clean.has(hookName(p.component, l))) {  // no such site at this layer (expert_out of a dense layer)
      r.metricPatched[l].copy_(b.ldCorrupt.detach().cpu().to(at::kFloat).expand_as(r.metricPatched[l]));
      continue;
    }
    if (!eps[li].defined() || !eps[li].grad().defined())
      throw Error(fmt::format("attribution patching: no gradient reached {}", hookName(p.component, l)));
    const at::Tensor clean = b.clean.get(hookName(p.component, l));
    at::Tensor prod = ((clean.to(at::kFloat) - acts[li].to(at::kFloat)) * eps[li].grad().to(at::kFloat));  // [batch, sample...]
    if (roleRows.defined()) prod = prod * roleRowsFor(roleRows.to(prod.device()), g, prod.dim() - 1).squeeze(0).to(prod.dtype());
    at::Tensor cell;  // [(unit,) (pos,) batch]
    if (p.component == PatchComponent::Pattern) {
      cell = prod.sum(-1);                                              // [batch, head, query]
      cell = p.perPosition ? cell.permute({1, 2, 0}) : cell.sum(2).permute({1, 0});
    } else if (isHeadComponent(p.component)) {
      cell = prod.sum(-1);                                              // [batch, pos, head]
      cell = p.perPosition ? cell.permute({2, 1, 0}) : cell.sum(1).permute({1, 0});
    } else {
      cell = prod.sum(-1);                                              // [batch, pos]
      cell = p.perPosition ? cell.permute({1, 0}) : cell.sum(1);
    }
    r.metricPatched[l].copy_(cell.detach().cpu() + b.ldCorrupt.detach().cpu());
  }
  finish(r, b, p);
  return r;
}

}  // namespace mechscope::analysis
