#include <gtest/gtest.h>
#include <qcustomplot.h>

#include <QSignalSpy>
#include <QSlider>
#include <QTest>

#include <cmath>

#include "core/common/errors.hpp"
#include "views/circuit_graph_view.hpp"
#include "views_test_support.hpp"

using namespace mechscope::views;
using mechscope::views::test::click;

namespace {

// input (col 0) → two heads (col 1, rows 0 and 1) → logits (col 2, row 0.5); five edges of known scores.
CircuitGraphData smallGraph() {
  CircuitGraphData d;
  d.title = "toy circuit";
  d.nodes = {{"input", 0, 0.5}, {"a0.h0", 1, 0}, {"a0.h1", 1, 1}, {"logits", 2, 0.5}};
  d.edges = {{0, 1, "q", 0.2}, {0, 2, "v", -0.9}, {1, 3, "", 0.5}, {2, 3, "", 1.5}, {0, 3, "", 0.05}};
  return d;
}

// Where a node must be drawn: the axis rect spans columns [min − 0.6, max + 0.6] left to right and rows
// [min − 0.8, max + 0.8] top to bottom (written out here, not read back from the view).
QPointF expectedCenter(const CircuitGraphView& v, double column, double row) {
  const QRect r = v.plot()->axisRect()->rect();
  return {r.left() + (column + 0.6) / 3.2 * r.width(), r.top() + (row + 0.8) / 2.6 * r.height()};
}

struct Shown {
  CircuitGraphView v;
  Shown() {
    v.resize(640, 420);
    v.setData(smallGraph());
    v.show();
    EXPECT_TRUE(QTest::qWaitForWindowExposed(&v));
    v.plot()->replot();
  }
};

}  // namespace

TEST(CircuitGraphView, EdgesShownByAbsoluteScoreWithTheSlider) {
  Shown s;
  EXPECT_EQ(s.v.edgeCount(), 5);  // fewer than the default 30: all
  EXPECT_EQ(s.v.visibleEdges(), (std::vector<int>{3, 1, 2, 0, 4}));  // |1.5| > |-0.9| > 0.5 > 0.2 > 0.05
  QSignalSpy changed(&s.v, &CircuitGraphView::edgeCountChanged);
  s.v.slider()->setValue(2);
  EXPECT_EQ(changed.size(), 1);
  EXPECT_EQ(s.v.edgeCount(), 2);
  EXPECT_EQ(s.v.visibleEdges(), (std::vector<int>{3, 1}));
  EXPECT_DOUBLE_EQ(s.v.threshold(), 0.9);
  s.v.setEdgeCount(99);  // clamped
  EXPECT_EQ(s.v.edgeCount(), 5);
  EXPECT_DOUBLE_EQ(s.v.threshold(), 0.05);
  s.v.setEdgeCount(0);
  EXPECT_DOUBLE_EQ(s.v.threshold(), 0.0);
  EXPECT_TRUE(s.v.plottedNumbers()["edges"].toArray().isEmpty());
}

TEST(CircuitGraphView, NodesSitInTheirColumnsAndRows) {
  Shown s;
  for (int i = 0; i < 4; ++i) {
    const auto& n = s.v.data().nodes[static_cast<std::size_t>(i)];
    const QPointF want = expectedCenter(s.v, n.column, n.row), got = s.v.nodeCenter(i);
    EXPECT_NEAR(got.x(), want.x(), 1.0) << n.name.toStdString();
    EXPECT_NEAR(got.y(), want.y(), 1.0) << n.name.toStdString();
    EXPECT_EQ(s.v.nodeAt(want + QPointF(3, -2)), i);
  }
  EXPECT_EQ(s.v.nodeAt(expectedCenter(s.v, 0.5, 1.2)), -1);  // empty space
}

TEST(CircuitGraphView, ClickingAnEdgeOrANodeNamesIt) {
  Shown s;
  QSignalSpy edges(&s.v, &CircuitGraphView::edgeClicked), nodes(&s.v, &CircuitGraphView::nodeClicked);
  // The midpoint of a0.h1 → logits (edge 3).
  const QPointF mid = (expectedCenter(s.v, 1, 1) + expectedCenter(s.v, 2, 0.5)) / 2;
  click(s.v.plot(), mid);
  ASSERT_EQ(edges.size(), 1);
  EXPECT_EQ(edges[0][0].toInt(), 3);
  click(s.v.plot(), expectedCenter(s.v, 1, 0));
  ASSERT_EQ(nodes.size(), 1);
  EXPECT_EQ(nodes[0][0].toInt(), 1);
  // A hidden edge cannot be clicked: keep only the largest, then click edge 1's midpoint (input → a0.h1).
  s.v.setEdgeCount(1);
  click(s.v.plot(), (expectedCenter(s.v, 0, 0.5) + expectedCenter(s.v, 1, 1)) / 2);
  EXPECT_EQ(edges.size(), 1);
}

TEST(CircuitGraphView, SidecarNumbersAreTheShownEdges) {
  Shown s;
  s.v.setEdgeCount(2);
  const QJsonObject n = s.v.plottedNumbers();
  const QJsonArray e = n["edges"].toArray();
  ASSERT_EQ(e.size(), 2);
  EXPECT_EQ(e[0].toObject()["from"].toString(), "a0.h1");
  EXPECT_EQ(e[0].toObject()["to"].toString(), "logits");
  EXPECT_DOUBLE_EQ(e[0].toObject()["score"].toDouble(), 1.5);
  EXPECT_EQ(e[1].toObject()["receiver"].toString(), "v");
  EXPECT_EQ(n["edges_total"].toInt(), 5);
  EXPECT_EQ(n["nodes"].toArray().size(), 4);
}

TEST(CircuitGraphView, BadEdgesAreRefused) {
  CircuitGraphView v;
  CircuitGraphData d = smallGraph();
  d.edges.push_back({0, 7, "", 1.0});
  EXPECT_THROW(v.setData(d), mechscope::InputError);
  d = smallGraph();
  d.edges[0].score = NAN;
  EXPECT_THROW(v.setData(d), mechscope::InputError);
}
