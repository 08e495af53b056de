// The panels of constraint attention, retrieval heads, ablation, circuit discovery and overlap, run
// through the job runner on the planted model: progress, cancellation, numbers equal to the analysis
// called directly, the planted answers (docs/planted-models.md), and reopening a CLI-written HDF5 result.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <QJsonArray>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>
#include <set>
#include <QTemporaryDir>

#include "analysis/ablation/ablation.hpp"
#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/circuits/overlap.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/constraint/constraint_attention.hpp"
#include "../analysis/retrieval_test_support.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "app/gui/analysis_adapters.hpp"
#include "app/gui/analysis_panel.hpp"
#include "app/gui/cli_result_view.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "core/common/errors.hpp"
#include "core/synth/planted_tasks.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

namespace {

QString join(const std::vector<std::string>& words) {
  QStringList s;
  for (const auto& w : words) s << QString::fromStdString(w);
  return s.join(' ');
}

/// Workspace with the planted model and the patching pair of `clean`/`corrupt` built.
void buildPair(Workspace& ws, JobRunner& jobs, gui::test::JobWatch& watch, const QString& clean, const QString& corrupt, const QString& answer,
               const QString& incorrect) {
  auto session = gui::test::plantedSession();
  ws.setSession(session);
  const int prep = submitBuildPatching(ws, jobs, tokenizePrompt(*session, clean).ids, tokenizePrompt(*session, corrupt).ids,
                                       *session->tokenizer->tokenToId(answer.toStdString()),
                                       *session->tokenizer->tokenToId(incorrect.toStdString()));
  ASSERT_EQ(watch.wait(prep).status, "finished");
}

/// Runs `panel`, cancelling at its first progress report; expects "cancelled" and no result.
void expectCancels(AnalysisPanel& panel, JobRunner& jobs, gui::test::JobWatch& watch, Workspace& ws) {
  const std::size_t before = ws.results().size();
  const int id = panel.run();
  ASSERT_GE(id, 0);
  bool saw = false;
  auto c = QObject::connect(&jobs, &JobRunner::progress, [&](int j, qint64, qint64, const QString&) {
    if (j == id && !saw) saw = true, panel.cancel();
  });
  EXPECT_EQ(watch.wait(id).status, "cancelled");
  QObject::disconnect(c);
  EXPECT_TRUE(saw);
  EXPECT_EQ(panel.statusText(), "Cancelled.");
  EXPECT_EQ(ws.results().size(), before);
}
}  // namespace

TEST(CausalPanels, EveryAnalysisOfTheRegistryIsWired) {
  for (const char* n : {"sinks", "waad-fai", "constraint-attention", "retrieval", "ablate", "patch", "circuit", "overlap"})
    EXPECT_TRUE(gui::test::adapterNamed(n).available) << n;
}

TEST(CausalPanels, ConstraintAttentionMatchesTheAnalysisAndCancels) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(gui::test::adapterNamed("constraint-attention"), &ws, &jobs);
  const auto none = watch.wait(panel.run());
  EXPECT_EQ(none.status, "failed");
  EXPECT_TRUE(panel.statusText().contains("give the constraint")) << panel.statusText().toStdString();

  panel.setParam("constraint_text", "Mary");
  panel.setParam("response", "Mary");
  expectCancels(panel, jobs, watch, ws);

  std::vector<qint64> progress;
  auto c = QObject::connect(&jobs, &JobRunner::progress, [&](int, qint64 d, qint64, const QString&) { progress.push_back(d); });
  const auto end = watch.wait(panel.run());
  QObject::disconnect(c);
  ASSERT_EQ(end.status, "finished") << end.message.toStdString();
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 24);  // one step per layer
  ASSERT_EQ(ws.results().size(), 1u);
  ASSERT_EQ(panel.lineViews().size(), 2u);  // α(t) and β(l)
  const auto& r = ws.results()[0];
  EXPECT_EQ(r.params["constraint_positions"].toArray(), QJsonArray{2});  // "Mary" is token 2 (BOS first)

  // The same call as the CLI: prompt + teacher-forced response, answer row = last prompt row.
  std::vector<int64_t> ids = ws.tokens().ids;
  ids.push_back(*session->tokenizer->tokenToId("Mary"));
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto ref = analysis::runConstraintAttention(*session->model, ids, {2}, {n - 2});
  const auto& alpha = panel.lineViews()[0]->data();
  EXPECT_EQ(alpha.xLabels.size(), n);
  EXPECT_EQ(alpha.xLabels.back(), "Mary");
  ASSERT_EQ(alpha.series[0].y.size(), static_cast<std::size_t>(n));
  for (int64_t t = 0; t < n; ++t) EXPECT_NEAR(alpha.series[0].y[static_cast<std::size_t>(t)], ref.alphaMean[t].item<double>(), 1e-12) << t;
  EXPECT_EQ(alpha.series[0].marked, std::vector<int>{2});
  const auto& beta = panel.lineViews()[1]->data();
  ASSERT_EQ(beta.series[0].y.size(), 24u);
  for (int l = 0; l < 24; ++l) EXPECT_NEAR(beta.series[0].y[static_cast<std::size_t>(l)], ref.beta[l].item<double>(), 1e-12) << l;
  // Planted: the movers 3.x attend the names at the last row, so layer 3 puts clear mass on "Mary".
  EXPECT_GT(ref.beta[3].item<double>(), 0.1);
}

