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

/// The lowest and highest receiver layer; both the layer count when the receiver is the logits.
struct ReceiverLayerRange {
  int lowest = 0;
  int highest = 0;
};

/// The receivers' layer range; InputError for a receiver head outside the model.
ReceiverLayerRange receiverLayerRange(const PathPatchParams& p, const ModelConfig& c) {
  const int L = c.nLayers;
  const int64_t H = c.nHeads;
  ReceiverLayerRange range{L, L};
  if (p.receivers.empty()) return range;
  range.highest = 0;
  for (const auto& r : p.receivers) {
    if (r.head.layer < 0 || r.head.layer >= L || r.head.head < 0 || r.head.head >= H)
      throw InputError(fmt::format("path patching: receiver head {}.{} is outside the model's {} layers × {} heads",
                                   r.head.layer, r.head.head, L, H));
    range.lowest = std::min(range.lowest, r.head.layer);
    range.highest = std::max(range.highest, r.head.layer);
  }
  return range;
}

/// Where senders are patched, receivers substituted and (Merullo) other heads frozen.
struct PathPositions {
  at::Tensor send;    // [batch, pos] bool
  at::Tensor recv;    // [batch, pos] bool
  at::Tensor freeze;  // [batch, pos] bool
};

/// The positions of a run: a role's position of each prompt, or the position lists (defaults as the
/// variant's paper). Wang freezes every position, Merullo only the sender positions.
PathPositions pathPositions(const PathPatchParams& p, const PatchInputs& in) {
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const bool merullo = p.variant == PathVariant::Merullo;
  PathPositions pos;
  if (!p.positionRole.empty()) {
    pos.send = roleMask(in, p.positionRole);
    pos.recv = pos.send;
  } else {
    pos.send = positionMask(p.senderPositions, B, P, merullo, "sender");
    pos.recv = p.receiverPositions.empty() ? pos.send : positionMask(p.receiverPositions, B, P, false, "receiver");
  }
  pos.freeze = merullo ? pos.send : at::ones({B, P}, at::kBool);
  return pos;
}

/// Forward options of every pass: logits of the last position only.
ForwardOptions lastPositionLogits() {
  ForwardOptions last;
  last.logitsLastOnly = true;
  return last;
}

/// The clean run's activations (every z and resid_pre, the final residual, and MLP outputs when they are
/// frozen), the corrupted run's z, and both runs' mean logit difference.
struct ReferenceRuns {
  ActivationCache clean;
  ActivationCache corrupt;
  double metricClean = 0;
  double metricCorrupt = 0;
};

/// Runs the clean and the corrupted prompts once, caching what the patched passes read.
ReferenceRuns runCleanAndCorrupt(const HookedTransformer& m, const PatchInputs& in, bool freezeMlps, const RunContext* ctx) {
  const ForwardOptions last = lastPositionLogits();
  ForwardResult rc, rx;
  const std::string finalResid = hook::residPost(m.config().nLayers - 1);
  std::vector<std::string> cleanHooks = {"blocks.*.attn.hook_z", "blocks.*.hook_resid_pre", finalResid};
  if (freezeMlps) cleanHooks.emplace_back("blocks.*.hook_mlp_out");
  ReferenceRuns runs;
  runs.clean = m.runWithCache(in.clean, cleanHooks, last, std::nullopt, &rc, nullptr, ctx);
  runs.corrupt = m.runWithCache(in.corrupt, {"blocks.*.attn.hook_z"}, last, std::nullopt, &rx, nullptr, ctx);
  const at::Tensor ldClean = logitDiff(rc.logits, in.correct, in.incorrect).cpu();      // [batch]
  const at::Tensor ldCorrupt = logitDiff(rx.logits, in.correct, in.incorrect).cpu();  // [batch]
  runs.metricClean = ldClean.to(at::kDouble).mean().item<double>();
  runs.metricCorrupt = ldCorrupt.to(at::kDouble).mean().item<double>();
  return runs;
}

/// What every batch of senders of one run shares.
struct SenderBatchContext {
  const HookedTransformer& m;
  const PatchInputs& in;
  const PathPatchParams& p;
  const RunContext* ctx;
  const ReferenceRuns& runs;
  ReceiverLayerRange recv;
  std::set<int> recvLayers;  // layers holding a receiver head
  at::Tensor sendMask;       // [batch, pos, 1] on the model's device
  at::Tensor freezeMask;     // [batch, pos, 1, 1] on the model's device
  at::Tensor recvPos;        // [batch, pos] bool
  bool toLogits = false;     // the receiver is the residual read by the logits
  bool freezeEverywhere = false;
};

