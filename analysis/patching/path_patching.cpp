#include "analysis/patching/path_patching.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::string toString(ReceiverSite s) {
  switch (s) {
    case ReceiverSite::Q: return "q";
    case ReceiverSite::K: return "k";
    case ReceiverSite::V: return "v";
    case ReceiverSite::Z: return "z";
  }
  return "?";
}

ReceiverSite parseReceiverSite(const std::string& s) {
  for (auto r : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V, ReceiverSite::Z})
    if (toString(r) == s) return r;
  throw InputError(fmt::format("receiver component '{}' is unknown (expected q, k, v or z)", s));
}

namespace {

/// [pos] bool from a list of positions (negative = from the end); `all` when the list is empty.
at::Tensor positionMask(const std::vector<int64_t>& positions, int64_t P, bool lastWhenEmpty, const char* what) {
  at::Tensor m = at::zeros({P}, at::kBool);
  if (positions.empty()) {
    if (lastWhenEmpty) m[P - 1] = true;
    else m.fill_(true);
    return m;
  }
  for (int64_t q : positions) {
    const int64_t r = q < 0 ? P + q : q;
    if (r < 0 || r >= P) throw InputError(fmt::format("path patching: {} position {} is outside the {} prompt positions", what, q, P));
    m[r] = true;
  }
  return m;
}

std::string siteHook(ReceiverSite s, int layer) {
  switch (s) {
    case ReceiverSite::Q: return hookName(PatchComponent::Q, layer);
    case ReceiverSite::K: return hookName(PatchComponent::K, layer);
    case ReceiverSite::V: return hookName(PatchComponent::V, layer);
    case ReceiverSite::Z: return hookName(PatchComponent::HeadOut, layer);
  }
  return {};
}

}  // namespace

