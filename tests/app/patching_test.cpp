// Interactive patching: clicking heads in the grid gives the logit difference the engine gives when the
// same patch is done by hand (the CLI's arithmetic: hook_z of the corrupted run ← the clean run's).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <QApplication>
#include <QMouseEvent>
#include <qcustomplot.h>

#include "analysis/ablation/ablation.hpp"
#include "analysis/ablation/ablation_sweep.hpp"
#include "app/gui/head_patching.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/patching_panel.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

namespace {

void click(QWidget* w, QPointF pos, Qt::KeyboardModifiers mods = Qt::NoModifier) {
  QMouseEvent press(QEvent::MouseButtonPress, pos, w->mapToGlobal(pos), Qt::LeftButton, Qt::LeftButton, mods);
  QApplication::sendEvent(w, &press);
  QMouseEvent release(QEvent::MouseButtonRelease, pos, w->mapToGlobal(pos), Qt::LeftButton, Qt::NoButton, mods);
  QApplication::sendEvent(w, &release);
}

struct Ids {
  std::vector<int64_t> clean, corrupt;
  int64_t answer, incorrect;
};

Ids defaultIds(const ModelSession& s) {
  const auto d = plantedPatchingDefaults();
  return {tokenizePrompt(s, d.clean).ids, tokenizePrompt(s, d.corrupt).ids, *s.tokenizer->tokenToId(d.answer.toStdString()),
          *s.tokenizer->tokenToId(d.incorrect.toStdString())};
}

/// Reference by hand: run `target` with head slices of hook_z (or hook_pattern) replaced by `source`'s.
double handPatched(const HookedTransformer& m, const std::vector<int64_t>& source, const std::vector<int64_t>& target,
                   const std::vector<std::pair<int, int>>& heads, const std::string& site, int64_t answer, int64_t incorrect) {
  std::vector<std::string> globs(1, "blocks.*.attn.");
  globs[0] += site;
  const ActivationCache src = m.runWithCache(tokenTensor(source), globs);
  HookSet hooks;
  for (const auto& [l, h] : heads) {
    const std::string name = "blocks." + std::to_string(l) + ".attn." + site;
    const bool isZ = site == "hook_z";
    hooks.add(name, [&src, name, h = h, isZ](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();
      if (isZ) out.select(2, h).copy_(src.get(name).select(2, h));  // [batch, pos, d_head]
      else out.select(1, h).copy_(src.get(name).select(1, h));      // [batch, query, key]
      return out;
    });
  }
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  const at::Tensor logits = m.forward(tokenTensor(target), fo, &hooks).logits;  // [1, pos, vocab]
  const at::Tensor last = logits[0][logits.size(1) - 1];
  return last[answer].item<double>() - last[incorrect].item<double>();
}

}  // namespace