/// Receiver activations recorded in pass 1 by hook name: [V*batch, pos, head, d_head].
using RecordedActivations = std::map<std::string, at::Tensor>;

/// A hook that stores the activation it sees under its hook name and leaves it unchanged.
HookFn recordInto(RecordedActivations& recorded) {
  return [&recorded](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    recorded[hc.name] = t;
    return std::nullopt;
  };
}

/// Logit difference [V*batch] of V variants stacked on the batch, from their logits [V*batch, 1, vocab].
at::Tensor variantLogitDiff(const at::Tensor& logits, const PatchInputs& in, int64_t V) {
  return logitDiff(logits, in.correct.repeat({V}), in.incorrect.repeat({V}));
}

/// Each sender's change of the residual stream: (z_corrupt − z_clean) W_O^h at the sender positions,
/// V × [batch, pos, d_model].
std::vector<at::Tensor> senderResidDeltas(const SenderBatchContext& b, const std::vector<HeadRef>& senders) {
  const ModelConfig& c = b.m.config();
  const int64_t H = c.nHeads, dh = c.dHead, D = c.dModel;
  std::vector<at::Tensor> deltas;
  for (const HeadRef& s : senders) {
    const std::string zName = hookName(PatchComponent::HeadOut, s.layer);
    const at::Tensor zCorrupt = b.runs.corrupt.get(zName).select(2, s.head);  // [batch, pos, d_head]
    const at::Tensor zClean = b.runs.clean.get(zName).select(2, s.head);      // [batch, pos, d_head]
    const at::Tensor zd = (zCorrupt - zClean) * b.sendMask;                   // [batch, pos, d_head]
    const at::Tensor wO =
        b.m.weights().layers[static_cast<size_t>(s.layer)].wO.view({D, H, dh}).select(1, s.head).to(zd.device());  // [d_model, d_head]
    deltas.push_back(at::matmul(zd, wO.t()));
  }
  return deltas;
}

/// The clean residual `base` [batch, pos, d_model] at `layer`, plus each sender's delta where the sender
/// lies below that layer: [V*batch, pos, d_model].
at::Tensor residWithSenders(const at::Tensor& base, int layer, const std::vector<HeadRef>& senders,
                            const std::vector<at::Tensor>& deltas) {
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < senders.size(); ++i) rows.push_back(senders[i].layer < layer ? base + deltas[i] : base);
  return at::cat(rows, 0);
}

/// Pass 1 when MLPs and every position are frozen: the residual is exactly clean + the sender's change
/// (linear), so the layers between are skipped. To the logits: the patched LD [V*batch]. Otherwise the
/// receivers' q/k/v/z given the patched residual at their layer go to `recorded`, and the result is undefined.
at::Tensor linearPass1(const SenderBatchContext& b, const std::vector<HeadRef>& senders, RecordedActivations& recorded) {
  const int L = b.m.config().nLayers;
  const auto V = static_cast<int64_t>(senders.size());
  const std::vector<at::Tensor> deltas = senderResidDeltas(b, senders);
  if (b.toLogits) {
    const at::Tensor finalResid = b.runs.clean.get(hook::residPost(L - 1));  // [batch, pos, d_model]
    return variantLogitDiff(b.m.forwardFrom(L, residWithSenders(finalResid, L, senders, deltas), lastPositionLogits(), nullptr, b.ctx).logits,
                            b.in, V);
  }
  for (int lr : b.recvLayers) {
    HookSet rec;
    for (auto site : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V, ReceiverSite::Z}) rec.add(siteHook(site, lr), recordInto(recorded));
    ForwardOptions one;
    one.stopAtLayer = lr + 1;
    b.m.forwardFrom(lr, residWithSenders(b.runs.clean.get(hookName(PatchComponent::ResidPre, lr)), lr, senders, deltas), one, &rec, b.ctx);
  }
  return {};
}

