// Analysis panels through the job runner: progress, results as score grids / line plots, cancel,
// click-to-open, HDF5 round trip of results.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <QFile>
#include <QJsonArray>
#include <QProgressBar>
#include <QTemporaryDir>

#include "analysis/sinks/sinks.hpp"
#include "app/gui/analysis_adapters.hpp"
#include "app/gui/analysis_panel.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "core/common/errors.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"
#include "tests/common/rounding_bounds.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(AnalysisPanels, EveryRegistryAnalysisHasAPanelAndUnavailableOnesSaySo) {
  const auto adapters = analysisAdapters();
  ASSERT_GE(adapters.size(), 9u);
  EXPECT_EQ(adapters.front().name, "attention-overview");
  for (const char* n : {"sinks", "waad-fai", "constraint-attention", "retrieval", "ablate", "patch", "circuit", "overlap"}) {
    const auto a = gui::test::adapterNamed(n);
    if (!a.available) {
      EXPECT_FALSE(a.note.isEmpty()) << n;
    }
  }
  Workspace ws;
  JobRunner jobs;
  AnalysisPanel panel(gui::test::adapterNamed("overlap"), &ws, &jobs);
  if (!panel.adapter().available) {
    EXPECT_EQ(panel.run(), -1);
    EXPECT_TRUE(panel.statusText().startsWith("Not available")) << panel.statusText().toStdString();
  }
}

namespace {
/// The overview's three grids by plain loops over the engine's patterns (an independent reading of the
/// definitions in analysis/attention_overview: mean over queries q ≥ skip of A[q,0], Σ_k A[q,k](q−k) and
/// −Σ_k A log A), [grid][layer * heads + head].
std::vector<std::vector<double>> overviewByLoops(const AttentionPatterns& p, int skip) {
  std::vector<std::vector<double>> out(3, std::vector<double>(static_cast<std::size_t>(p.layers * p.heads)));
  const int P = p.positions;
  for (int l = 0; l < p.layers; ++l)
    for (int h = 0; h < p.heads; ++h) {
      const auto a = p.head(l, h);  // [query * P + key]
      double first = 0, dist = 0, ent = 0;
      for (int q = skip; q < P; ++q)
        for (int k = 0; k <= q; ++k) {
          const double v = a[static_cast<std::size_t>(q * P + k)];
          if (k == 0) first += v;
          dist += v * (q - k);
          if (v > 0) ent -= v * std::log(v);
        }
      const auto i = static_cast<std::size_t>(l * p.heads + h);
      out[0][i] = first / (P - skip);
      out[1][i] = dist / (P - skip);
      out[2][i] = ent / (P - skip);
    }
  return out;
}
}  // namespace

TEST(AnalysisPanels, OverviewRunsWithProgressAndShowsGridsEqualToTheNumbers) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(gui::test::adapterNamed("attention-overview"), &ws, &jobs);
  panel.resize(800, 900);
  panel.show();
  std::vector<qint64> progress;
  QObject::connect(&jobs, &JobRunner::progress, [&](int, qint64 d, qint64, const QString&) { progress.push_back(d); });
  int requested = -1;
  QObject::connect(&ws, &Workspace::headRequested, [&](int l, int h) { requested = l * 100 + h; });
  const int id = panel.run();
  ASSERT_GE(id, 0);
  ASSERT_EQ(watch.wait(id).status, "finished");
  EXPECT_EQ(panel.statusText(), "Done.");
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 24);
  EXPECT_EQ(panel.progressBar()->value(), 24);
  ASSERT_EQ(ws.results().size(), 1u);
  ASSERT_EQ(panel.gridViews().size(), 3u);
  ASSERT_EQ(panel.lineViews().size(), 1u);

  // Numbers: the same statistics computed from the engine's patterns.
  const AttentionPatterns p = computePatterns(*session, ws.tokens(), RunContext{});
  const auto ref = overviewByLoops(p, 1);
  // fp32 patterns summed in fp64 (loops) vs fp64 tensor sums of the same fp32 values: ≤ 15 terms of ≤ 15 each.
  for (int g = 0; g < 3; ++g)
    for (int l = 0; l < 24; ++l)
      for (int h = 0; h < 4; ++h)
        EXPECT_NEAR(panel.gridViews()[static_cast<std::size_t>(g)]->score(l, h), ref[static_cast<std::size_t>(g)][static_cast<std::size_t>(l * 4 + h)], 1e-9);
  // Primary sinks of the planted model (docs/planted-models.md): 0.1, 1.3, 2.3 and 4.0 … 23.0 put ≈ all mass on BOS.
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {2, 3}, {4, 0}, {23, 0}})
    EXPECT_GT(panel.gridViews()[0]->score(l, h), 0.95) << l << "." << h;
  // The previous-token head 0.0 is one token away on average.
  EXPECT_NEAR(panel.gridViews()[1]->score(0, 0), 1.0, 0.1);
  // Mean distance by hand for one head.
  {
    const auto v = p.head(5, 2);
    double d = 0;
    for (int q = 1; q < 15; ++q)
      for (int k = 0; k <= q; ++k) d += v[static_cast<std::size_t>(q * 15 + k)] * (q - k);
    EXPECT_NEAR(panel.gridViews()[1]->score(5, 2), d / 14, 1e-6);
  }
  // Line plot: one value per token, query 0 skipped.
  const auto& line = panel.lineViews()[0]->data();
  ASSERT_EQ(line.series.size(), 1u);
  EXPECT_EQ(line.series[0].y.size(), 15u);
  EXPECT_TRUE(std::isnan(line.series[0].y[0]));
  EXPECT_EQ(line.xLabels[2], "Mary");

  // Clicking a head in a result grid opens its attention map.
  auto* g = panel.gridViews()[0];
  emit g->headClicked(7, 1, Qt::NoModifier);
  EXPECT_EQ(requested, 701);

  // Bad parameter: a message, no crash.
  panel.setParam("skip_queries", 99);
  const auto bad = watch.wait(panel.run());
  EXPECT_EQ(bad.status, "failed");
  EXPECT_TRUE(panel.statusText().contains("skip_queries = 99")) << panel.statusText().toStdString();
}

