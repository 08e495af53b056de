#include "app/gui/head_patching.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "analysis/patching/activation_patching.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::gui {

struct PatchingSession::Run {
  std::map<int, at::Tensor> z;        // layer → [1, pos, head, d_head]
  std::map<int, at::Tensor> pattern;  // layer → [1, head, query, key]
};

double lastLogitDiff(const at::Tensor& logits, int64_t answer, int64_t incorrect) {
  const at::Tensor last = logits.select(0, 0).select(0, logits.size(1) - 1).to(at::kCPU, at::kDouble);  // [vocab]
  return last[answer].item<double>() - last[incorrect].item<double>();
}

namespace {

ForwardOptions lastOnly() {
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  fo.logitsLastOnly = true;
  return fo;
}

void checkHead(const HookedTransformer& m, const Head& h) {
  if (h.layer < 0 || h.layer >= m.config().nLayers || h.head < 0 || h.head >= m.config().nHeads)
    throw InputError("patching: head " + toString(h) + " is outside the model (" + std::to_string(m.config().nLayers) + " layers × " +
                     std::to_string(m.config().nHeads) + " heads)");
}

}  // namespace

int PatchingSession::layers() const { return m_model->card.layers; }
int PatchingSession::heads() const { return m_model->card.heads; }

std::shared_ptr<PatchingSession> PatchingSession::build(std::shared_ptr<const ModelSession> model, std::vector<int64_t> clean,
                                                        std::vector<int64_t> corrupt, int64_t answer, int64_t incorrect,
                                                        const RunContext& ctx) {
  if (!model || !model->model) throw InputError("patching: no model loaded; open a model first");
  if (clean.size() != corrupt.size())
    throw InputError("patching: the clean prompt has " + std::to_string(clean.size()) + " tokens but the corrupted one has " +
                     std::to_string(corrupt.size()) + "; edit them to the same length");
  const int64_t vocab = model->model->config().dVocab;
  for (int64_t id : {answer, incorrect})
    if (id < 0 || id >= vocab)
      throw InputError("patching: answer token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  auto s = std::shared_ptr<PatchingSession>(new PatchingSession());
  s->m_model = std::move(model);
  s->m_clean = std::move(clean);
  s->m_corrupt = std::move(corrupt);
  s->m_answer = answer;
  s->m_incorrect = incorrect;
  const auto& m = *s->m_model->model;
  auto cacheRun = [&](const std::vector<int64_t>& ids, Run& run, int phase) {
    HookSet hooks;
    const int L = m.config().nLayers;
    hooks.add("blocks.*.attn.hook_pattern", [&run](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
      run.pattern[c.layer] = t.clone();
      return std::nullopt;
    });
    hooks.add("blocks.*.attn.hook_z", [&run, &ctx, L, phase](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
      run.z[c.layer] = t.clone();
      ctx.step(phase * L + c.layer + 1, 2 * L, "clean and corrupted runs");
      return std::nullopt;
    });
    const auto r = m.forward(m.checkTokens(tokenTensor(ids)), lastOnly(), &hooks, &ctx);
    return r.logits;
  };
  s->m_cleanRun = std::make_shared<Run>();
  s->m_corruptRun = std::make_shared<Run>();
  s->m_cleanDiff = lastLogitDiff(cacheRun(s->m_clean, *s->m_cleanRun, 0), answer, incorrect);
  s->m_corruptDiff = lastLogitDiff(cacheRun(s->m_corrupt, *s->m_corruptRun, 1), answer, incorrect);
  return s;
}

PatchOutcome PatchingSession::run(const PatchRequest& req, const RunContext* ctx) const {
  const auto& m = *m_model->model;
  for (const auto& h : req.heads) checkHead(m, h);
  // Ablations apply to the clean run; patching to the run named by the direction.
  const bool intoCorrupt = req.intervention == Intervention::Patch && req.direction == PatchDirection::CleanIntoCorrupt;
  const std::vector<int64_t>& ids = intoCorrupt ? m_corrupt : m_clean;
  const Run& source = intoCorrupt ? *m_cleanRun : *m_corruptRun;
  const Run& own = intoCorrupt ? *m_corruptRun : *m_cleanRun;
  std::map<int, std::vector<int>> byLayer;
  for (const auto& h : req.heads) byLayer[h.layer].push_back(h.head);

  HookSet hooks;
  const bool onPattern = req.intervention == Intervention::AblateUniform ||
                         (req.intervention == Intervention::Patch && req.site == PatchSite::Pattern);
  for (const auto& [layer, heads] : byLayer) {
    const std::string name = onPattern ? hook::pattern(layer) : hook::z(layer);
    hooks.add(name, [&, layer = layer, heads = heads](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      for (int h : heads) {
        if (onPattern) {
          at::Tensor dst = out.select(1, h);  // [1, query, key]
          if (req.intervention == Intervention::AblateUniform) {
            const int64_t n = dst.size(1);
            const at::Tensor causal = at::ones({n, n}, dst.options()).tril();                  // [query, key]
            dst.copy_((causal / causal.sum(-1, true)).unsqueeze(0));
          } else {
            dst.copy_(source.pattern.at(layer).select(1, h));
          }
        } else {
          at::Tensor dst = out.select(2, h);  // [1, pos, d_head]
          switch (req.intervention) {
            case Intervention::Patch: dst.copy_(source.z.at(layer).select(2, h)); break;
            case Intervention::AblateZero: dst.zero_(); break;
            case Intervention::AblateMean: dst.copy_(own.z.at(layer).select(2, h).mean(1, true).expand_as(dst)); break;
            case Intervention::AblateUniform: break;
          }
        }
      }
      return out;
    });
  }
  const auto r = m.forward(m.checkTokens(tokenTensor(ids)), lastOnly(), hooks.empty() ? nullptr : &hooks, ctx);
  PatchOutcome o;
  o.logitDiff = lastLogitDiff(r.logits, m_answer, m_incorrect);
  o.baselineLogitDiff = intoCorrupt ? m_corruptDiff : m_cleanDiff;
  const at::Tensor probs = at::softmax(r.logits.select(0, 0).select(0, r.logits.size(1) - 1).to(at::kCPU, at::kFloat), -1);  // [vocab]
  const int k = static_cast<int>(std::min<int64_t>(std::max(1, req.topK), probs.size(0)));
  const auto top = probs.topk(k);
  for (int i = 0; i < k; ++i) o.topProbs.emplace_back(std::get<1>(top)[i].item<int64_t>(), std::get<0>(top)[i].item<double>());
  return o;
}

std::vector<double> PatchingSession::sweep(const PatchRequest& base, bool normalise, const RunContext& ctx) const {
  const int L = layers(), H = heads();
  std::vector<double> out(static_cast<std::size_t>(L) * static_cast<std::size_t>(H));
  const double denom = m_cleanDiff - m_corruptDiff;
  if (base.intervention == Intervention::Patch) {
    // The CLI's `patch` (analysis::activationPatch, batched): the patched run is the corrupted prompt
    // with the clean run's activation, or (corrupted → clean) the clean prompt with the corrupted one's.
    const bool intoCorrupt = base.direction == PatchDirection::CleanIntoCorrupt;
    analysis::PatchInputs in;
    in.clean = tokenTensor(intoCorrupt ? m_clean : m_corrupt);    // [1, pos] where the activations come from
    in.corrupt = tokenTensor(intoCorrupt ? m_corrupt : m_clean);  // [1, pos] the run that is patched
    in.correct = at::tensor(std::vector<int64_t>{m_answer}, at::kLong);
    in.incorrect = at::tensor(std::vector<int64_t>{m_incorrect}, at::kLong);
    analysis::PatchParams p;
    p.component = base.site == PatchSite::Pattern ? analysis::PatchComponent::Pattern : analysis::PatchComponent::HeadOut;
    ctx.step(0, L * H, "head sweep");
    const at::Tensor d = analysis::activationPatch(*m_model->model, in, p, &ctx).metricPatched.select(-1, 0).to(at::kDouble).contiguous();  // [L, H]
    for (int l = 0; l < L; ++l)
      for (int h = 0; h < H; ++h) {
        const double v = d[l][h].item<double>();
        out[static_cast<std::size_t>(l * H + h)] = normalise && denom != 0.0 ? (v - m_corruptDiff) / denom : v;
      }
    ctx.step(L * H, L * H, "head sweep");
    return out;
  }
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      ctx.step(l * H + h, L * H, "head sweep");
      PatchRequest r = base;
      r.heads = {{l, h}};
      const double d = run(r, &ctx).logitDiff;
      out[static_cast<std::size_t>(l * H + h)] = normalise && denom != 0.0 ? (d - m_corruptDiff) / denom : d;
    }
  }
  ctx.step(L * H, L * H, "head sweep");
  return out;
}

}  // namespace mechscope::gui
