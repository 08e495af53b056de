// The Edge attribution panel (issue #22): the `eap` plugin through the GUI shows its edges as a circuit
// graph — every node of the model's edge graph in its layer column, the listed edges with their scores
// and receivers — which survives the GUI's result file round trip; clicking an edge patches it alone.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "analysis/common/datasets.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/eap/edge_patching.hpp"
#include "app/gui/analysis_panel.hpp"
#include "app/gui/analysis_result.hpp"
#include "app/gui/jobs.hpp"
#include "tests/app/app_test_support.hpp"
#include "views/circuit_graph_view.hpp"
#include "views/figure_export.hpp"
#include "tests/common/scratch_root.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(EapPanel, ShowsTheEdgesOfTheAnalysisAsAGraph) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained";
  const fs::path dir = root / "gpt2-ioi", data = root / "references" / "ioi_dataset.jsonl";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(data)) GTEST_SKIP() << dir << " is absent";
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  ws.setSession(loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{}));
  AnalysisPanel panel(gui::test::adapterNamed("eap"), &ws, &jobs);
  panel.setParam("dataset", QString::fromStdString(data.string()));
  panel.setParam("top_k", 40);
  ASSERT_EQ(watch.wait(panel.run()).status, "finished") << panel.statusText().toStdString();
  ASSERT_EQ(panel.graphViews().size(), 1u);
  const views::CircuitGraphView& g = *panel.graphViews()[0];
  const nlohmann::json j = nlohmann::json::parse(ws.results().back().params["cli_json"].toString().toStdString());

  // 4 layers × 4 heads: input, 16 heads, 4 MLPs, logits; heads in column 1 + 2l, row h; MLPs in 2 + 2l.
  const int L = 4, H = 4;
  ASSERT_EQ(g.data().nodes.size(), static_cast<std::size_t>(1 + L * H + L + 1));
  for (const auto& n : g.data().nodes) {
    int l = -1, h = -1;
    if (std::sscanf(n.name.toStdString().c_str(), "a%d.h%d", &l, &h) == 2) {
      EXPECT_EQ(n.column, 1 + 2 * l) << n.name.toStdString();
      EXPECT_EQ(n.row, h) << n.name.toStdString();
      EXPECT_EQ(n.head, (HeadRef{l, h})) << n.name.toStdString();
    } else if (std::sscanf(n.name.toStdString().c_str(), "m%d", &l) == 1) {
      EXPECT_EQ(n.column, 2 + 2 * l) << n.name.toStdString();
      EXPECT_EQ(n.head.layer, -1) << n.name.toStdString();
    }
  }
  // The edges are the document's, in its order, with their scores and receivers.
  ASSERT_EQ(g.data().edges.size(), j["edges"].size());
  ASSERT_EQ(j["edges"].size(), 40u);
  for (std::size_t i = 0; i < j["edges"].size(); ++i) {
    const auto& e = j["edges"][i];
    const auto& got = g.data().edges[i];
    EXPECT_EQ(g.data().nodes[static_cast<std::size_t>(got.from)].name.toStdString(), e["upstream"].get<std::string>());
    EXPECT_EQ(g.data().nodes[static_cast<std::size_t>(got.to)].name.toStdString(), e["downstream"].get<std::string>());
    EXPECT_EQ(got.receiver.toStdString(), e["receiver"] == "-" ? "" : e["receiver"].get<std::string>());
    EXPECT_EQ(got.score, e["score"].get<double>());
  }
  // Shown: the 30 largest |score| (the document lists them largest first).
  EXPECT_EQ(g.edgeCount(), 30);
  EXPECT_DOUBLE_EQ(g.threshold(), std::abs(j["edges"][29]["score"].get<double>()));

  // Clicking a head's node opens its attention; an MLP's does nothing.
  int requested = -1;
  QObject::connect(&ws, &Workspace::headRequested, [&](int l, int h) { requested = l * 100 + h; });
  for (int i = 0; i < static_cast<int>(g.data().nodes.size()); ++i)
    if (g.data().nodes[static_cast<std::size_t>(i)].name == "m1") emit panel.graphViews()[0]->nodeClicked(i);
  EXPECT_EQ(requested, -1);
  for (int i = 0; i < static_cast<int>(g.data().nodes.size()); ++i)
    if (g.data().nodes[static_cast<std::size_t>(i)].name == "a2.h3") emit panel.graphViews()[0]->nodeClicked(i);
  EXPECT_EQ(requested, 203);

  // Clicking an edge patches it alone on the form's dataset: the status line is patchEdges' numbers.
  const auto& e0 = j["edges"][0];
  ASSERT_EQ(watch.wait(panel.patchEdge(0)).status, "finished");
  const auto& model = *ws.session()->model;
  analysis::CausalSource src;
  src.task = data.string();
  const auto ds = analysis::loadCausalDataset(src, &*ws.session()->tokenizer, ws.session()->tokenizer->bosId());
  const auto G = analysis::edgeGraphOf(model.config());
  const auto exact = analysis::patchEdges(model, analysis::toPatchGroups(ds),
                                          {analysis::edgeByName(G, e0["upstream"], e0["downstream"], e0["receiver"])});
  const QString want = QString("LD %1 → %2 (Δ %3)").arg(exact.metricClean, 0, 'f', 4).arg(exact.metricClean + exact.effect[0].item<double>(), 0, 'f', 4)
                           .arg(exact.effect[0].item<double>(), 0, 'f', 4);
  EXPECT_TRUE(panel.statusText().contains(want)) << panel.statusText().toStdString() << " vs " << want.toStdString();
  EXPECT_TRUE(panel.statusText().startsWith(QString::fromStdString("Patched " + e0["upstream"].get<std::string>()))) << panel.statusText().toStdString();

  // Exported like every figure: PNG and SVG with the sidecar of the shown edges.
  const fs::path out = mechscope::test::freshScratchDir("eap_graph");
  QString error;
  for (const char* name : {"graph.png", "graph.svg"})
    ASSERT_TRUE(views::exportFigure(g.plot(), QString::fromStdString((out / name).string()), 96, {}, g.plottedNumbers(), &error, QSize(900, 600)))
        << error.toStdString();
  EXPECT_GT(fs::file_size(out / "graph.png"), 5000u);
  std::ifstream side(out / "graph.png.json");
  const nlohmann::json sidecar = nlohmann::json::parse(side);
  EXPECT_EQ(sidecar["numbers"]["edges"].size(), 30u);

  // The GUI's result file keeps the graph.
  const AnalysisResult back = resultFromJson(resultToJson(ws.results().back()), "round trip");
  ASSERT_EQ(back.graphs.size(), 1u);
  EXPECT_EQ(back.graphs[0].edges.size(), 40u);
  EXPECT_EQ(back.graphs[0].edges[3].score, g.data().edges[3].score);
  EXPECT_EQ(back.graphs[0].nodes[5].name, g.data().nodes[5].name);
  EXPECT_EQ(back.graphs[0].nodes[5].head, g.data().nodes[5].head);
}