TEST(CausalPanels, RetrievalFindsThePlantedRetrievalHeads) {
  gui::test::PlantedBench bench(false);
  auto& [ws, jobs, watch, session] = bench;
  const auto needle = planted::needlePrompt(60, 0.5, 3);
  const QString text = join(needle.words);
  ws.setPrompt(text, tokenizePrompt(*session, text));
  ASSERT_EQ(ws.tokens().ids, planted::toIds(needle.words));
  AnalysisPanel panel(gui::test::adapterNamed("retrieval"), &ws, &jobs);
  panel.setParam("needle_span", QString("%1:%2").arg(needle.needleStart).arg(needle.needleEnd));
  panel.setParam("max_new_tokens", static_cast<int>(needle.answer.size()));
  expectCancels(panel, jobs, watch, ws);
  const auto end = watch.wait(panel.run());
  ASSERT_EQ(end.status, "finished") << end.message.toStdString();
  ASSERT_EQ(panel.gridViews().size(), 2u);

  analysis::RetrievalTest t;
  t.needleIndex = -1;
  t.ids = ws.tokens().ids;
  t.length = static_cast<int64_t>(t.ids.size());
  t.needleStart = needle.needleStart;
  t.needleEnd = needle.needleEnd;
  analysis::RetrievalDecode d;
  d.maxNewTokens = static_cast<int>(needle.answer.size());
  const auto ref = analysis::runRetrievalTest(*session->model, t, d);
  for (int l = 0; l < 4; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_NEAR(panel.gridViews()[0]->score(l, h), ref.score[l][h].item<double>(), 1e-12) << l << "." << h;
  EXPECT_GT(panel.gridViews()[0]->score(1, 0), 0.5);
  EXPECT_GT(panel.gridViews()[0]->score(2, 0), 0.5);
  EXPECT_TRUE(ws.results()[0].params["top_heads"].toArray()[0].toString().startsWith("1.0") ||
              ws.results()[0].params["top_heads"].toArray()[0].toString().startsWith("2.0"));
  EXPECT_EQ(ws.results()[0].params["generated"].toString().trimmed(), join(needle.answer));

  panel.setParam("needle_span", "5:999");
  const auto bad = watch.wait(panel.run());
  EXPECT_EQ(bad.status, "failed");
  EXPECT_TRUE(panel.statusText().contains("not inside")) << panel.statusText().toStdString();
}

TEST(CausalPanels, AblationGridEqualsAblateOfEachHeadAndCancels) {
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  const auto d = plantedPatchingDefaults();
  buildPair(ws, jobs, watch, d.clean, d.corrupt, d.answer, d.incorrect);
  AnalysisPanel panel(gui::test::adapterNamed("ablate"), &ws, &jobs);
  panel.setParam("dataset", "");  // empty: the Patching panel's pair
  panel.setParam("sweep", true);
  panel.setParam("heads", "3.0,3.1");
  expectCancels(panel, jobs, watch, ws);
  const auto end = watch.wait(panel.run());
  ASSERT_EQ(end.status, "finished") << end.message.toStdString();
  ASSERT_EQ(panel.gridViews().size(), 1u);
  EXPECT_TRUE(panel.gridViews()[0]->data().signedScores);

  const auto& m = *ws.session()->model;
  const at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(ws.patching()->cleanIds()), at::kLong).unsqueeze(0);
  const at::Tensor c = at::tensor(std::vector<int64_t>{ws.patching()->answer()}), i = at::tensor(std::vector<int64_t>{ws.patching()->incorrect()});
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{3, 0}, {3, 1}, {1, 1}, {0, 2}}) {
    analysis::AblationParams p;
    p.heads = {{l, h}};
    const auto r = analysis::ablate(m, tokens, c, i, p);
    EXPECT_NEAR(panel.gridViews()[0]->score(l, h), r.metricAfter - r.metricBefore, 1e-9) << l << "." << h;
  }
  // Zeroing a mover lowers the logit difference (it copies the answer).
  EXPECT_LT(panel.gridViews()[0]->score(3, 0), -0.5);
  analysis::AblationParams both;
  both.heads = {{3, 0}, {3, 1}};
  const auto set = analysis::ablate(m, tokens, c, i, both);
  const auto& params = ws.results().back().params;
  EXPECT_NEAR(params["metric_after"].toDouble(), set.metricAfter, 1e-9);
  EXPECT_NEAR(params["metric_before"].toDouble(), set.metricBefore, 1e-9);
  EXPECT_EQ(params["heads"].toArray(), (QJsonArray{"3.0", "3.1"}));
}