// The `patch` plugin's panel with an empty dataset field runs on the Patching panel's pair (one prompt,
// role END): its head_out (z) and pattern grids, denoising, equal PatchingSession::run's one hooked
// forward per head (clean activation into the corrupted run).
TEST(AnalysisPanels, PatchingSweepPanelCancelsAndThenCompletes) {
  gui::test::PlantedBench bench(false);
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(gui::test::adapterNamed("patch"), &ws, &jobs);
  panel.setParam("dataset", QString());  // the Patching panel's pair
  EXPECT_EQ(watch.wait(panel.run()).status, "failed") << "needs the pair first";
  EXPECT_TRUE(panel.statusText().contains("Patching panel")) << panel.statusText().toStdString();
  const auto d = plantedPatchingDefaults();
  const int prep = submitBuildPatching(ws, jobs, tokenizePrompt(*session, d.clean).ids, tokenizePrompt(*session, d.corrupt).ids,
                                       *session->tokenizer->tokenToId("Mary"), *session->tokenizer->tokenToId("John"));
  ASSERT_EQ(watch.wait(prep).status, "finished");

  const int id = panel.run();
  ASSERT_GE(id, 0);
  bool sawProgress = false;
  auto c = QObject::connect(&jobs, &JobRunner::progress, [&](int j, qint64, qint64, const QString&) {
    if (j == id && !sawProgress) sawProgress = true, panel.cancel();
  });
  EXPECT_EQ(watch.wait(id).status, "cancelled");
  QObject::disconnect(c);
  EXPECT_TRUE(sawProgress);
  EXPECT_EQ(panel.statusText(), "Cancelled.");
  EXPECT_TRUE(ws.results().empty());

  const auto p = ws.patching();
  const double denom = p->cleanLogitDiff() - p->corruptLogitDiff();
  // The panel is the CLI's batched activation patching; run() one hooked forward: two summation orders.
  const auto& m = *session->model;
  const at::Tensor logits = m.forward(tokenTensor(p->corruptIds())).logits;
  const double bound = ::mechscope::test::logitDifferenceOrderBound(m.config(), logits.size(1), logits.abs().max().item<double>()) / std::abs(denom);
  size_t runs = 0;
  for (const auto& [component, site] : std::vector<std::pair<QString, PatchSite>>{{"pattern", PatchSite::Pattern}, {"head_out", PatchSite::Z}}) {
    panel.setParam("component", component);
    const auto end = watch.wait(panel.run());
    ASSERT_EQ(end.status, "finished") << end.message.toStdString();
    ASSERT_EQ(ws.results().size(), ++runs);
    ASSERT_EQ(panel.gridViews().size(), 1u);
    EXPECT_TRUE(panel.gridViews()[0]->data().signedScores);
    EXPECT_EQ(ws.results().back().params["component"].toString(), component);
    EXPECT_EQ(ws.results().back().params["normalisation"].toString(), "denoising");
    for (const auto& [l, h] : std::vector<std::pair<int, int>>{{3, 0}, {3, 1}, {2, 1}, {0, 0}}) {
      PatchRequest r;
      r.site = site;
      r.heads = {{l, h}};
      const double expect = (p->run(r).logitDiff - p->corruptLogitDiff()) / denom;
      EXPECT_NEAR(panel.gridViews()[0]->score(l, h), expect, bound) << component.toStdString() << " " << l << "." << h;
    }
  }
}