TEST(Patching, GridClicksGiveTheSameLogitDifferenceAsTheEngineByHand) {
  gui::test::PlantedBench bench(false);
  auto& [ws, jobs, watch, session] = bench;
  PatchingPanel panel(&ws, &jobs);
  panel.resize(1000, 700);
  panel.show();
  const auto d = plantedPatchingDefaults();
  panel.setPrompts(d.clean, d.corrupt, d.answer, d.incorrect);
  const int prep = panel.prepare();
  ASSERT_GE(prep, 0) << panel.errorText().toStdString();
  ASSERT_EQ(watch.wait(prep).status, "finished");
  ASSERT_TRUE(ws.patching());
  // The new pair queues a "no head" run; wait for its outcome so the first click's spy cannot catch it
  // (a fixed 50 ms wait was too short under AddressSanitizer: every click then read the previous outcome).
  QTRY_VERIFY_WITH_TIMEOUT(panel.lastOutcome().has_value(), 20000);

  const Ids ids = defaultIds(*session);
  const auto& m = *session->model;
  const double clean = handPatched(m, ids.clean, ids.clean, {}, "hook_z", ids.answer, ids.incorrect);
  const double corrupt = handPatched(m, ids.corrupt, ids.corrupt, {}, "hook_z", ids.answer, ids.incorrect);
  EXPECT_NEAR(ws.patching()->cleanLogitDiff(), clean, 1e-4);
  EXPECT_NEAR(ws.patching()->corruptLogitDiff(), corrupt, 1e-4);
  EXPECT_GT(clean, corrupt + 1.0) << "the planted IOI circuit prefers the indirect object on the clean prompt";

  auto* grid = panel.grid();
  auto clickAndWait = [&](int l, int h, Qt::KeyboardModifiers mods) {
    QSignalSpy spy(&panel, &PatchingPanel::outcomeChanged);
    click(grid->plot(), grid->headCenter(l, h), mods);
    EXPECT_TRUE(spy.wait(20000)) << "no outcome after clicking " << l << "." << h;
    return panel.lastOutcome()->logitDiff;
  };
  // Click: one head, z, clean → corrupted.
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{3, 0}, {2, 1}, {0, 0}}) {
    const double gui = clickAndWait(l, h, Qt::NoModifier);
    const double ref = handPatched(m, ids.clean, ids.corrupt, {{l, h}}, "hook_z", ids.answer, ids.incorrect);
    EXPECT_NEAR(gui, ref, 1e-4) << "head " << l << "." << h;
    EXPECT_TRUE(panel.logitDiffText().contains(QString::number(gui, 'f', 4))) << panel.logitDiffText().toStdString();
  }
  // Shift-click builds a set: {0.0, 3.1}.
  const double set = clickAndWait(3, 1, Qt::ShiftModifier);
  EXPECT_EQ(grid->selectedHeads().size(), 2u);
  EXPECT_NEAR(set, handPatched(m, ids.clean, ids.corrupt, {{0, 0}, {3, 1}}, "hook_z", ids.answer, ids.incorrect), 1e-4);
  ASSERT_TRUE(panel.lastOutcome().has_value());
  const auto& top = panel.lastOutcome()->topProbs;
  ASSERT_GE(top.size(), 5u);
  double sum = 0;
  for (std::size_t i = 0; i < top.size(); ++i) {
    sum += top[i].second;
    if (i) {
      EXPECT_LE(top[i].second, top[i - 1].second);
    }
  }
  EXPECT_LE(sum, 1.0 + 1e-6);

  // Pattern site, and the reverse direction.
  panel.setSite(PatchSite::Pattern);
  const double pat = clickAndWait(2, 0, Qt::NoModifier);
  EXPECT_NEAR(pat, handPatched(m, ids.clean, ids.corrupt, {{2, 0}}, "hook_pattern", ids.answer, ids.incorrect), 1e-4);
  panel.setSite(PatchSite::Z);
  panel.setDirection(PatchDirection::CorruptIntoClean);
  const double rev = clickAndWait(3, 0, Qt::NoModifier);
  EXPECT_NEAR(rev, handPatched(m, ids.corrupt, ids.clean, {{3, 0}}, "hook_z", ids.answer, ids.incorrect), 1e-4);

  // Ablation from the same grid: zero-ablating head 3.0's z in the clean run.
  panel.setDirection(PatchDirection::CleanIntoCorrupt);
  panel.setIntervention(Intervention::AblateZero);
  const double zero = clickAndWait(3, 0, Qt::NoModifier);
  {
    HookSet hooks;
    hooks.add("blocks.3.attn.hook_z", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor o = t.clone();
      o.select(2, 0).zero_();
      return o;
    });
    ForwardOptions fo;
    fo.path = AttentionPath::Explicit;
    const at::Tensor lg = m.forward(tokenTensor(ids.clean), fo, &hooks).logits;
    const at::Tensor last = lg[0][lg.size(1) - 1];
    EXPECT_NEAR(zero, last[ids.answer].item<double>() - last[ids.incorrect].item<double>(), 1e-4);
  }
  // Uniform attention over the causal keys.
  panel.setIntervention(Intervention::AblateUniform);
  const double uni = clickAndWait(1, 0, Qt::NoModifier);
  {
    HookSet hooks;
    hooks.add("blocks.1.attn.hook_pattern", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor o = t.clone();
      const int64_t n = t.size(2);
      for (int64_t q = 0; q < n; ++q) {
        o[0][0][q].zero_();
        o[0][0][q].narrow(0, 0, q + 1).fill_(1.0 / static_cast<double>(q + 1));
      }
      return o;
    });
    ForwardOptions fo;
    fo.path = AttentionPath::Explicit;
    const at::Tensor lg = m.forward(tokenTensor(ids.clean), fo, &hooks).logits;
    const at::Tensor last = lg[0][lg.size(1) - 1];
    EXPECT_NEAR(uni, last[ids.answer].item<double>() - last[ids.incorrect].item<double>(), 1e-4);
  }
}