/// Pass 1 with the layers recomputed: from the lowest sender layer of the batch (below it every row is
/// the clean run), every head's z frozen to clean where freezeMask holds, the sender's z corrupted at the
/// sender positions, MLPs recomputed or frozen; the receivers' inputs are recorded in `recorded` before
/// any freezing. To the logits: the patched LD [V*batch] (pass 2 would return pass 1's logits, since
/// that receiver is the final residual at the last position); otherwise undefined.
at::Tensor recomputedPass1(const SenderBatchContext& b, const std::vector<HeadRef>& senders, RecordedActivations& recorded) {
  const int L = b.m.config().nLayers;
  const int64_t B = b.in.clean.size(0), P = b.in.clean.size(1);
  const auto V = static_cast<int64_t>(senders.size());
  int start = L;
  for (const HeadRef& s : senders) start = std::min(start, s.layer);
  std::vector<std::vector<std::pair<int64_t, int64_t>>> sendersAt(static_cast<size_t>(L));  // layer → (variant, head)
  for (int64_t i = 0; i < V; ++i) {
    const HeadRef& s = senders[static_cast<size_t>(i)];
    sendersAt[static_cast<size_t>(s.layer)].push_back({i, s.head});
  }
  const at::Tensor freezeRows = repeatRows(b.freezeMask, V);  // [V*batch, pos, 1, 1]
  const at::Tensor sendRows = b.sendMask.view({B, P, 1});     // [batch, pos, 1]
  const ActivationCache& clean = b.runs.clean;
  const ActivationCache& corrupt = b.runs.corrupt;
  HookSet pass1;
  for (int lr : b.recvLayers)
    for (auto site : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V}) pass1.add(siteHook(site, lr), recordInto(recorded));
  pass1.add("blocks.*.attn.hook_z", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
    if (b.recvLayers.count(hc.layer)) recorded[hc.name] = t;
    const at::Tensor cleanZ = repeatRows(clean.get(hc.name), V);  // [V*batch, pos, head, d_head]
    at::Tensor out = at::where(freezeRows, cleanZ, t);
    const at::Tensor zx = corrupt.get(hc.name);  // [batch, pos, head, d_head]
    for (const auto& [i, h] : sendersAt[static_cast<size_t>(hc.layer)]) {
      at::Tensor rows = out.narrow(0, i * B, B).select(2, h);  // [batch, pos, d_head] view into out
      rows.copy_(at::where(sendRows, zx.select(2, h), rows));
    }
    return out;
  });
  if (b.p.freezeMlps)
    pass1.add("blocks.*.hook_mlp_out", [&](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      return at::where(freezeRows.view({V * B, P, 1}), repeatRows(clean.get(hc.name), V), t);
    });
  ForwardOptions opt1 = lastPositionLogits();
  if (!b.toLogits) opt1.stopAtLayer = b.recv.highest + 1;
  const at::Tensor base = repeatRows(clean.get(hookName(PatchComponent::ResidPre, start)), V);  // [V*batch, pos, d_model]
  const ForwardResult fr = b.m.forwardFrom(start, base, opt1, &pass1, b.ctx);
  if (b.toLogits) return variantLogitDiff(fr.logits, b.in, V);
  return {};
}

/// Pass 2: the clean run from the first receiver layer with the receivers' activations replaced by the
/// `recorded` ones of pass 1 at the receiver positions; the patched LD [V*batch].
at::Tensor receiversSubstitutedPass(const SenderBatchContext& b, int64_t V, const RecordedActivations& recorded) {
  const int64_t B = b.in.clean.size(0), P = b.in.clean.size(1);
  const int64_t rep = b.m.config().nHeads / b.m.config().nKvHeads;
  const at::Tensor recvMask = repeatRows(b.recvPos.to(b.m.device()), V).view({V * B, P, 1});  // [V*batch, pos, 1]
  std::map<std::string, std::vector<int64_t>> headsBySite;  // receiver hook → heads (kv heads for k and v)
  for (const auto& r : b.p.receivers) {
    const bool kv = r.site == ReceiverSite::K || r.site == ReceiverSite::V;
    headsBySite[siteHook(r.site, r.head.layer)].push_back(kv ? r.head.head / rep : r.head.head);
  }
  HookSet sub;
  for (const auto& [name, heads] : headsBySite) {
    const std::vector<int64_t> hs = heads;
    const at::Tensor src = recorded.at(name);  // [V*batch, pos, head, d_head]
    sub.add(name, [src, hs, recvMask](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      for (int64_t h : hs) out.select(2, h).copy_(at::where(recvMask, src.select(2, h), t.select(2, h)));
      return out;
    });
  }
  const at::Tensor base = repeatRows(b.runs.clean.get(hookName(PatchComponent::ResidPre, b.recv.lowest)), V);  // [V*batch, pos, d_model]
  return variantLogitDiff(b.m.forwardFrom(b.recv.lowest, base, lastPositionLogits(), &sub, b.ctx).logits, b.in, V);
}