// Issue #21/#19: the Circuit panel on a dataset runs the CLI's `circuit --task` analysis (every prompt,
// the papers' stage plan at each prompt's role positions): on the trained GPT-2 and the reference IOI
// prompts its stages equal the library call's exactly and select the heads the Python port selects.
TEST(CausalPanels, CircuitOnADatasetIsTheCliAnalysis) {
  const std::filesystem::path dir = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "gpt2-ioi";
  const std::filesystem::path data = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "references" / "ioi_dataset.jsonl";
  if (!std::filesystem::exists(dir / "model.safetensors") || !std::filesystem::exists(data)) GTEST_SKIP() << dir << " is absent";
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  const auto session = loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{});
  ws.setSession(session);
  AnalysisPanel circuit(gui::test::adapterNamed("circuit"), &ws, &jobs);
  circuit.setParam("dataset", QString::fromStdString(data.string()));
  circuit.setParam("top_percent", 20.0);
  circuit.setParam("max_stages", 4);
  ASSERT_EQ(watch.wait(circuit.run()).status, "finished") << circuit.statusText().toStdString();
  const auto got = analysis::circuitFromJson(nlohmann::json::parse(ws.results().back().params["cli_json"].toString().toStdString()), "gui");

  analysis::CausalSource src;
  src.task = data.string();
  const analysis::CausalDataset ds = analysis::loadCausalDataset(src, &*session->tokenizer, session->tokenizer->bosId());
  analysis::CircuitParams p;
  p.topPercent = 20.0;
  p.maxStages = 4;
  const auto ref = analysis::discoverCircuit(*session->model, analysis::toPatchGroups(ds), p, "ioi");
  ASSERT_EQ(got.stages.size(), ref.stages.size());
  for (size_t s = 0; s < ref.stages.size(); ++s) {
    EXPECT_EQ(got.stages[s].selected, ref.stages[s].selected) << "stage " << s + 1;
    EXPECT_TRUE(at::equal(got.stages[s].effect.to(at::kDouble), ref.stages[s].effect.to(at::kDouble))) << "stage " << s + 1;
  }
  // The Python port's stage 1 on these prompts (circuits_ioi_gpt2-ioi.json): 2.0, 3.3, 3.0, 3.2.
  std::set<analysis::HeadRef> first(got.stages.at(0).selected.begin(), got.stages.at(0).selected.end());
  EXPECT_EQ(first, (std::set<analysis::HeadRef>{{2, 0}, {3, 0}, {3, 2}, {3, 3}}));
}

