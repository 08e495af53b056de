#include <gtest/gtest.h>
#include <qcustomplot.h>

#include <QJsonArray>
#include <QKeyEvent>
#include <QSignalSpy>
#include <QTest>

#include <algorithm>
#include <cmath>

#include "core/common/errors.hpp"
#include "views/heatmap_view.hpp"
#include "views/token_ticker.hpp"
#include "views_test_support.hpp"

using namespace mechscope::views;
using mechscope::views::test::causalPattern;
using mechscope::views::test::click;
using mechscope::views::test::sendMouse;

namespace {

HeatmapData tokens6() {
  HeatmapData d;
  d.rows = d.cols = 6;
  d.values = causalPattern(6, 3);
  d.rowLabels = d.colLabels = QStringList{"<bos>", "The", " cat", " sat", " on", " mat"};
  d.title = "L1H2";
  return d;
}

// The pixel at the centre of cell (row, col), from the axis rect's geometry alone.
QPointF expectedCenter(const HeatmapView& v, int row, int col) {
  const QRect r = v.plot()->axisRect()->rect();
  const QCPRange xr = v.plot()->xAxis->range(), yr = v.plot()->yAxis->range();
  const double x = r.left() + (col - xr.lower) / xr.size() * r.width();
  const double y = r.top() + (row - yr.lower) / yr.size() * r.height();  // y axis reversed: row 0 at the top
  return {x, y};
}

}  // namespace

TEST(HeatmapView, HoverMapsPixelsToCells) {
  HeatmapView v;
  v.resize(640, 560);
  v.setData(tokens6());
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.plot()->replot();
  QSignalSpy hovered(&v, &HeatmapView::cellHovered);
  for (auto [row, col] : {std::pair{0, 0}, {3, 1}, {5, 5}, {5, 0}, {2, 2}}) {
    const QPointF p = expectedCenter(v, row, col);
    EXPECT_NEAR(p.x(), v.cellCenter(row, col).x(), 1.0);
    EXPECT_NEAR(p.y(), v.cellCenter(row, col).y(), 1.0);
    // A point a third of a cell off-centre still maps to the same cell.
    const QRect r = v.plot()->axisRect()->rect();
    const QPointF off = p + QPointF(r.width() / 6.0 / 3.0, -r.height() / 6.0 / 3.0);
    sendMouse(v.plot(), QEvent::MouseMove, off);
    ASSERT_FALSE(hovered.isEmpty()) << row << "," << col;
    const QList<QVariant> args = hovered.takeLast();
    EXPECT_EQ(args[0].toInt(), row);
    EXPECT_EQ(args[1].toInt(), col);
    EXPECT_NEAR(args[2].toDouble(), v.data().values[static_cast<std::size_t>(row) * 6 + col], 1e-7);
    const HeatmapCell cell = v.cellAt(off);
    EXPECT_EQ(cell.row, row);
    EXPECT_EQ(cell.col, col);
  }
  // A masked cell (key after query) emits nothing; outside the matrix is invalid.
  hovered.clear();
  sendMouse(v.plot(), QEvent::MouseMove, expectedCenter(v, 1, 4));
  EXPECT_TRUE(hovered.isEmpty());
  EXPECT_FALSE(v.cellAt(QPointF(2, 2)).valid());
}

TEST(HeatmapView, RenderedCellsHaveTheScaleColours) {
  HeatmapView v;
  v.setTheme(PlotTheme::light());
  v.resize(640, 560);
  v.setData(tokens6());
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.plot()->replot();
  const QImage img = v.plot()->toPixmap().toImage();
  for (int row = 0; row < 6; ++row)
    for (int col = 0; col < 6; ++col) {
      const QPoint p = expectedCenter(v, row, col).toPoint();
      const QColor want = col > row ? PlotTheme::light().mask : v.colorScale().map(v.data().values[static_cast<std::size_t>(row) * 6 + col]);
      const QColor got = img.pixelColor(p);
      EXPECT_NEAR(got.red(), want.red(), 2) << row << "," << col;
      EXPECT_NEAR(got.green(), want.green(), 2) << row << "," << col;
      EXPECT_NEAR(got.blue(), want.blue(), 2) << row << "," << col;
    }
  // The colour range is fitted to the visible values: the largest one is the top colour.
  EXPECT_DOUBLE_EQ(v.display().high, *std::max_element(v.data().values.begin(), v.data().values.end()));
}

TEST(HeatmapView, ClickEmitsCell) {
  HeatmapView v;
  v.resize(500, 450);
  v.setData(tokens6());
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.plot()->replot();
  QSignalSpy clicked(&v, &HeatmapView::cellClicked);
  click(v.plot(), expectedCenter(v, 4, 2));
  ASSERT_EQ(clicked.size(), 1);
  EXPECT_EQ(clicked[0][0].toInt(), 4);
  EXPECT_EQ(clicked[0][1].toInt(), 2);
}

