#include "analysis/sinks/sinks.hpp"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "analysis/common/final_norm.hpp"
#include "core/common/device_memory.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

std::string sinkLabel(int lifetime, int nLayers) {
  if (lifetime >= nLayers - 15) return "bos_sink";
  if (lifetime > 4 && lifetime < nLayers - 15) return "secondary";
  return "noise";
}

/// §2.1 step 2: l_start = argmax Δ + 1, l_end = argmin_{l ≥ l_start} Δ + l_start + 1 (first index on
/// ties, as torch.argmax/argmin); the whole stack when there is no Δ after l_start.
std::pair<int, int> clipperWindow(const std::vector<double>& bosNorm) {
  const int L = static_cast<int>(bosNorm.size());
  if (L < 2) return {0, L};
  std::vector<double> delta;
  for (int l = 0; l + 1 < L; ++l) delta.push_back(bosNorm[static_cast<size_t>(l + 1)] - bosNorm[static_cast<size_t>(l)]);
  const int start = static_cast<int>(std::max_element(delta.begin(), delta.end()) - delta.begin()) + 1;
  int end = L;
  if (start < static_cast<int>(delta.size()))
    end = static_cast<int>(std::min_element(delta.begin() + start, delta.end()) - (delta.begin() + start)) + start + 1;
  return {start, std::min(end, L)};
}

/// cos(x[p], ref[k]) for every reference row k → [ref, pos] fp64 on x's device (x [pos, d] fp32 with its row norms
/// xNorm [pos], ref [ref, d]), each norm clamped to 1e-8 as at::cosine_similarity does: one product for every
/// reference row instead of a pass (and a norm of x) per row.
at::Tensor cosinesTo(const at::Tensor& x, const at::Tensor& xNorm, const at::Tensor& ref) {
  const at::Tensor refNorm = ref.norm(2, {1}).clamp_min(1e-8);  // [ref]
  return (at::matmul(ref, x.t()) / (refNorm.unsqueeze(1) * xNorm.clamp_min(1e-8).unsqueeze(0))).to(at::kDouble);  // [ref, pos]
}

/// Each tensor moved to the host (per-layer results kept on the device while a pass runs: one wait at the end, not one
/// per layer).
void moveToHost(std::vector<at::Tensor>& v) {
  for (auto& t : v)
    if (t.defined()) t = t.cpu();
}

/// Probe-only forward: per layer the column sums [head, |keys|] of `keys` → mean over later queries. With
/// `learnedMass`, also per layer the learned sink's mean share 1 − Σ_j p_ij over the queries → [head]. With
/// `keepLse`, each layer's row normalisers [head, pos] (for a later pass: so.rowLse), on the model's device where
/// `lseOnDevice`, else on the host.
std::vector<at::Tensor> columnScores(const HookedTransformer& model, const std::vector<int64_t>& ids, const std::vector<int64_t>& keys,
                                     const AttentionStatsOptions& so, const HookSet* extra, const RunContext* ctx,
                                     const std::function<void(int)>& onLayer = {}, std::vector<at::Tensor>* learnedMass = nullptr,
                                     std::vector<at::Tensor>* keepLse = nullptr, bool lseOnDevice = false) {
  const int L = model.config().nLayers;
  const int64_t n = static_cast<int64_t>(ids.size());
  ProbeRequest req;
  req.columnKeys = keys;  // O(n·|keys|) after the row normalisers, not a pass over n²/2
  if (learnedMass) {      // every key: each row's mass over the keys, the rest is the learned sink's
    req.keySet.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) req.keySet[static_cast<size_t>(j)] = j;
    learnedMass->assign(static_cast<size_t>(L), at::Tensor());
  }
  std::vector<double> later;  // per key: later queries n − 1 − p (at least 1)
  for (int64_t p : keys) later.push_back(static_cast<double>(std::max<int64_t>(n - 1 - p, 1)));
  const at::Tensor count = at::tensor(later, at::kDouble);  // [key]
  std::vector<at::Tensor> out(static_cast<size_t>(L));
  if (keepLse) keepLse->assign(static_cast<size_t>(L), at::Tensor());
  runAttentionStats(
      model, ids, req,
      [&](int l, const ProbeResult& s) {
        out[static_cast<size_t>(l)] = s.columnKeySums.to(at::kDouble);  // [head, key], on the device until the pass ends
        if (keepLse && s.rowLse.defined()) (*keepLse)[static_cast<size_t>(l)] = lseOnDevice ? s.rowLse : s.rowLse.cpu();  // [head, pos] fp64
        if (learnedMass) (*learnedMass)[static_cast<size_t>(l)] = 1.0 - s.keySetMass.to(at::kDouble).mean(1);  // [head]
        if (onLayer) onLayer(l);
      },
      so, extra, ctx);
  moveToHost(out);
  for (auto& t : out) t = t / count;
  if (learnedMass) moveToHost(*learnedMass);
  return out;
}

