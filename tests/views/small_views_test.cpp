#include <gtest/gtest.h>
#include <qcustomplot.h>

#include <QSignalSpy>
#include <QTest>

#include "core/common/errors.hpp"
#include "views/color_scale.hpp"
#include "views/head_grid_view.hpp"
#include "views/line_plot_view.hpp"
#include "views/plot_theme.hpp"
#include "views/token_strip_view.hpp"
#include "views_test_support.hpp"

using namespace mechscope::views;
using mechscope::views::test::click;
using mechscope::views::test::sendMouse;

TEST(TokenStripView, ChipsTooltipsAndClicks) {
  TokenStripView v;
  v.resize(400, 100);
  v.setTokens({"<s>", "Hello", " world", "\n", "!"}, {1, 15043, 3186, 13, 29991}, {{0, 0}, {0, 5}, {5, 11}, {11, 12}, {12, 13}});
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  ASSERT_EQ(v.tokenCount(), 5);
  for (int i = 1; i < 5; ++i) EXPECT_LT(v.chipRect(i - 1).right(), v.chipRect(i).left()) << "chips in order";
  QSignalSpy selected(&v, &TokenStripView::tokenSelected);
  click(&v, v.chipRect(2).center());
  ASSERT_EQ(selected.size(), 1);
  EXPECT_EQ(selected[0][0].toInt(), 2);
  EXPECT_EQ(v.selectedToken(), 2);
  EXPECT_EQ(v.tokenTooltip(2), "#2 '␣world'\nid 3186\nchars [5, 11)");
  EXPECT_EQ(v.tokenTooltip(3), "#3 '↵'\nid 13\nchars [11, 12)");
  EXPECT_EQ(v.tokenAt(QPoint(-5, -5)), -1);
  // Narrow widths wrap to more lines.
  EXPECT_GT(v.heightForWidth(60), v.heightForWidth(1000));
  EXPECT_THROW(v.setTokens({"a", "b"}, {1}, {}), mechscope::InputError);
}

TEST(TokenLabel, WhitespaceVisibleAndElided) {
  EXPECT_EQ(tokenLabel(" the"), "␣the");
  EXPECT_EQ(tokenLabel("a\tb\n"), "a⇥b↵");
  EXPECT_EQ(tokenLabel(""), "∅");
  EXPECT_EQ(tokenLabel("abcdefghijklmnopqrstuvwxyz", 6), "abcde…");
}

TEST(HeadGridView, ThumbnailsAndClicks) {
  constexpr int heads = 4, n = 8;
  std::vector<float> all;
  for (int h = 0; h < heads; ++h) {
    const auto p = test::causalPattern(n, 100u + static_cast<unsigned>(h));
    all.insert(all.end(), p.begin(), p.end());
  }
  HeadGridView v;
  v.setTheme(PlotTheme::light());
  v.resize(500, 400);
  v.setHeads(3, heads, n, n, all);
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  ASSERT_EQ(v.headCount(), heads);
  // Small inputs are not pooled: one thumbnail pixel per cell, coloured on the head's own [0, max] range.
  const QImage t = v.thumbnail(2);
  ASSERT_EQ(t.size(), QSize(n, n));
  float maxV = 0;
  for (int i = 0; i < n * n; ++i) maxV = std::max(maxV, all[static_cast<std::size_t>(2 * n * n + i)]);
  ColorScale s(ColorScale::Kind::Sequential);
  s.setRange(0, maxV);
  s.setMaskColor(PlotTheme::light().mask);
  EXPECT_EQ(t.pixel(1, 5), s.mapRgb(all[static_cast<std::size_t>(2 * n * n + 5 * n + 1)]));
  EXPECT_EQ(t.pixel(6, 2), PlotTheme::light().mask.rgb());  // masked upper triangle
  QSignalSpy clicked(&v, &HeadGridView::headClicked);
  click(&v, v.thumbnailRect(3).center());
  ASSERT_EQ(clicked.size(), 1);
  EXPECT_EQ(clicked[0][0].toInt(), 3);
  EXPECT_EQ(clicked[0][1].toInt(), 3);
  EXPECT_EQ(v.selectedHead(), 3);
  EXPECT_THROW(v.setHeads(0, 2, 3, 3, std::vector<float>(17), true), mechscope::InputError);
}

TEST(HeadGridView, LongInputsArePooled) {
  constexpr int n = 1000;
  const auto p = test::causalPattern(n, 1);
  HeadGridView v;
  v.setThumbnailSize(96);
  v.setHeads(0, 1, n, n, p);
  EXPECT_LE(v.thumbnail(0).width(), 96);
  EXPECT_EQ(v.thumbnail(0).width(), (n + 15) / 16);
}

TEST(LinePlotView, IndexUnderMouseAndValidation) {
  LinePlotView v;
  v.resize(600, 300);
  LinePlotData d;
  d.xLabels = {"a", "b", "c", "d", "e"};
  d.series = {{"alpha", {0.1, 0.4, 0.2, 0.8, 0.3}, {}, {3}, {}}};
  v.setData(d);
  v.show();
  ASSERT_TRUE(QTest::qWaitForWindowExposed(&v));
  v.plot()->replot();
  const QRect r = v.plot()->axisRect()->rect();
  QSignalSpy hovered(&v, &LinePlotView::pointHovered);
  // x range is [-0.5, 4.5]: position 2 sits in the middle.
  sendMouse(v.plot(), QEvent::MouseMove, QPointF(r.left() + r.width() * 0.5, r.center().y()));
  ASSERT_EQ(hovered.size(), 1);
  EXPECT_EQ(hovered[0][0].toInt(), 2);
  EXPECT_EQ(v.indexAt(QPointF(r.left() + r.width() * 0.1 + 1, r.center().y())), 0);
  LinePlotData bad = d;
  bad.series[0].x = {1, 2};
  EXPECT_THROW(v.setData(bad), mechscope::InputError);
  bad = d;
  bad.series[0].marked = {9};
  EXPECT_THROW(v.setData(bad), mechscope::InputError);
}
