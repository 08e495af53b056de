#include <gtest/gtest.h>
#include <qcustomplot.h>

#include <QSignalSpy>
#include <QTest>

#include "core/common/errors.hpp"
#include "views/score_grid_view.hpp"
#include "views_test_support.hpp"

using namespace mechscope::views;
using mechscope::views::test::click;
using mechscope::views::test::sendMouse;

namespace {

constexpr int kLayers = 4, kHeads = 6;

std::vector<double> scores() {
  std::vector<double> s(kLayers * kHeads);
  for (int l = 0; l < kLayers; ++l)
    for (int h = 0; h < kHeads; ++h) s[static_cast<std::size_t>(l * kHeads + h)] = (l - 1.5) * 0.3 + h * 0.05;
  return s;
}

QPointF expectedCenter(const ScoreGridView& v, int layer, int head) {
  const QRect r = v.plot()->axisRect()->rect();
  return {r.left() + (head + 0.5) / kHeads * r.width(), r.top() + (layer + 0.5) / kLayers * r.height()};
}

struct Shown {
  ScoreGridView v;
  Shown() {
    v.resize(600, 420);
    v.setScores(kLayers, kHeads, scores(), "patching effect", true);
    v.show();
    EXPECT_TRUE(QTest::qWaitForWindowExposed(&v));
    v.plot()->replot();
  }
};

}  // namespace

TEST(ScoreGridView, ClickEmitsLayerAndHead) {
  Shown s;
  QSignalSpy clicked(&s.v, &ScoreGridView::headClicked);
  click(s.v.plot(), expectedCenter(s.v, 2, 3));
  ASSERT_EQ(clicked.size(), 1);
  EXPECT_EQ(clicked[0][0].toInt(), 2);
  EXPECT_EQ(clicked[0][1].toInt(), 3);
  EXPECT_EQ(clicked[0][2].value<Qt::KeyboardModifiers>(), Qt::NoModifier);
  EXPECT_EQ(s.v.selectedHeads(), (std::vector<HeadRef>{{2, 3}}));
  click(s.v.plot(), expectedCenter(s.v, 0, 5));
  EXPECT_EQ(clicked.size(), 2);
  EXPECT_EQ(clicked[1][0].toInt(), 0);
  EXPECT_EQ(clicked[1][1].toInt(), 5);
  EXPECT_EQ(s.v.selectedHeads(), (std::vector<HeadRef>{{0, 5}}));
}

TEST(ScoreGridView, ShiftClickBuildsASet) {
  Shown s;
  QSignalSpy clicked(&s.v, &ScoreGridView::headClicked);
  click(s.v.plot(), expectedCenter(s.v, 2, 3));
  click(s.v.plot(), expectedCenter(s.v, 1, 5), Qt::ShiftModifier);
  click(s.v.plot(), expectedCenter(s.v, 3, 0), Qt::ShiftModifier);
  EXPECT_EQ(s.v.selectedHeads(), (std::vector<HeadRef>{{1, 5}, {2, 3}, {3, 0}}));
  EXPECT_EQ(clicked[1][2].value<Qt::KeyboardModifiers>(), Qt::ShiftModifier);
  click(s.v.plot(), expectedCenter(s.v, 2, 3), Qt::ShiftModifier);  // toggles off
  EXPECT_EQ(s.v.selectedHeads(), (std::vector<HeadRef>{{1, 5}, {3, 0}}));
  click(s.v.plot(), expectedCenter(s.v, 0, 0));  // plain click starts over
  EXPECT_EQ(s.v.selectedHeads(), (std::vector<HeadRef>{{0, 0}}));
}

TEST(ScoreGridView, HoverAndColours) {
  Shown s;
  QSignalSpy hovered(&s.v, &ScoreGridView::headHovered);
  sendMouse(s.v.plot(), QEvent::MouseMove, expectedCenter(s.v, 3, 4));
  ASSERT_EQ(hovered.size(), 1);
  EXPECT_EQ(hovered[0][0].toInt(), 3);
  EXPECT_EQ(hovered[0][1].toInt(), 4);
  EXPECT_NEAR(hovered[0][2].toDouble(), 1.5 * 0.3 + 4 * 0.05, 1e-12);
  // Signed scores: diverging, symmetric, blue = positive.
  EXPECT_EQ(s.v.colorScale().kind(), ColorScale::Kind::Diverging);
  EXPECT_NEAR(s.v.colorScale().high(), 0.45 + 0.25, 1e-12);
  EXPECT_NEAR(s.v.colorScale().low(), -(0.45 + 0.25), 1e-12);
  const QColor pos = s.v.colorScale().map(s.v.score(3, 5)), neg = s.v.colorScale().map(s.v.score(0, 0));
  EXPECT_GT(pos.blue(), pos.red());
  EXPECT_GT(neg.red(), neg.blue());
  EXPECT_EQ(s.v.headAt(QPointF(1, 1)), (HeadRef{-1, -1}));
}

TEST(ScoreGridView, WrongSizeThrows) {
  ScoreGridView v;
  EXPECT_THROW(v.setScores(2, 3, std::vector<double>(5), "x", false), mechscope::InputError);
}