/// Whether `bytes` more may stay on the model's CUDA device for the candidates' pass: up to a quarter of what it can
/// still allocate (false on the CPU).
bool fitsOnDevice(const HookedTransformer& model, int64_t bytes) {
  if (!model.device().is_cuda()) return false;
  const int64_t available = cudaAvailableBytes(model.device().has_index() ? model.device().index() : 0);
  return available > 0 && bytes <= available / 4;
}

/// Whether the residual stream of every layer ([pos, d_model] in the compute dtype) may stay for the candidates' pass:
/// on the host up to kKeptResidualBytes, on CUDA up to a quarter of what the device can still allocate.
bool residualsFit(const HookedTransformer& model, int64_t n) {
  const int64_t bytes = int64_t{model.config().nLayers} * n * model.config().dModel * static_cast<int64_t>(c10::elementSize(model.dtype()));
  return model.device().is_cuda() ? fitsOnDevice(model, bytes) : bytes <= kKeptResidualBytes;
}

}  // namespace

std::string toString(SinkHiddenStates s) { return s == SinkHiddenStates::HfOutput ? "hf" : "resid_post"; }

SinkHiddenStates parseSinkHiddenStates(const std::string& s) {
  if (s == "hf") return SinkHiddenStates::HfOutput;
  if (s == "resid_post") return SinkHiddenStates::ResidPost;
  throw InputError(fmt::format("sinks: --hidden-states must be 'hf' or 'resid_post', found '{}'", s));
}