TEST(HeatmapView, LevelOfDetailOnLargeInput) {
  constexpr int n = 4096;
  HeatmapData d;
  d.rows = d.cols = n;
  d.values = causalPattern(n, 11);
  HeatmapView v;
  v.resize(700, 600);
  v.setData(std::move(d));
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.plot()->replot();
  const QRect r = v.plot()->axisRect()->rect();
  EXPECT_GT(v.displayedLevel(), 0);
  // Never more cells than ~the viewport's pixels.
  EXPECT_LE(v.displayedCells().width(), r.width() * 2);
  EXPECT_LE(v.displayedCells().height(), r.height() * 2);
  const int f = v.pyramid().level(v.displayedLevel()).factor;
  EXPECT_EQ(v.aggregationText(), QString("aggregated %1×%1 (max)").arg(f));
  // Zoomed to a 100-cell window: full resolution, no badge.
  v.setVisibleWindow(1000, 1100, 2000, 2100);
  EXPECT_EQ(v.displayedLevel(), 0);
  EXPECT_TRUE(v.aggregationText().isEmpty());
  EXPECT_LE(v.displayedCells().width(), 102);
  // Panning stays inside the matrix.
  v.panBy(1e6, 1e6);
  EXPECT_NEAR(v.plot()->xAxis->range().upper, n - 0.5, 1e-9);
  EXPECT_NEAR(v.plot()->yAxis->range().upper, n - 0.5, 1e-9);
  // Sidecar numbers of the whole 4096² view are the 4×4 max-pooled blocks (≤ 1024² values).
  v.resetView();
  const QJsonObject m = v.plottedNumbers()["matrix"].toObject();
  EXPECT_EQ(m["block"].toInt(), 4);
  EXPECT_EQ(m["rows"].toInt(), 1024);
  const PyramidLevel direct = poolDirect(v.pyramid().level(0).values, n, n, 4, PoolMode::Max);
  const QJsonArray values = m["values"].toArray();
  ASSERT_EQ(values.size(), 1024 * 1024);
  for (int k : {0, 1024 * 3 + 2, 1024 * 700 + 699, 1024 * 1024 - 1}) EXPECT_FLOAT_EQ(static_cast<float>(values[k].toDouble()), direct.values[static_cast<std::size_t>(k)]) << k;
  EXPECT_TRUE(values[1024 * 3 + 900].isNull());  // a block entirely above the diagonal
  v.setPoolMode(PoolMode::Mean);
  v.resetView();
  EXPECT_TRUE(v.aggregationText().endsWith("(mean)"));
}

TEST(HeatmapView, KeyboardPansAndZooms) {
  HeatmapData d;
  d.rows = d.cols = 200;
  d.values = causalPattern(200, 5);
  HeatmapView v;
  v.resize(500, 450);
  v.setData(std::move(d));
  v.zoomBy(4.0);
  const double before = v.plot()->xAxis->range().center();
  QKeyEvent right(QEvent::KeyPress, Qt::Key_Right, Qt::NoModifier);
  QApplication::sendEvent(&v, &right);
  EXPECT_GT(v.plot()->xAxis->range().center(), before);
  EXPECT_NEAR(v.plot()->xAxis->range().size(), 50.0, 1e-6);
  QKeyEvent home(QEvent::KeyPress, Qt::Key_Home, Qt::NoModifier);
  QApplication::sendEvent(&v, &home);
  EXPECT_NEAR(v.plot()->xAxis->range().size(), 200.0, 1e-9);
}

TEST(HeatmapView, OptionsChangeDisplayValuesNotData) {
  HeatmapView v;
  v.setData(tokens6());
  HeatmapOptions o;
  o.excludeFirstK = 1;
  o.rowNormalise = true;
  v.setOptions(o);
  EXPECT_TRUE(std::isnan(v.displayValue(3, 0)));
  float rowMax = 0;
  for (int c = 1; c <= 3; ++c) rowMax = std::max(rowMax, v.data().values[3 * 6 + c]);
  EXPECT_NEAR(v.displayValue(3, 2), v.data().values[3 * 6 + 2] / rowMax, 1e-6);
  EXPECT_NEAR(v.rawValue(3, 2), v.data().values[3 * 6 + 2], 1e-9);
}

TEST(HeatmapView, BadDataThrowsAndKeepsOldData) {
  HeatmapView v;
  v.setData(tokens6());
  HeatmapData bad = tokens6();
  bad.values.resize(5);
  EXPECT_THROW(v.setData(bad), mechscope::InputError);
  EXPECT_EQ(v.data().rows, 6);
}

TEST(HeatmapView, EmptyAndSingleCellDoNotCrash) {
  HeatmapView v;
  v.resize(400, 300);
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.setData(HeatmapData{});
  v.plot()->replot();
  EXPECT_TRUE(v.plottedNumbers().isEmpty());
  EXPECT_FALSE(v.cellAt(QPointF(200, 150)).valid());
  HeatmapData one;
  one.rows = one.cols = 1;
  one.values = {0.7f};
  v.setData(one);
  v.plot()->replot();
  QSignalSpy hovered(&v, &HeatmapView::cellHovered);
  sendMouse(v.plot(), QEvent::MouseMove, v.plot()->axisRect()->rect().center());
  ASSERT_EQ(hovered.size(), 1);
  EXPECT_FLOAT_EQ(hovered[0][2].toFloat(), 0.7f);
  v.zoomBy(10);
  v.panBy(5, 5);
  EXPECT_EQ(v.displayedLevel(), 0);
}

TEST(TokenTicker, LabelStepNeverOverlaps) {
  EXPECT_EQ(TokenTicker::stepFor(10, 500, 14), 1);
  EXPECT_EQ(TokenTicker::stepFor(100, 500, 14), 5);     // 2.8 positions per label → 5
  EXPECT_EQ(TokenTicker::stepFor(8192, 800, 14), 200);  // 143 → 200
  EXPECT_EQ(TokenTicker::stepFor(8192, 0, 14), 1);
}
