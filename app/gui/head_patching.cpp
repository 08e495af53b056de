#include "app/gui/head_patching.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
#include "analysis/patching/activation_patching.hpp"
#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::gui {

struct PatchingSession::Run {
  std::map<int, at::Tensor> z;        // layer → [1, pos, head, d_head]
  std::map<int, at::Tensor> pattern;  // layer → [1, head, query, key]
};

at::Tensor PatchingSession::answerTensor() const { return at::tensor(std::vector<int64_t>{m_answer}, at::kLong); }
at::Tensor PatchingSession::incorrectTensor() const { return at::tensor(std::vector<int64_t>{m_incorrect}, at::kLong); }

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

/// The `k` most likely next tokens (id, probability) from logits [1, pos, vocab] (last position).
std::vector<std::pair<int64_t, double>> topNextTokens(const at::Tensor& logits, int k) {
  const at::Tensor probs = at::softmax(logits.select(0, 0).select(0, logits.size(1) - 1).to(at::kCPU, at::kFloat), -1);  // [vocab]
  k = static_cast<int>(std::min<int64_t>(std::max(1, k), probs.size(0)));
  const auto top = probs.topk(k);
  std::vector<std::pair<int64_t, double>> out;
  for (int i = 0; i < k; ++i) out.emplace_back(std::get<1>(top)[i].item<int64_t>(), std::get<0>(top)[i].item<double>());
  return out;
}

void checkHead(const HookedTransformer& m, const Head& h) {
  if (h.layer < 0 || h.layer >= m.config().nLayers || h.head < 0 || h.head >= m.config().nHeads)
    throw InputError("patching: head " + toString(h) + " is outside the model (" + std::to_string(m.config().nLayers) + " layers × " +
                     std::to_string(m.config().nHeads) + " heads)");
}

bool isAblation(Intervention i) { return i != Intervention::Patch; }

}  // namespace

analysis::AblationParams PatchingSession::ablationParams(Intervention i) const {
  analysis::AblationParams p;
  switch (i) {
    case Intervention::AblateZero: p.method = analysis::AblationMethod::Zero; break;
    case Intervention::AblateUniform: p.method = analysis::AblationMethod::Uniform; break;
    case Intervention::AblateMean:
      // The CLI's mean ablation with the pair as its reference set: each head's z ← the mean of the clean
      // and the corrupted run's z at each position.
      p.method = analysis::AblationMethod::Mean;
      p.reference = at::cat({tokenTensor(m_clean), tokenTensor(m_corrupt)}, 0);  // [2, pos]
      break;
    case Intervention::Patch: throw Error("patching: not an ablation");
  }
  return p;
}

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
  if (isAblation(req.intervention)) return runAblation(req, ctx);
  // Patching: the run named by the direction, with the other run's cached activations.
  const bool intoCorrupt = req.direction == PatchDirection::CleanIntoCorrupt;
  const std::vector<int64_t>& ids = intoCorrupt ? m_corrupt : m_clean;
  const Run& source = intoCorrupt ? *m_cleanRun : *m_corruptRun;
  std::map<int, std::vector<int>> byLayer;
  for (const auto& h : req.heads) byLayer[h.layer].push_back(h.head);

  HookSet hooks;
  const bool onPattern = req.site == PatchSite::Pattern;
  for (const auto& [layer, heads] : byLayer) {
    const std::string name = onPattern ? hook::pattern(layer) : hook::z(layer);
    hooks.add(name, [&, layer = layer, heads = heads](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      for (int h : heads) {
        if (onPattern) out.select(1, h).copy_(source.pattern.at(layer).select(1, h));  // [1, query, key]
        else out.select(2, h).copy_(source.z.at(layer).select(2, h));                // [1, pos, d_head]
      }
      return out;
    });
  }
  const auto r = m.forward(m.checkTokens(tokenTensor(ids)), lastOnly(), hooks.empty() ? nullptr : &hooks, ctx);
  PatchOutcome o;
  o.logitDiff = lastLogitDiff(r.logits, m_answer, m_incorrect);
  o.baselineLogitDiff = intoCorrupt ? m_corruptDiff : m_cleanDiff;
  o.topProbs = topNextTokens(r.logits, req.topK);
  return o;
}

PatchOutcome PatchingSession::runAblation(const PatchRequest& req, const RunContext* ctx) const {
  // `ablate` on the clean prompt with these heads: analysis::ablationHooks and the analysis's metric, so a
  // clicked head shows the number the sweep (and the CLI) gives it.
  const auto& m = *m_model->model;
  analysis::AblationParams p = ablationParams(req.intervention);
  p.heads = req.heads;
  const at::Tensor tokens = m.checkTokens(tokenTensor(m_clean));
  const HookSet hooks = analysis::ablationHooks(m, tokens, p, ctx);
  at::Tensor logits;  // [1, 1, vocab]
  const at::Tensor d = analysis::ablationLogitDiff(m, tokens, answerTensor(), incorrectTensor(), hooks.empty() ? nullptr : &hooks, ctx, &logits);
  PatchOutcome o;
  o.logitDiff = analysis::ablationMetric(d);
  o.baselineLogitDiff = m_cleanDiff;
  o.topProbs = topNextTokens(logits, req.topK);
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
    in.correct = answerTensor();
    in.incorrect = incorrectTensor();
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
  // Ablations: the CLI's `ablate --sweep` (analysis::ablationHeadSweep) on the clean prompt, answer vs
  // the contrast token; mean ablation's reference set is the pair (see ablationParams).
  const auto& m = *m_model->model;
  const at::Tensor d = analysis::ablationHeadSweep(m, m.checkTokens(tokenTensor(m_clean)), answerTensor(), incorrectTensor(),
                                                   ablationParams(base.intervention), &ctx)
                           .metricAfter.contiguous();  // [L, H] fp64
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const double v = d[l][h].item<double>();
      out[static_cast<std::size_t>(l * H + h)] = normalise && denom != 0.0 ? (v - m_corruptDiff) / denom : v;
    }
  return out;
}

}  // namespace mechscope::gui
