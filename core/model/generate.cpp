#include "core/model/generate.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

int64_t pickToken(const at::Tensor& logits, const GenerateOptions& o, uint64_t& rngState) {
  at::Tensor l = logits.to(at::kCPU, at::kFloat).contiguous();  // [vocab]
  if (o.greedy) return l.argmax().item<int64_t>();
  if (!(o.temperature > 0)) throw InputError(fmt::format("generate: temperature must be > 0, found {}", o.temperature));
  if (!(o.topP > 0 && o.topP <= 1)) throw InputError(fmt::format("generate: top_p must be in (0, 1], found {}", o.topP));
  const float* p = l.data_ptr<float>();
  const int64_t V = l.numel();
  std::vector<int64_t> idx(static_cast<std::size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
  std::size_t keep = idx.size();
  if (o.topK > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(o.topK));
  std::vector<double> prob(keep);
  const double mx = p[idx[0]] / o.temperature;
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(p[idx[i]] / o.temperature - mx);
  if (o.topP < 1) {
    double acc = 0;
    std::size_t n = 0;
    while (n < keep && acc < o.topP * sum) acc += prob[n++];
    keep = std::max<std::size_t>(n, 1);
    prob.resize(keep);
  }
  std::mt19937_64 rng(rngState);
  rngState = rng();
  std::discrete_distribution<std::size_t> dist(prob.begin(), prob.end());
  return idx[dist(rng)];
}

GenerateResult generate(const HookedTransformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                        const HookSet* hooks, const RunContext* ctx) {
  if (prompt.empty()) throw InputError("generate: the prompt is empty");
  if (o.maxNewTokens < 0) throw InputError(fmt::format("generate: max new tokens must be ≥ 0, found {}", o.maxNewTokens));
  const int64_t nCtx = model.config().nCtx;
  auto toTensor = [](const std::vector<int64_t>& v) {
    return at::tensor(at::ArrayRef<int64_t>(v), at::TensorOptions().dtype(at::kLong)).unsqueeze(0);  // [1, pos]
  };
  GenerateResult out;
  out.tokens = prompt;
  out.stopReason = "max_new_tokens";
  uint64_t rng = o.seed ^ 0x9E3779B97F4A7C15ULL;
  ForwardOptions fo;
  fo.path = o.path;
  fo.logitsLastOnly = true;
  KVCache cache;
  // Prefill (step -1), then one forward per generated token.
  ForwardResult r = o.useKvCache ? model.forwardCached(toTensor(prompt), cache, -1, fo, hooks, ctx)
                                 : model.forward(toTensor(prompt), fo, hooks, ctx);
  for (int s = 0; s < o.maxNewTokens; ++s) {
    if (ctx) ctx->step(s, o.maxNewTokens, "generate");
    const int64_t next = pickToken(r.logits[0][-1], o, rng);
    out.tokens.push_back(next);
    out.generated.push_back(next);
    out.attentionPath = r.attentionPath;
    if (std::find(o.stopTokens.begin(), o.stopTokens.end(), next) != o.stopTokens.end()) {
      out.stopReason = "stop_token";
      break;
    }
    if (s + 1 == o.maxNewTokens) break;
    if (static_cast<int64_t>(out.tokens.size()) >= nCtx) {
      out.stopReason = "context";
      break;
    }
    const RopeScaling& rope = model.config().ropeScaling;
    const bool ropeSwitch = rope.kind == RopeScalingKind::LongRope && !cache.longRope &&
                            cache.length + 1 > rope.originalMaxPositionEmbeddings;
    if (o.useKvCache && ropeSwitch) {
      // LongRope switches to its long factors once the sequence passes original_max_position_embeddings:
      // the keys cached with the short ones are stale, so the whole sequence is run again (as HF's Phi-3
      // generation drops its cache there). Hooks see this pass as decode step s, with every row.
      cache = KVCache{};
      r = model.forwardCached(toTensor(out.tokens), cache, s, fo, hooks, ctx);
    } else if (o.useKvCache) {
      r = model.forwardCached(toTensor({next}), cache, s, fo, hooks, ctx);
    } else {
      HookSet stepHooks;
      if (hooks) {
        const int step = s;
        // Without a cache the whole sequence is recomputed; hooks still see the decode step.
        stepHooks.add("*", [hooks, step](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
          if (!hooks->active(hc.name)) return std::nullopt;
          HookContext c2 = hc;
          c2.step = step;
          return hooks->apply(t, c2);
        });
      }
      r = model.forward(toTensor(out.tokens), fo, hooks ? &stepHooks : nullptr, ctx);
    }
  }
  return out;
}

}  // namespace mechscope