TEST(AnalysisResults, RoundTripThroughHdf5AndBrokenFilesAreErrors) {
  AnalysisResult r;
  r.analysis = "attention-overview";
  r.model = "/models/planted";
  r.prompt = "When Mary";
  r.params["skip_queries"] = 1;
  r.grids.push_back({2, 3, {0.5, -1.25, NAN, 3.0, 0.0, 1e-7}, "grid", "score", true});
  views::LinePlotData line;
  line.title = "trace";
  line.xLabels = {"<bos>", "When", "Mary"};
  line.series.push_back({"a", {NAN, 0.25, 0.75}, {}, {2}, QColor()});
  r.lines.push_back(line);
  QTemporaryDir tmp;
  const QString path = tmp.path() + "/results.h5";
  saveResults(path, {r, r}, "/models/planted");
  const auto back = loadResults(path);
  ASSERT_EQ(back.size(), 2u);
  const auto& b = back[0];
  EXPECT_EQ(b.analysis, r.analysis);
  EXPECT_EQ(b.prompt, "When Mary");
  EXPECT_EQ(b.params["skip_queries"].toInt(), 1);
  ASSERT_EQ(b.grids.size(), 1u);
  EXPECT_EQ(b.grids[0].layers, 2);
  EXPECT_EQ(b.grids[0].heads, 3);
  EXPECT_TRUE(b.grids[0].signedScores);
  EXPECT_DOUBLE_EQ(b.grids[0].scores[1], -1.25);
  EXPECT_TRUE(std::isnan(b.grids[0].scores[2]));
  EXPECT_DOUBLE_EQ(b.grids[0].scores[5], 1e-7);
  ASSERT_EQ(b.lines.size(), 1u);
  EXPECT_EQ(b.lines[0].xLabels, line.xLabels);
  EXPECT_DOUBLE_EQ(b.lines[0].series[0].y[2], 0.75);
  EXPECT_EQ(b.lines[0].series[0].marked, std::vector<int>{2});

  // A file that is not HDF5.
  QFile junk(tmp.path() + "/junk.h5");
  ASSERT_TRUE(junk.open(QIODevice::WriteOnly));
  junk.write("this is not an HDF5 file");
  junk.close();
  EXPECT_THROW(loadResults(junk.fileName()), InputError);
  EXPECT_THROW(loadResults(tmp.path() + "/missing.h5"), InputError);
  EXPECT_THROW(resultFromJson(QJsonObject{{"analysis", "x"}, {"grids", QJsonArray{QJsonObject{{"layers", 2}, {"heads", 2}, {"scores", QJsonArray{1}}}}}}, "t"),
               InputError);
}

TEST(AnalysisPanels, SinksPanelShowsTheAnalysisNumbers) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AnalysisPanel panel(gui::test::adapterNamed("sinks"), &ws, &jobs);
  ASSERT_TRUE(panel.adapter().available);
  const int id = panel.run();
  ASSERT_GE(id, 0);
  const auto end = watch.wait(id);
  ASSERT_EQ(end.status, "finished") << end.message.toStdString();
  ASSERT_EQ(panel.gridViews().size(), 1u);
  const auto ref = analysis::runSinks(*session->model, {ws.tokens().ids});
  for (int l = 0; l < 24; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_NEAR(panel.gridViews()[0]->score(l, h), ref.sinkScore[l][h].item<double>(), 1e-9);
  for (const auto& [l, h] : std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {4, 0}, {23, 0}})
    EXPECT_GT(panel.gridViews()[0]->score(l, h), 0.95) << l << "." << h;
  ASSERT_EQ(panel.lineViews().size(), 1u);
  EXPECT_EQ(panel.lineViews()[0]->data().series[0].y.size(), 24u);
}