SinksResult runSinks(const HookedTransformer& model, const std::vector<std::vector<int64_t>>& rows, const SinksOptions& options,
                     const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int L = c.nLayers;
  const int64_t H = c.nHeads;
  if (rows.empty()) throw InputError("sinks: no input sequence");
  if (options.bosPosition < 0 && options.bosCandidates.empty()) throw InputError("sinks: no primary-sink candidate positions");
  for (int64_t p : options.bosCandidates)
    if (p < 0) throw InputError(fmt::format("sinks: primary-sink candidate {} is negative", p));
  SinksResult out;
  out.nLayers = L;
  out.sinkScore = at::zeros({L, H}, at::kDouble);  // [layer, head]
  out.sinkRate = at::zeros({L}, at::kDouble);      // [layer]
  if (c.attnSinks) out.learnedSinkMass = at::zeros({L, H}, at::kDouble);  // [layer, head]
  AttentionStatsOptions so;
  so.materialize = options.materialize;
  const bool hf = options.hiddenStates == SinkHiddenStates::HfOutput;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& ids = rows[r];
    const int64_t n = static_cast<int64_t>(ids.size());
    PrimarySink prim;
    if (options.bosPosition >= 0) {
      if (options.bosPosition + 1 >= n)
        throw InputError(fmt::format("sinks: --bos-position {} needs a sequence longer than {} tokens; row {} has {}", options.bosPosition,
                                     options.bosPosition + 1, r, n));
      prim.candidates = {options.bosPosition};
    } else {
      std::set<int64_t> cand;
      for (int64_t p : options.bosCandidates)
        if (p + 1 < n) cand.insert(p);  // a candidate needs a later query to have a sink score
      if (cand.empty()) throw InputError(fmt::format("sinks: row {} has {} tokens; no primary-sink candidate has a later query", r, n));
      prim.candidates.assign(cand.begin(), cand.end());
      prim.detected = true;
    }
    const auto K = static_cast<int64_t>(prim.candidates.size());
    const at::Tensor candIdx = at::tensor(at::ArrayRef<int64_t>(prim.candidates), at::kLong).to(model.device());  // [cand]
    // Per layer, against every candidate (b is known only after the last layer): cosines [cand, pos],
    // the candidates' norms [cand], MLP-output cosines [cand, pos] and norms [pos]. All fp64, on the device while the
    // pass runs, then on the host.
    std::vector<at::Tensor> hidCos(L), hidNorm(L), mlpCos(L), mlpNorm(L);
    HookSet extra;
    extra.add("blocks.*.hook_resid_post", [&](const at::Tensor& h, const HookContext& hc) -> std::optional<at::Tensor> {
      RECORD_USER_SCOPE("sinks::resid_cosines");
      at::Tensor x = (hf && hc.layer == L - 1 ? applyFinalNorm(model, h[0]) : h[0]).to(at::kFloat);  // [pos, d_model]
      const at::Tensor ref = x.index_select(0, candIdx.to(x.device()));                               // [cand, d_model]
      hidNorm[static_cast<size_t>(hc.layer)] = ref.norm(2, {1}).to(at::kDouble);
      hidCos[static_cast<size_t>(hc.layer)] = cosinesTo(x, x.norm(2, {1}), ref);
      return std::nullopt;
    });
    extra.add("blocks.*.hook_mlp_out", [&](const at::Tensor& m, const HookContext& hc) -> std::optional<at::Tensor> {
      RECORD_USER_SCOPE("sinks::mlp_cosines");
      at::Tensor x = m[0].to(at::kFloat);  // [pos, d_model]
      const at::Tensor norm = x.norm(2, {1});  // [pos]
      mlpCos[static_cast<size_t>(hc.layer)] = cosinesTo(x, norm, x.index_select(0, candIdx.to(x.device())));
      mlpNorm[static_cast<size_t>(hc.layer)] = norm.to(at::kDouble);
      return std::nullopt;
    });
    std::vector<at::Tensor> learned;  // per layer [head] (learned sinks only)
    std::vector<at::Tensor> rowLse;   // per layer [head, pos] fp64 (on the GPU where it fits), for the candidates' pass
    const int64_t lseBytes = int64_t{L} * H * n * 8;
    const bool keepLse = options.reuseNormalisers && !options.materialize && lseBytes <= kKeptNormaliserBytes;
    std::vector<at::Tensor> residPre;  // per layer [1, pos, d_model] on the model's device, for the candidates' pass
    const bool keepResid = options.reuseResiduals && !options.materialize && residualsFit(model, n);
    const bool lseOnDevice = keepLse && fitsOnDevice(model, lseBytes);  // else a host copy (and wait) per layer
    AttentionStatsOptions first = so;
    if (keepResid) first.keepResidPre = &residPre;
    const auto candScore = columnScores(
        model, ids, prim.candidates, first, &extra, ctx, [&](int l) {
          if (ctx) ctx->step(l + 1, L, fmt::format("sinks row {}", r));
        },
        c.attnSinks ? &learned : nullptr, keepLse ? &rowLse : nullptr, lseOnDevice);
    for (auto* v : {&hidCos, &hidNorm, &mlpCos, &mlpNorm}) moveToHost(*v);
    for (size_t l = 0; l < learned.size(); ++l) out.learnedSinkMass[static_cast<int64_t>(l)] += learned[l];

    // §2.1 step 1: b = the candidate with the largest mean norm over the layers (first on ties). Host tensors are read
    // through accessors: an indexing op per element costs microseconds, thousands of them with many keys.
    const at::Tensor norms = at::stack(hidNorm);  // [layer, cand] fp64
    const auto normOf = norms.accessor<double, 2>();
    int64_t bi = 0;
    for (int64_t k = 0; k < K; ++k) {
      double sum = 0;
      for (int l = 0; l < L; ++l) sum += normOf[l][k];
      prim.candidateNorms.push_back(sum / L);
      if (prim.candidateNorms.back() > prim.candidateNorms[static_cast<size_t>(bi)]) bi = k;
    }
    const int64_t b = prim.candidates[static_cast<size_t>(bi)];
    prim.position = b;
    const at::Tensor score = at::stack(candScore).select(2, bi).contiguous();  // [layer, head] of [layer, head, cand]
    out.sinkScore += score;
    out.sinkRate += (score > options.sinkThreshold).to(at::kDouble).mean(1);

    std::vector<double> bosNorm;
    for (int l = 0; l < L; ++l) bosNorm.push_back(normOf[l][bi]);
    const auto [start, end] = clipperWindow(bosNorm);
    prim.windowStart = start;
    prim.windowEnd = end;
    out.window.emplace_back(start, end);
    out.primary.push_back(prim);

    // §2.1 steps 3–5: positions p > b with |cos(h_l[p], h_l[b])| > threshold inside the window.
    std::map<int64_t, std::vector<int>> recorded;
    for (int l = start; l < end; ++l) {
      const at::Tensor cs = hidCos[static_cast<size_t>(l)][bi].contiguous();  // [pos]
      const double* p = cs.data_ptr<double>();
      for (int64_t pos = b + 1; pos < n; ++pos)
        if (std::abs(p[pos]) > options.cosineThreshold) recorded[pos].push_back(l);
    }
    if (recorded.empty()) continue;
    // Each candidate's own sink score: a second, probe-only pass over the candidates' columns, with the first
    // pass's row normalisers (same ids, same q/k: a flash call or a tiled pass per layer saved).
    std::vector<int64_t> keys;
    for (const auto& kv : recorded) keys.push_back(kv.first);
    AttentionStatsOptions again = so;
    if (keepLse) again.rowLse = &rowLse;
    if (keepResid) again.residPre = &residPre;
    const at::Tensor keyScore = at::stack(columnScores(model, ids, keys, again, nullptr, ctx));  // [layer, head, key] fp64
    const at::Tensor keyMax = keyScore.amax(1);  // [layer, key]: each layer's largest head score
    const auto keyMaxOf = keyMax.accessor<double, 2>();
    for (size_t k = 0; k < keys.size(); ++k) {
      const int64_t pos = keys[k];
      const auto& layers = recorded[pos];
      SecondarySink s;
      s.batch = static_cast<int64_t>(r);
      s.position = pos;
      s.tokenId = ids[static_cast<size_t>(pos)];
      s.creationLayer = layers.front();
      s.lifetime = static_cast<int>(layers.size());
      s.label = sinkLabel(s.lifetime, L);
      s.mlpCosine = mlpCos[static_cast<size_t>(s.creationLayer)].accessor<double, 2>()[bi][pos];
      s.mlpNorm = mlpNorm[static_cast<size_t>(s.creationLayer)].accessor<double, 1>()[pos];
      s.layers = layers;
      s.score = keyScore.select(2, static_cast<int64_t>(k)).contiguous();  // [layer, head]
      for (int l = 0; l < L; ++l)
        if (pos + 1 < n && keyMaxOf[l][static_cast<int64_t>(k)] > options.sinkThreshold) s.scoreLayers.push_back(l);
      s.scoreLifetime = static_cast<int>(s.scoreLayers.size());
      out.sinks.push_back(std::move(s));
    }
  }
  out.sinkScore /= static_cast<double>(rows.size());
  out.sinkRate /= static_cast<double>(rows.size());
  if (out.learnedSinkMass.defined()) out.learnedSinkMass /= static_cast<double>(rows.size());
  return out;
}

}  // namespace mechscope::analysis