/// The patched LD [V*batch] of one batch of V senders (variants are consecutive blocks of prompts):
/// pass 1 (linear or recomputed), then pass 2 unless the receiver is the logits.
at::Tensor patchedLogitDiff(const SenderBatchContext& b, const std::vector<HeadRef>& senders) {
  RecordedActivations recorded;
  // With MLPs and every position frozen the residual is exactly clean + the sender's change (linear);
  // not with a post-attention norm (Gemma 2/3, OLMo-2), whose scale mixes the sender with its layer's other
  // heads: those models recompute the layers.
  const bool linear = b.p.freezeMlps && b.freezeEverywhere && !b.m.config().postAttnNorm;
  at::Tensor ld = linear ? linearPass1(b, senders, recorded) : recomputedPass1(b, senders, recorded);  // [V*batch]
  if (!b.toLogits) ld = receiversSubstitutedPass(b, static_cast<int64_t>(senders.size()), recorded);
  return ld;
}

/// effect and scores [layer, head] from the senders' mean patched LD; 0 for heads that are not senders.
void fillSenderScores(PathPatchResult& res, int nLayers, int64_t nHeads) {
  res.effect = at::zeros({nLayers, nHeads}, at::kFloat);
  res.scores = at::zeros({nLayers, nHeads}, at::kFloat);
  const at::Tensor meanPatched = res.metricPatched.to(at::kDouble).mean(1);  // [sender]
  const at::Tensor eff = normalise(meanPatched, res.metricClean, res.metricCorrupt, Normalisation::Noising);
  const at::Tensor sc = normalise(meanPatched, res.metricClean, res.metricCorrupt, res.normalisation);
  for (size_t i = 0; i < res.senders.size(); ++i) {
    const HeadRef s = res.senders[i];
    res.effect[s.layer][s.head] = eff[static_cast<int64_t>(i)];
    res.scores[s.layer][s.head] = sc[static_cast<int64_t>(i)];
  }
}

}  // namespace

PathPatchResult pathPatch(const HookedTransformer& m, const PatchInputs& in, const PathPatchParams& p, const RunContext* ctx) {
  const ModelConfig& c = m.config();
  checkPatchInputs(in, c.dVocab);
  const int64_t B = in.clean.size(0), P = in.clean.size(1);
  const ReceiverLayerRange recv = receiverLayerRange(p, c);
  PathPatchResult res;
  res.normalisation = p.variant == PathVariant::Ioi ? Normalisation::IoiPercent : Normalisation::MerulloPercent;
  res.senders = pathSenders(p, c, recv.lowest, recv.highest);
  if (res.senders.empty()) throw InputError("path patching: no head lies below the receivers");
  const PathPositions pos = pathPositions(p, in);

  const ReferenceRuns runs = runCleanAndCorrupt(m, in, p.freezeMlps, ctx);
  res.metricClean = runs.metricClean;
  res.metricCorrupt = runs.metricCorrupt;

  SenderBatchContext batchContext{.m = m,
                                  .in = in,
                                  .p = p,
                                  .ctx = ctx,
                                  .runs = runs,
                                  .recv = recv,
                                  .recvLayers = {},
                                  .sendMask = pos.send.to(m.device()).view({B, P, 1}),        // [batch, pos, 1]
                                  .freezeMask = pos.freeze.to(m.device()).view({B, P, 1, 1}),  // [batch, pos, 1, 1]
                                  .recvPos = pos.recv,
                                  .toLogits = p.receivers.empty(),
                                  .freezeEverywhere = p.variant != PathVariant::Merullo};
  for (const auto& r : p.receivers) batchContext.recvLayers.insert(r.head.layer);

  const auto nS = static_cast<int64_t>(res.senders.size());
  res.metricPatched = at::zeros({nS, B}, at::kFloat);  // [sender, batch]
  const int64_t chunk = std::max<int64_t>(1, p.maxBatchRows / B);
  for (int64_t s0 = 0; s0 < nS; s0 += chunk) {
    if (ctx) ctx->step(s0, nS, "path patching");
    const int64_t V = std::min(chunk, nS - s0);
    const std::vector<HeadRef> senders(res.senders.begin() + s0, res.senders.begin() + s0 + V);
    const at::Tensor ld = patchedLogitDiff(batchContext, senders);  // [V*batch]
    res.metricPatched.narrow(0, s0, V).copy_(ld.view({V, B}).cpu());
  }
  fillSenderScores(res, c.nLayers, c.nHeads);
  return res;
}

}  // namespace mechscope::analysis
