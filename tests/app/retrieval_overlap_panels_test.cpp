// The Retrieval and Overlap panels are the plugins' derived adapters (app/gui/plugin_adapter.cpp): on the
// inputs of tests/data/planted/retrieval_overlap they show the numbers the hand-written CLI commands wrote
// (reference.json, recorded before the conversion), and the Overlap panel runs with no model loaded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "app/gui/analysis_panel.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

namespace {

std::filesystem::path retrievalOverlapData() {
  return std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "planted" / "retrieval_overlap";
}

nlohmann::json readReference() {
  std::ifstream in(retrievalOverlapData() / "reference.json");
  return nlohmann::json::parse(in);
}

/// The grid view's cells equal the reference's [layer][head] array.
void expectGridEquals(const views::ScoreGridView& view, const nlohmann::json& grid, const char* what) {
  for (size_t l = 0; l < grid.size(); ++l)
    for (size_t h = 0; h < grid[l].size(); ++h)
      EXPECT_NEAR(view.score(static_cast<int>(l), static_cast<int>(h)), grid[l][h].get<double>(), 1e-12) << what << " " << l << "." << h;
}

}  // namespace

TEST(PluginPanels, RetrievalPanelEqualsTheHandWrittenCliSingleTest) {
  const nlohmann::json ref = readReference();
  gui::test::PlantedBench bench(false);
  auto& [ws, jobs, watch, session] = bench;
  // The prompt of the reference run: the --token-ids row of needle.json.
  std::ifstream idsFile(retrievalOverlapData() / "needle.json");
  PromptTokens tokens;
  tokens.ids = nlohmann::json::parse(idsFile)[0].get<std::vector<int64_t>>();
  for (int64_t id : tokens.ids) tokens.display << QString::fromStdString(session->tokenizer->idToToken(id));
  ws.setPrompt(tokens.display.join(' '), tokens);

  const AnalysisAdapter adapter = gui::test::adapterNamed("retrieval");
  ASSERT_TRUE(adapter.available);
  AnalysisPanel panel(adapter, &ws, &jobs);
  // The reference's options: --needle-span 11:16 --max-new-tokens 4 --no-success-filter [--mask-heads 1.0,2.0].
  panel.setParam("needle_span", "11:16");
  panel.setParam("max_new_tokens", 4);
  panel.setParam("success_filter", false);
  for (const char* name : {"single", "single_mask"}) {
    panel.setParam("mask_heads", std::string(name) == "single_mask" ? "1.0,2.0" : "");
    const auto end = watch.wait(panel.run());
    ASSERT_EQ(end.status, "finished") << panel.statusText().toStdString();
    const nlohmann::json& j = ref[name]["json"];
    ASSERT_EQ(panel.gridViews().size(), 2u);
    expectGridEquals(*panel.gridViews()[0], j["retrieval_score"], name);
    expectGridEquals(*panel.gridViews()[1], j["activation_frequency"], name);
    const auto& r = ws.results().back();
    EXPECT_EQ(r.params["tests_used"].toDouble(), j["tests_used"].get<double>()) << name;
    if (std::string(name) == "single") {  // the planted retrieval heads copy the needle; masked, they do not
      EXPECT_EQ(r.params["generated"].toString().trimmed(), "number seven hundred twelve");
    }
  }
}

TEST(PluginPanels, OverlapPanelEqualsTheHandWrittenCliWithoutAModel) {
  const nlohmann::json ref = readReference()["overlap"]["json"];
  Workspace ws;  // no model: overlap reads two circuit files
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  const AnalysisAdapter adapter = gui::test::adapterNamed("overlap");
  ASSERT_TRUE(adapter.available);
  EXPECT_FALSE(adapter.needsModel);
  AnalysisPanel panel(adapter, &ws, &jobs);
  // Without files and without circuits in the workspace: one message saying what it needs.
  EXPECT_EQ(watch.wait(panel.run()).status, "failed");
  EXPECT_TRUE(panel.statusText().contains("needs two circuits")) << panel.statusText().toStdString();

  panel.setParam("a", QString::fromStdString((retrievalOverlapData() / "circuit_ioi.json").string()));
  panel.setParam("b", QString::fromStdString((retrievalOverlapData() / "circuit_co.json").string()));
  const auto end = watch.wait(panel.run());
  ASSERT_EQ(end.status, "finished") << panel.statusText().toStdString();
  const auto& r = ws.results().back();
  EXPECT_EQ(r.analysis, "overlap");
  EXPECT_NEAR(r.params["jaccard"].toDouble(), ref["jaccard"].get<double>(), 1e-12);
  EXPECT_NEAR(r.params["intersection_over_min"].toDouble(), ref["intersection_over_min"].get<double>(), 1e-12);
  QStringList shared;
  for (const auto& v : r.params["shared"].toArray()) shared << v.toString();
  QStringList refShared;
  for (const auto& h : ref["shared"]) refShared << QString::fromStdString(h.get<std::string>());
  EXPECT_EQ(shared, refShared);
  ASSERT_EQ(panel.lineViews().size(), 1u);
  const auto& series = panel.lineViews()[0]->data().series;
  ASSERT_EQ(series[0].y.size(), ref["sweep"].size());
  for (size_t i = 0; i < ref["sweep"].size(); ++i) {
    EXPECT_NEAR(series[0].y[i], ref["sweep"][i]["jaccard"].get<double>(), 1e-12) << i;
    EXPECT_NEAR(series[1].y[i], ref["sweep"][i]["intersection_over_min"].get<double>(), 1e-12) << i;
  }
}