// The DLA panel is the `dla` analysis: on the trained GPT-2 and the reference IOI prompts its grids equal
// the independent Python port's DLA per head (1e-4·max(1, |ref|), as tests/analysis/test_trained_circuits.cpp)
// and its OV copy scores (decisions with margins ≥ 0.0017, so exactly).
TEST(CausalPanels, DlaPanelEqualsThePythonPort) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained";
  const fs::path dir = root / "gpt2-ioi", data = root / "references" / "ioi_dataset.jsonl";
  const fs::path refFile = root / "references" / "circuits_ioi_gpt2-ioi.json";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(refFile)) GTEST_SKIP() << dir << " is absent";
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  ws.setSession(loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{}));
  AnalysisPanel dla(gui::test::adapterNamed("dla"), &ws, &jobs);
  dla.setParam("dataset", QString::fromStdString(data.string()));
  dla.setParam("copy_roles", "IO,S1,S2");
  ASSERT_EQ(watch.wait(dla.run()).status, "finished") << dla.statusText().toStdString();
  ASSERT_EQ(dla.gridViews().size(), 3u);
  std::ifstream in(refFile);
  const nlohmann::json ref = nlohmann::json::parse(in);
  for (int l = 0; l < 4; ++l)
    for (int h = 0; h < 4; ++h) {
      const double r = ref["dla"]["heads"][l][h].get<double>();
      EXPECT_NEAR(dla.gridViews()[0]->score(l, h), r, 1e-4 * std::max(1.0, std::abs(r))) << l << "." << h;
      EXPECT_NEAR(dla.gridViews()[1]->score(l, h), ref["copy_score"]["positive"][l][h].get<double>(), 1e-9) << l << "." << h;
      EXPECT_NEAR(dla.gridViews()[2]->score(l, h), ref["copy_score"]["negative"][l][h].get<double>(), 1e-9) << l << "." << h;
    }
}

