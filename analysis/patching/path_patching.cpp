#include "analysis/patching/path_patching.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

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

/// [batch, pos] bool from a list of positions (negative = from the end); `all` when the list is empty.
at::Tensor positionMask(const std::vector<int64_t>& positions, int64_t B, int64_t P, bool lastWhenEmpty, const char* what) {
  at::Tensor m = at::zeros({P}, at::kBool);
  if (positions.empty()) {
    if (lastWhenEmpty) m[P - 1] = true;
    else m.fill_(true);
  }
  for (int64_t q : positions) {
    const int64_t r = q < 0 ? P + q : q;
    if (r < 0 || r >= P) throw InputError(fmt::format("path patching: {} position {} is outside the {} prompt positions", what, q, P));
    m[r] = true;
  }
  return m.view({1, P}).expand({B, P}).contiguous();
}

/// [batch, pos] bool: each prompt's position of `role`.
at::Tensor roleMask(const PatchInputs& in, const std::string& role) {
  const auto it = in.roles.find(role);
  if (it == in.roles.end())
    throw InputError(fmt::format("path patching: the prompts have no '{}' role position (roles come from `dataset` or a JSONL \"positions\" object)", role));
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const at::Tensor pos = it->second.to(at::kLong).cpu();  // [batch]
  if (pos.size(0) != B || pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= P)
    throw InputError(fmt::format("path patching: role '{}' positions do not fit {} prompts of {} tokens", role, B, P));
  return at::zeros({B, P}, at::kBool).scatter_(1, pos.view({B, 1}), true);
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

/// Rows of `t` [rows, ...] repeated `times` along the batch (variants are consecutive blocks of rows).
at::Tensor repeatRows(const at::Tensor& t, int64_t times) {
  std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
  reps[0] = times;
  return t.repeat(reps);
}

/// The senders of a run: the given ones (checked) or the variant's default set.
std::vector<HeadRef> pathSenders(const PathPatchParams& p, const ModelConfig& c, int minRecv, int maxRecv) {
  const int L = c.nLayers;
  const int H = static_cast<int>(c.nHeads);
  std::vector<HeadRef> out;
  if (p.senders.empty()) {
    // Wang et al.: every head below the highest receiver. Merullo et al. (truncate_to_max_layer): every
    // head in layers ≤ the lowest receiver layer that is not itself a receiver (the logits: every head).
    const int top = p.variant == PathVariant::Merullo && !p.receivers.empty() ? std::min(minRecv + 1, L) : maxRecv;
    for (int l = 0; l < top; ++l)
      for (int h = 0; h < H; ++h) {
        const HeadRef s{l, h};
        const bool isReceiver = std::any_of(p.receivers.begin(), p.receivers.end(), [&](const Receiver& r) { return r.head == s; });
        if (!(p.variant == PathVariant::Merullo && isReceiver)) out.push_back(s);
      }
    return out;
  }
  for (const auto& s : p.senders) {
    if (s.layer < 0 || s.layer >= L || s.head < 0 || s.head >= H)
      throw InputError(fmt::format("path patching: sender head {}.{} is outside the model's {} layers × {} heads", s.layer, s.head, L, H));
    if (s.layer >= maxRecv)
      throw InputError(fmt::format("path patching: sender {}.{} is not below any receiver (last receiver layer {})", s.layer, s.head, maxRecv));
  }
  return p.senders;
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
  res.senders = pathSenders(p, c, minRecv, maxRecv);
  if (res.senders.empty()) throw InputError("path patching: no head lies below the receivers");

  // Where senders are patched, receivers substituted and (Merullo) other heads frozen: [batch, pos].
  const bool merullo = p.variant == PathVariant::Merullo;
  at::Tensor sendPos, recvPos;
  if (!p.positionRole.empty()) {
    sendPos = roleMask(in, p.positionRole);
    recvPos = sendPos;
  } else {
    sendPos = positionMask(p.senderPositions, B, P, merullo, "sender");
    recvPos = p.receiverPositions.empty() ? sendPos : positionMask(p.receiverPositions, B, P, false, "receiver");
  }
  const bool freezeEverywhere = !merullo;  // Wang freezes every position, Merullo only the sender positions
  const at::Tensor freezePos = freezeEverywhere ? at::ones({B, P}, at::kBool) : sendPos;

  // ---- clean and corrupted runs ----
  ForwardOptions last;
  last.logitsLastOnly = true;
  ForwardResult rc, rx;
  const std::string finalResid = hook::residPost(L - 1);
  std::vector<std::string> cleanHooks = {"blocks.*.attn.hook_z", "blocks.*.hook_resid_pre", finalResid};
  if (p.freezeMlps) cleanHooks.push_back("blocks.*.hook_mlp_out");
  const ActivationCache clean = m.runWithCache(in.clean, cleanHooks, last, std::nullopt, &rc, nullptr, ctx);
  const ActivationCache corrupt = m.runWithCache(in.corrupt, {"blocks.*.attn.hook_z"}, last, std::nullopt, &rx, nullptr, ctx);
  const at::Tensor ldClean = logitDiff(rc.logits, in.correct, in.incorrect).cpu();
  const at::Tensor ldCorrupt = logitDiff(rx.logits, in.correct, in.incorrect).cpu();
  res.metricClean = ldClean.to(at::kDouble).mean().item<double>();
  res.metricCorrupt = ldCorrupt.to(at::kDouble).mean().item<double>();

  const auto nS = static_cast<int64_t>(res.senders.size());
  res.metricPatched = at::zeros({nS, B}, at::kFloat);
  const int64_t chunk = std::max<int64_t>(1, p.maxBatchRows / B);
  const at::Tensor sendMask = sendPos.to(m.device()).view({B, P, 1});      // [batch, pos, 1]
  const at::Tensor freezeMask = freezePos.to(m.device()).view({B, P, 1, 1});  // [batch, pos, 1, 1]
  std::set<int> recvLayers;
  for (const auto& r : p.receivers) recvLayers.insert(r.head.layer);
  // With MLPs and every position frozen the residual is exactly clean + the sender's change (linear).
  const bool linear = p.freezeMlps && freezeEverywhere;

  for (int64_t s0 = 0; s0 < nS; s0 += chunk) {
    if (ctx) ctx->step(s0, nS, "path patching");
    const int64_t V = std::min(chunk, nS - s0);
    const auto senderOf = [&](int64_t i) { return res.senders[static_cast<size_t>(s0 + i)]; };
    const at::Tensor recvMask = repeatRows(recvPos.to(m.device()), V).view({V * B, P, 1});  // [V*batch, pos, 1]
    std::map<std::string, at::Tensor> recorded;  // receiver hook → [V*batch, pos, head, d_head]
    at::Tensor ld;                               // [V*batch]

    if (linear) {
      // Each sender's change of the residual stream: (z_corrupt − z_clean) W_O^h at the sender positions.
      std::vector<at::Tensor> deltas;  // V × [batch, pos, d_model]
      for (int64_t i = 0; i < V; ++i) {
        const HeadRef s = senderOf(i);
        const std::string zName = hookName(PatchComponent::HeadOut, s.layer);
        const at::Tensor zd = (corrupt.get(zName).select(2, s.head) - clean.get(zName).select(2, s.head)) * sendMask;  // [batch, pos, d_head]
        const at::Tensor wO = m.weights().layers[static_cast<size_t>(s.layer)].wO.view({D, H, dh}).select(1, s.head);  // [d_model, d_head]
        deltas.push_back(at::matmul(zd, wO.t()));
      }
      auto residWith = [&](const at::Tensor& base, int layer) {  // [V*batch, pos, d_model]
        std::vector<at::Tensor> rows;
        for (int64_t i = 0; i < V; ++i) rows.push_back(senderOf(i).layer < layer ? base + deltas[static_cast<size_t>(i)] : base);
        return at::cat(rows, 0);
      };
      if (toLogits) {
        ld = logitDiff(m.forwardFrom(L, residWith(clean.get(finalResid), L), last, nullptr, ctx).logits,
                       in.correct.repeat({V}), in.incorrect.repeat({V}));
      } else {
        for (int lr : recvLayers) {  // the receivers' activations given the patched residual at their layer
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
      }
    } else {
      // Pass 1: from the lowest sender layer of the batch (below it every row is the clean run), every
      // head's z frozen to clean where freezeMask holds, the sender's z corrupted at the sender positions,
      // MLPs recomputed or frozen; the receivers' inputs are recorded before any freezing.
      int start = L;
      for (int64_t i = 0; i < V; ++i) start = std::min(start, senderOf(i).layer);
      std::vector<std::vector<std::pair<int64_t, int64_t>>> sendersAt(static_cast<size_t>(L));  // layer → (variant, head)
      for (int64_t i = 0; i < V; ++i) sendersAt[static_cast<size_t>(senderOf(i).layer)].push_back({i, senderOf(i).head});
      const at::Tensor freezeRows = repeatRows(freezeMask, V);  // [V*batch, pos, 1, 1]
      const at::Tensor sendRows = sendMask.view({B, P, 1});     // [batch, pos, 1]
      HookSet pass1;
      for (int lr : recvLayers)
        for (auto site : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V})
          pass1.add(siteHook(site, lr), [&recorded](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
            recorded[hc.name] = t;
            return std::nullopt;
          });
      pass1.add("blocks.*.attn.hook_z", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
        if (recvLayers.count(hc.layer)) recorded[hc.name] = t;
        const at::Tensor cleanZ = repeatRows(clean.get(hc.name), V);  // [V*batch, pos, head, d_head]
        at::Tensor out = at::where(freezeRows, cleanZ, t);
        const at::Tensor zx = corrupt.get(hc.name);  // [batch, pos, head, d_head]
        for (const auto& [i, h] : sendersAt[static_cast<size_t>(hc.layer)]) {
          at::Tensor rows = out.narrow(0, i * B, B).select(2, h);  // [batch, pos, d_head] view into out
          rows.copy_(at::where(sendRows, zx.select(2, h), rows));
        }
        return out;
      });
      if (p.freezeMlps)
        pass1.add("blocks.*.hook_mlp_out", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
          return at::where(freezeRows.view({V * B, P, 1}), repeatRows(clean.get(hc.name), V), t);
        });
      ForwardOptions opt1 = last;
      if (!toLogits) opt1.stopAtLayer = maxRecv + 1;
      const at::Tensor base = repeatRows(clean.get(hookName(PatchComponent::ResidPre, start)), V);  // [V*batch, pos, d_model]
      const ForwardResult fr = m.forwardFrom(start, base, opt1, &pass1, ctx);
      // The logits receiver is the final residual at the last position, so pass 2 would return pass 1's logits.
      if (toLogits) ld = logitDiff(fr.logits, in.correct.repeat({V}), in.incorrect.repeat({V}));
    }

    if (!toLogits) {
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
      const at::Tensor base = repeatRows(clean.get(hookName(PatchComponent::ResidPre, minRecv)), V);
      ld = logitDiff(m.forwardFrom(minRecv, base, last, &sub, ctx).logits, in.correct.repeat({V}), in.incorrect.repeat({V}));
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