PathPatchResult pathPatch(const HookedTransformer& m, const PatchInputs& in, const PathPatchParams& p, const RunContext* ctx) {
  const ModelConfig& c = m.config();
  checkPatchInputs(in, c.dVocab);
  const int L = c.nLayers;
  const int64_t H = c.nHeads, rep = c.nHeads / c.nKvHeads, dh = c.dHead, D = c.dModel;
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const bool toLogits = p.receivers.empty();
  int minRecv = L, maxRecv = L;
  if (!toLogits) {
    minRecv = L;
    maxRecv = 0;
    for (const auto& r : p.receivers) {
      if (r.head.layer < 0 || r.head.layer >= L || r.head.head < 0 || r.head.head >= H)
        throw InputError(fmt::format("path patching: receiver head {}.{} is outside the model's {} layers × {} heads",
                                     r.head.layer, r.head.head, L, H));
      minRecv = std::min(minRecv, r.head.layer);
      maxRecv = std::max(maxRecv, r.head.layer);
    }
  }
  PathPatchResult res;
  res.normalisation = p.variant == PathVariant::Ioi ? Normalisation::IoiPercent : Normalisation::MerulloPercent;
  if (p.senders.empty()) {
    for (int l = 0; l < maxRecv; ++l)
      for (int h = 0; h < H; ++h) res.senders.push_back({l, h});
  } else {
    for (const auto& s : p.senders) {
      if (s.layer < 0 || s.layer >= L || s.head < 0 || s.head >= H)
        throw InputError(fmt::format("path patching: sender head {}.{} is outside the model's {} layers × {} heads",
                                     s.layer, s.head, L, H));
      if (s.layer >= maxRecv)
        throw InputError(fmt::format("path patching: sender {}.{} is not below any receiver (last receiver layer {})",
                                     s.layer, s.head, maxRecv));
    }
    res.senders = p.senders;
  }
  const at::Tensor sendPos = positionMask(p.senderPositions, P, p.variant == PathVariant::Merullo, "sender");
  const at::Tensor recvPos = positionMask(p.receiverPositions, P, false, "receiver");

  // ---- clean and corrupted runs ----
  ForwardOptions last;
  last.logitsLastOnly = true;
  ForwardResult rc, rx;
  const std::string finalResid = fmt::format("blocks.{}.hook_resid_post", L - 1);
  const ActivationCache clean =
      m.runWithCache(in.clean, {"blocks.*.attn.hook_z", "blocks.*.hook_resid_pre", finalResid}, last, std::nullopt, &rc, nullptr, ctx);
  const ActivationCache corrupt = m.runWithCache(in.corrupt, {"blocks.*.attn.hook_z"}, last, std::nullopt, &rx, nullptr, ctx);
  const at::Tensor ldClean = logitDiff(rc.logits, in.correct, in.incorrect).cpu();
  const at::Tensor ldCorrupt = logitDiff(rx.logits, in.correct, in.incorrect).cpu();
  res.metricClean = ldClean.to(at::kDouble).mean().item<double>();
  res.metricCorrupt = ldCorrupt.to(at::kDouble).mean().item<double>();

  const auto nS = static_cast<int64_t>(res.senders.size());
  res.metricPatched = at::zeros({nS, B}, at::kFloat);
  const int64_t chunk = std::max<int64_t>(1, p.maxBatchRows / B);
  const at::Tensor sendMask = sendPos.to(m.device()).view({1, P, 1});  // [1, pos, 1]
  const at::Tensor recvMask = recvPos.to(m.device()).view({1, P, 1});  // [1, pos, 1]
  std::set<int> recvLayers;
  for (const auto& r : p.receivers) recvLayers.insert(r.head.layer);
  const at::Tensor correctV = in.correct, incorrectV = in.incorrect;

  for (int64_t s0 = 0; s0 < nS; s0 += chunk) {
    if (ctx) ctx->step(s0, nS, "path patching");
    const int64_t V = std::min(chunk, nS - s0);
    // Each sender's change of the residual stream: (z_corrupt − z_clean) W_O^h at the sender positions.
    std::vector<at::Tensor> deltas;  // V × [batch, pos, d_model]
    for (int64_t i = 0; i < V; ++i) {
      const HeadRef s = res.senders[static_cast<size_t>(s0 + i)];
      const std::string zName = hookName(PatchComponent::HeadOut, s.layer);
      const at::Tensor zd = (corrupt.get(zName).select(2, s.head) - clean.get(zName).select(2, s.head)) * sendMask;  // [batch, pos, d_head]
      const at::Tensor wO = m.weights().layers[static_cast<size_t>(s.layer)].wO.view({D, H, dh}).select(1, s.head);  // [d_model, d_head]
      deltas.push_back(at::matmul(zd, wO.t()));
    }
    auto residWith = [&](const at::Tensor& base, int layer) {  // [V*batch, pos, d_model]
      std::vector<at::Tensor> rows;
      for (int64_t i = 0; i < V; ++i) {
        const HeadRef s = res.senders[static_cast<size_t>(s0 + i)];
        rows.push_back(s.layer < layer ? base + deltas[static_cast<size_t>(i)] : base);
      }
      return at::cat(rows, 0);
    };
    const at::Tensor correct = correctV.repeat({V}), incorrect = incorrectV.repeat({V});
    at::Tensor ld;
    if (toLogits) {
      const ForwardResult fr = m.forwardFrom(L, residWith(clean.get(finalResid), L), last, nullptr, ctx);
      ld = logitDiff(fr.logits, correct, incorrect);
    } else {
      // Pass 1: the receivers' activations given the patched residual at their layer.
      std::map<std::string, at::Tensor> recorded;
      for (int lr : recvLayers) {
        HookSet rec;
        for (auto site : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V, ReceiverSite::Z})
          rec.add(siteHook(site, lr), [&recorded](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
            recorded[hc.name] = t;
            return std::nullopt;
          });
        ForwardOptions one;
        one.stopAtLayer = lr + 1;
        m.forwardFrom(lr, residWith(clean.get(hookName(PatchComponent::ResidPre, lr)), lr), one, &rec, ctx);
      }
      // Pass 2: the clean run from the first receiver layer with the receivers substituted.
      HookSet sub;
      std::map<std::string, std::vector<int64_t>> headsBySite;
      for (const auto& r : p.receivers) {
        const bool kv = r.site == ReceiverSite::K || r.site == ReceiverSite::V;
        headsBySite[siteHook(r.site, r.head.layer)].push_back(kv ? r.head.head / rep : r.head.head);
      }
      for (const auto& [name, heads] : headsBySite) {
        const std::vector<int64_t> hs = heads;
        const at::Tensor src = recorded.at(name);  // [V*batch, pos, head, d_head]
        sub.add(name, [src, hs, recvMask](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
          at::Tensor out = t.clone();
          for (int64_t h : hs) out.select(2, h).copy_(at::where(recvMask, src.select(2, h), t.select(2, h)));
          return out;
        });
      }
      const at::Tensor base = clean.get(hookName(PatchComponent::ResidPre, minRecv)).repeat({V, 1, 1});
      const ForwardResult fr = m.forwardFrom(minRecv, base, last, &sub, ctx);
      ld = logitDiff(fr.logits, correct, incorrect);
    }
    res.metricPatched.narrow(0, s0, V).copy_(ld.view({V, B}).cpu());
  }

  res.effect = at::zeros({L, H}, at::kFloat);
  res.scores = at::zeros({L, H}, at::kFloat);
  const at::Tensor meanPatched = res.metricPatched.to(at::kDouble).mean(1);  // [sender]
  const at::Tensor eff = normalise(meanPatched, res.metricClean, res.metricCorrupt, Normalisation::Noising);
  const at::Tensor sc = normalise(meanPatched, res.metricClean, res.metricCorrupt, res.normalisation);
  for (int64_t i = 0; i < nS; ++i) {
    const HeadRef s = res.senders[static_cast<size_t>(i)];
    res.effect[s.layer][s.head] = eff[i];
    res.scores[s.layer][s.head] = sc[i];
  }
  return res;
}

}  // namespace mechscope::analysis