TEST(CausalPanels, CircuitsOfTwoTasksAndTheirOverlap) {
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  const auto d = plantedPatchingDefaults();
  buildPair(ws, jobs, watch, d.clean, d.corrupt, d.answer, d.incorrect);
  AnalysisPanel circuit(gui::test::adapterNamed("circuit"), &ws, &jobs);
  AnalysisPanel overlap(gui::test::adapterNamed("overlap"), &ws, &jobs);
  circuit.setParam("dataset", QString());  // the plugin form's dataset field defaults to ioi; empty: the Patching panel's pair
  expectCancels(circuit, jobs, watch, ws);
  circuit.setParam("task", "ioi");
  ASSERT_EQ(watch.wait(circuit.run()).status, "finished");
  const AnalysisResult ioi = ws.results().back();

  // The analysis called directly on the same pair.
  const auto& m = *ws.session()->model;
  auto ids = [](const std::vector<int64_t>& v) { return at::tensor(at::ArrayRef<int64_t>(v), at::kLong).unsqueeze(0); };
  analysis::PatchInputs in{ids(ws.patching()->cleanIds()), ids(ws.patching()->corruptIds()), at::tensor(std::vector<int64_t>{ws.patching()->answer()}),
                           at::tensor(std::vector<int64_t>{ws.patching()->incorrect()}), {}};
  const auto ref = analysis::discoverCircuit(m, in, analysis::CircuitParams{}, "ioi");
  ASSERT_EQ(circuit.gridViews().size(), 1 + ref.stages.size());
  for (std::size_t s = 0; s < ref.stages.size(); ++s)
    for (int l = 0; l < 4; ++l)
      for (int h = 0; h < 4; ++h)
        EXPECT_NEAR(circuit.gridViews()[1 + s]->score(l, h), ref.stages[s].score[l][h].item<double>(), 1e-9) << s << " " << l << "." << h;
  std::set<std::pair<int, int>> found;
  for (const auto& h : ref.heads) found.insert({h.head.layer, h.head.head});
  for (int l = 0; l < 4; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_EQ(circuit.gridViews()[0]->score(l, h) != 0.0, found.count({l, h}) == 1) << l << "." << h;
  // Planted IOI circuit (docs/planted-models.md): the movers are found on one pair.
  EXPECT_TRUE(found.count({3, 0}) && found.count({3, 1}));

  // Overlap needs two circuits; then it reads the workspace's last two.
  EXPECT_EQ(watch.wait(overlap.run()).status, "failed");
  EXPECT_TRUE(overlap.statusText().contains("needs two circuits")) << overlap.statusText().toStdString();
  const auto co = planted::coloredObjectsPrompts(1, 2)[0];
  Workspace ws2;  // the Colored Objects pair on the same workspace would replace the IOI pair: build it, then move it over
  buildPair(ws2, jobs, watch, join(co.words), join(co.corrupted), QString::fromStdString(co.answer), QString::fromStdString(co.incorrect));
  ws.setPatching(ws2.patching());
  circuit.setParam("task", "colored-objects");
  ASSERT_EQ(watch.wait(circuit.run()).status, "finished");
  const auto end = watch.wait(overlap.run());
  ASSERT_EQ(end.status, "finished") << end.message.toStdString();
  const auto& o = ws.results().back();
  EXPECT_EQ(o.analysis, "overlap");
  EXPECT_EQ(o.params["task_a"].toString(), "ioi");
  EXPECT_EQ(o.params["task_b"].toString(), "colored-objects");
  const auto ca = analysis::circuitFromJson(nlohmann::json::parse(ioi.params["cli_json"].toString().toStdString()), "a");
  const auto cb = analysis::circuitFromJson(nlohmann::json::parse(ws.results()[ws.results().size() - 2].params["cli_json"].toString().toStdString()), "b");
  const auto refO = analysis::circuitOverlap(ca, cb);
  EXPECT_NEAR(o.params["jaccard"].toDouble(), refO.headline.jaccard, 1e-12);
  ASSERT_EQ(overlap.lineViews().size(), 1u);
  EXPECT_EQ(overlap.lineViews()[0]->data().series[0].y.size(), refO.sweep.size());
  // Shared movers of the planted tasks.
  EXPECT_TRUE(o.params["shared"].toArray().contains("3.0"));
}

TEST(CausalPanels, ReopensResultsWrittenInTheCliSchema) {
  if (!analysis::resultH5Available()) GTEST_SKIP() << "this build has no HDF5 store";
  auto session = gui::test::plantedSession();
  const auto tokens = tokenizePrompt(*session, gui::test::kIoiPrompt);
  // What `mechscope-cli constraint-attention --out` and `retrieval --out` write: the analysis's result through writeResultH5.
  const auto c = analysis::runConstraintAttention(*session->model, tokens.ids, {2, 3}, {13});
  const auto needle = planted::needlePrompt(60, 0.5, 3);
  analysis::RetrievalTest t = mechscope::test::plantedRetrievalTest(needle);
  t.length = static_cast<int64_t>(t.ids.size());
  analysis::RetrievalDecode d;
  d.maxNewTokens = static_cast<int>(needle.answer.size());
  const auto rt = analysis::runRetrievalTest(*session->model, t, d);
  QTemporaryDir tmp;
  analysis::ResultProvenance prov;
  prov.modelFolder = "planted";
  const QString cPath = tmp.path() + "/constraint.h5", rPath = tmp.path() + "/retrieval.h5";
  analysis::writeResultH5(analysis::constraintToResult(c), cPath.toStdString(), prov);
  analysis::writeResultH5(analysis::retrievalToResult({rt}, 24, 4, false), rPath.toStdString(), prov);

  const auto cr = loadResults(cPath);
  ASSERT_EQ(cr.size(), 1u);
  EXPECT_EQ(cr[0].analysis, "constraint-attention");
  EXPECT_EQ(cr[0].model, "planted");
  ASSERT_EQ(cr[0].lines.size(), 2u);
  for (int64_t p = 0; p < 15; ++p) EXPECT_NEAR(cr[0].lines[0].series[0].y[static_cast<std::size_t>(p)], c.alphaMean[p].item<double>(), 1e-12);
  for (int l = 0; l < 24; ++l) EXPECT_NEAR(cr[0].lines[1].series[0].y[static_cast<std::size_t>(l)], c.beta[l].item<double>(), 1e-12);

  const auto rr = loadResults(rPath);
  ASSERT_EQ(rr.size(), 1u);
  EXPECT_EQ(rr[0].analysis, "retrieval");
  ASSERT_EQ(rr[0].grids.size(), 2u);
  for (int l = 0; l < 24; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_NEAR(rr[0].grids[0].scores[static_cast<std::size_t>(l * 4 + h)], rt.score[l][h].item<double>(), 1e-12);

  // Shown in its panel like a fresh run; a click on a head asks for its attention map.
  Workspace ws;
  JobRunner jobs;
  AnalysisPanel panel(gui::test::adapterNamed("retrieval"), &ws, &jobs);
  panel.showResult(rr[0]);
  ASSERT_EQ(panel.gridViews().size(), 2u);
  int requested = -1;
  QObject::connect(&ws, &Workspace::headRequested, [&](int l, int h) { requested = l * 10 + h; });
  emit panel.gridViews()[0]->headClicked(1, 0, Qt::NoModifier);
  EXPECT_EQ(requested, 10);

  // A CLI JSON with a ragged grid is an error, not a crash.
  EXPECT_THROW(resultFromCliJson("retrieval", nlohmann::json{{"retrieval_score", {{1.0, 2.0}, {3.0}}}}), InputError);
}
