// The attention job's patterns against the engine's runWithCache, and the explorer showing them.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <QMouseEvent>
#include <qcustomplot.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "app/gui/attention_explorer.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "views/head_grid_view.hpp"
#include "views/heatmap_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(Attention, JobPatternsEqualTheEnginesCacheAndTheExplorerShowsThem) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  AttentionExplorer explorer(&ws);
  explorer.resize(1100, 700);
  explorer.show();
  std::vector<qint64> layersDone;
  QObject::connect(&jobs, &JobRunner::progress, [&](int, qint64 d, qint64, const QString&) { layersDone.push_back(d); });
  const int id = submitComputePatterns(ws, jobs);
  ASSERT_EQ(watch.wait(id).status, "finished");
  const auto p = ws.patterns();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->layers, 24);
  EXPECT_EQ(p->heads, 4);
  EXPECT_EQ(p->positions, 15);
  ASSERT_FALSE(layersDone.empty());
  EXPECT_EQ(layersDone.back(), 24);

  // Reference: the engine's own cache.
  const auto ref = session->model->runWithCache(tokenTensor(ws.tokens().ids), {"blocks.*.attn.hook_pattern"});
  double maxErr = 0.0;
  for (int l = 0; l < 24; ++l) {
    const at::Tensor r = ref.at("pattern", l).select(0, 0).contiguous();  // [head, query, key]
    const auto& v = p->perLayer[static_cast<std::size_t>(l)];
    ASSERT_EQ(static_cast<int64_t>(v.size()), r.numel());
    const float* rp = r.data_ptr<float>();
    for (std::size_t i = 0; i < v.size(); ++i) maxErr = std::max(maxErr, static_cast<double>(std::abs(v[i] - rp[i])));
  }
  EXPECT_LT(maxErr, 1e-6);
  // Head 0.0 is the planted previous-token head: each query (after BOS) puts most mass on key q-1.
  const auto h00 = p->head(0, 0);
  for (int q = 2; q < 15; ++q) EXPECT_GT(h00[static_cast<std::size_t>(q * 15 + q - 1)], 0.9f) << "query " << q;

  // The explorer: small multiples of layer 0 and the big heatmap of the chosen head.
  explorer.showHead(0, 0);
  EXPECT_EQ(explorer.headGrid()->headCount(), 4);
  EXPECT_EQ(explorer.headGrid()->selectedHead(), 0);
  auto* hm = explorer.heatmap();
  EXPECT_EQ(hm->data().rows, 15);
  EXPECT_EQ(hm->data().rowLabels[2], "Mary");
  EXPECT_DOUBLE_EQ(hm->rawValue(5, 4), h00[5 * 15 + 4]);
  EXPECT_TRUE(std::isnan(hm->displayValue(3, 7))) << "upper triangle masked";
  explorer.showHead(2, 1);
  EXPECT_EQ(explorer.headGrid()->layer(), 2);
  EXPECT_DOUBLE_EQ(hm->rawValue(14, 3), p->head(2, 1)[14 * 15 + 3]);
  // Clicking a head in the small multiples opens it.
  emit explorer.headGrid()->headClicked(2, 3);
  EXPECT_EQ(explorer.head(), 3);
  EXPECT_EQ(hm->data().title, "Attention L2 H3");
  // Workspace-wide "open this head" (from any score grid).
  ws.requestHead(5, 2);
  EXPECT_EQ(explorer.layer(), 5);
  EXPECT_EQ(explorer.head(), 2);
  // Hover read-out: (query token, key token, value).
  const QPointF c = hm->cellCenter(5, 2);
  QMouseEvent move(QEvent::MouseMove, c, hm->plot()->mapToGlobal(c.toPoint()), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
  QCoreApplication::sendEvent(hm->plot(), &move);
  EXPECT_TRUE(explorer.hoverText().contains("'were' #5")) << explorer.hoverText().toStdString();
  EXPECT_TRUE(explorer.hoverText().contains("'Mary' #2")) << explorer.hoverText().toStdString();
}

TEST(Attention, CancelStopsTheForwardPass) {
  gui::test::PlantedBench bench;
  auto& [ws, jobs, watch, session] = bench;
  const int busy = jobs.submit("hold", [](const RunContext&) -> JobRunner::Deliver {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return {};
  });
  const int id = submitComputePatterns(ws, jobs);
  jobs.cancel(id);
  EXPECT_EQ(watch.wait(busy).status, "finished");
  EXPECT_EQ(watch.wait(id).status, "cancelled");
  EXPECT_FALSE(ws.patterns());
}