TEST(Patching, SweepFillsTheGridAndCancelStopsIt) {
  gui::test::PlantedBench bench(false);
  auto& [ws, jobs, watch, session] = bench;
  PatchingPanel panel(&ws, &jobs);
  const auto d = plantedPatchingDefaults();
  panel.setPrompts(d.clean, d.corrupt, d.answer, d.incorrect);
  ASSERT_EQ(watch.wait(panel.prepare()).status, "finished");

  // Cancelled at the first progress report: the grid keeps its zeros.
  int sweepId = -1;
  auto c = QObject::connect(&jobs, &JobRunner::progress, [&](int id, qint64, qint64, const QString& stage) {
    if (id == sweepId && stage == "head sweep") jobs.cancel(id);
  });
  sweepId = panel.sweep();
  EXPECT_EQ(watch.wait(sweepId).status, "cancelled");
  QObject::disconnect(c);
  EXPECT_DOUBLE_EQ(panel.grid()->score(3, 0), 0.0);

  const int full = panel.sweep();
  ASSERT_EQ(watch.wait(full).status, "finished");
  const auto p = ws.patching();
  const Ids ids = defaultIds(*session);
  const double denom = p->cleanLogitDiff() - p->corruptLogitDiff();
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{3, 0}, {0, 0}, {10, 2}}) {
    const double ref = (handPatched(*session->model, ids.clean, ids.corrupt, {{l, h}}, "hook_z", ids.answer, ids.incorrect) -
                        p->corruptLogitDiff()) / denom;
    EXPECT_NEAR(panel.grid()->score(l, h), ref, 1e-4) << l << "." << h;
  }
  EXPECT_TRUE(panel.grid()->data().signedScores);
}

namespace mechscope::gui::test {

/// Mean ablation of one head with the pair as reference set, by hand: the clean run with the head's
/// hook_z ← (z_clean + z_corrupt) / 2 at each position; the last position's logit difference.
double meanAblatedOverPairByHand(const HookedTransformer& m, const std::vector<int64_t>& clean, const std::vector<int64_t>& corrupt, int layer,
                                 int head, int64_t answer, int64_t incorrect) {
  const std::string name = "blocks." + std::to_string(layer) + ".attn.hook_z";
  const at::Tensor zc = m.runWithCache(tokenTensor(clean), {name}).get(name), zx = m.runWithCache(tokenTensor(corrupt), {name}).get(name);
  const at::Tensor mean = (zc.select(2, head) + zx.select(2, head)) / 2;  // [1, pos, d_head]
  HookSet hooks;
  hooks.add(name, [mean, head](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    at::Tensor o = t.clone();
    o.select(2, head).copy_(mean);
    return o;
  });
  const at::Tensor logits = m.forward(tokenTensor(clean), {}, &hooks).logits;  // [1, pos, vocab]
  const at::Tensor last = logits[0][logits.size(1) - 1].to(at::kDouble);
  return last[answer].item<double>() - last[incorrect].item<double>();
}

}  // namespace mechscope::gui::test

