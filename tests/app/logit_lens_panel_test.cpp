// The Logit lens panel (issue #22): its first table is the top-1 token read out at every layer (rows
// "embed", 0 … L−1) and chosen position (columns labelled by the prompt's tokens), coloured by its
// probability; the last layer's row is the model's own next-token prediction, checked here against a plain
// forward and a softmax written out in the test.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>

#include "app/gui/analysis_panel.hpp"
#include "app/gui/analysis_result.hpp"
#include "app/gui/jobs.hpp"
#include "tests/app/app_test_support.hpp"
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(LogitLensPanel, TableOfTopTokensOverLayersAndPositions) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / "gpt2-ioi";
  if (!fs::exists(dir / "model.safetensors")) GTEST_SKIP() << dir << " is absent";
  Workspace ws;
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  const auto session = loadModelSession(dir, LoadOptions{"cpu", "fp32"}, RunContext{});
  ws.setSession(session);
  const QString prompt = "When Mary and John went to the store, John gave a drink to";
  ws.setPrompt(prompt, tokenizePrompt(*session, prompt));
  AnalysisPanel panel(gui::test::adapterNamed("logit-lens"), &ws, &jobs);
  panel.setParam("positions", "all");
  ASSERT_EQ(watch.wait(panel.run()).status, "finished") << panel.statusText().toStdString();
  ASSERT_EQ(panel.gridViews().size(), 2u);
  const views::ScoreGridData& top = panel.gridViews()[0]->data();
  const int L = session->model->config().nLayers;
  const int n = static_cast<int>(ws.tokens().ids.size());
  ASSERT_EQ(top.layers, L + 1);
  ASSERT_EQ(top.heads, n);
  EXPECT_EQ(top.rowLabels.front(), "embed");
  EXPECT_EQ(top.rowLabels.back(), QString::number(L - 1));
  EXPECT_EQ(top.columnLabels, ws.tokens().display);
  EXPECT_EQ(top.columnAxis, "position (its token)");

  // The last row: the model's prediction at each position, from a plain forward.
  const at::Tensor ids = at::tensor(at::ArrayRef<int64_t>(ws.tokens().ids), at::kLong).unsqueeze(0);
  ForwardOptions opts;
  at::NoGradGuard g;
  const at::Tensor logits = session->model->forward(ids, opts).logits[0].to(at::kDouble);  // [pos, vocab]
  const at::Tensor probs = at::softmax(logits, -1);
  for (int c = 0; c < n; ++c) {
    const int64_t best = probs[c].argmax().item<int64_t>();
    EXPECT_EQ(top.cellLabels[L * n + c].toStdString(), session->tokenizer->displayToken(best)) << "position " << c;
    EXPECT_NEAR(top.scores[static_cast<std::size_t>(L * n + c)], probs[c][best].item<double>(), 3e-4) << "position " << c;
  }
  // Cells are not heads: clicking one opens no attention map.
  int requested = -1;
  QObject::connect(&ws, &Workspace::headRequested, [&](int l, int h) { requested = l * 100 + h; });
  emit panel.gridViews()[0]->headClicked(1, 2, Qt::NoModifier);
  EXPECT_EQ(requested, -1);
  // The GUI's result file keeps the labels.
  const AnalysisResult back = resultFromJson(resultToJson(ws.results().back()), "round trip");
  EXPECT_EQ(back.grids[0].cellLabels, top.cellLabels);
  EXPECT_EQ(back.grids[0].columnLabels, top.columnLabels);
  EXPECT_EQ(back.grids[0].rowAxis, top.rowAxis);
}