// Issue #21: the panel's ablation sweep is the analysis library's head sweep (the CLI's `ablate --sweep`)
// on the clean prompt: zero → zero, uniform → uniform, mean → mean with the pair [clean; corrupted] as the
// reference set. A clicked head is `ablate` of that head.
TEST(Patching, AblationSweepIsTheAnalysisHeadSweep) {
  auto session = gui::test::plantedSession();
  const Ids ids = defaultIds(*session);
  const auto p = PatchingSession::build(session, ids.clean, ids.corrupt, ids.answer, ids.incorrect, RunContext{});
  const auto& m = *session->model;
  const int L = p->layers(), H = p->heads();
  const at::Tensor tokens = tokenTensor(ids.clean);
  const at::Tensor c = at::tensor(std::vector<int64_t>{ids.answer}, at::kLong), i = at::tensor(std::vector<int64_t>{ids.incorrect}, at::kLong);
  const double denom = p->cleanLogitDiff() - p->corruptLogitDiff();
  std::vector<double> meanRaw;
  for (const auto& [mode, method] : std::vector<std::pair<Intervention, analysis::AblationMethod>>{
           {Intervention::AblateZero, analysis::AblationMethod::Zero},
           {Intervention::AblateMean, analysis::AblationMethod::Mean},
           {Intervention::AblateUniform, analysis::AblationMethod::Uniform}}) {
    analysis::AblationParams ap;
    ap.method = method;
    if (method == analysis::AblationMethod::Mean) ap.reference = at::cat({tokenTensor(ids.clean), tokenTensor(ids.corrupt)}, 0);
    const analysis::AblationSweepResult ref = analysis::ablationHeadSweep(m, tokens, c, i, ap);
    PatchRequest base;
    base.intervention = mode;
    const std::vector<double> raw = p->sweep(base, false, RunContext{});
    // Normalised as before: (d − d_corrupt) / (d_clean − d_corrupt) (one method is enough).
    const std::vector<double> norm = mode == Intervention::AblateZero ? p->sweep(base, true, RunContext{}) : std::vector<double>{};
    if (mode == Intervention::AblateMean) meanRaw = raw;
    ASSERT_EQ(raw.size(), static_cast<std::size_t>(L * H));
    for (int l = 0; l < L; ++l)
      for (int h = 0; h < H; ++h) {
        const double want = ref.metricAfter[l][h].item<double>();
        const auto k = static_cast<std::size_t>(l * H + h);
        EXPECT_NEAR(raw[k], want, 1e-6) << analysis::toString(method) << " " << l << "." << h;
        if (!norm.empty()) {
          EXPECT_NEAR(norm[k], (want - p->corruptLogitDiff()) / denom, 1e-6) << l << "." << h;
        }
      }
    // A click (one head, then a set) is `ablate` of those heads.
    for (const std::vector<Head>& heads : std::vector<std::vector<Head>>{{{3, 0}}, {{2, 1}, {3, 1}}}) {
      PatchRequest r = base;
      r.heads = heads;
      analysis::AblationParams one = ap;
      one.heads = heads;
      const analysis::AblationResult a = analysis::ablate(m, tokens, c, i, one);
      const PatchOutcome o = p->run(r);
      EXPECT_NEAR(o.logitDiff, a.metricAfter, 1e-6) << analysis::toString(method);
      EXPECT_DOUBLE_EQ(o.baselineLogitDiff, p->cleanLogitDiff());
      if (heads.size() == 1) {
        EXPECT_NEAR(o.logitDiff, raw[static_cast<std::size_t>(3 * H)], 1e-6);
      }
    }
  }
  // Mean over the pair, by hand, for a few heads (the S-inhibition and mover heads of the planted circuit).
  ASSERT_EQ(meanRaw.size(), static_cast<std::size_t>(L * H));
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{2, 1}, {3, 0}, {1, 1}})
    EXPECT_NEAR(meanRaw[static_cast<std::size_t>(l * H + h)],
                gui::test::meanAblatedOverPairByHand(m, ids.clean, ids.corrupt, l, h, ids.answer, ids.incorrect), 1e-4)
        << l << "." << h;
  // Cancelled between heads.
  PatchRequest mean;
  mean.intervention = Intervention::AblateMean;
  RunContext cancel;
  cancel.progress = [&](const Progress& pr) {
    if (pr.done == 3) cancel.cancel->cancel();
  };
  EXPECT_THROW(p->sweep(mean, true, cancel), Cancelled);
}

TEST(Patching, UnequalLengthsAndUnknownAnswersAreMessagesNotCrashes) {
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  ws.setSession(gui::test::plantedSession());
  PatchingPanel panel(&ws, &jobs);
  panel.setPrompts("When Mary and John", "When Mary", "Mary", "John");
  const int id = panel.prepare();
  ASSERT_GE(id, 0);
  EXPECT_EQ(watch.wait(id).status, "failed");
  QTRY_VERIFY_WITH_TIMEOUT(panel.errorText().contains("same length"), 20000);
  EXPECT_TRUE(panel.errorText().contains("same length")) << panel.errorText().toStdString();
  panel.setPrompts("When Mary", "When John", "Zebra", "John");
  EXPECT_EQ(panel.prepare(), -1);
  EXPECT_TRUE(panel.errorText().contains("'Zebra' is not a vocabulary token")) << panel.errorText().toStdString();
}
