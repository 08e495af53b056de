#include <gtest/gtest.h>
#include <qcustomplot.h>

#include <cmath>
#include <limits>

#include "views/color_scale.hpp"

using mechscope::views::ColorScale;

namespace {
// Perceptual lightness (Oklab L) of an sRGB colour.
double oklabL(const QColor& c) {
  auto lin = [](double v) { return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4); };
  const double r = lin(c.redF()), g = lin(c.greenF()), b = lin(c.blueF());
  const double l = std::cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  const double m = std::cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  const double s = std::cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  return 0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s;
}
}  // namespace

TEST(ColorScale, DivergingZeroIsWhiteAndSignPicksHue) {
  ColorScale s(ColorScale::Kind::Diverging);
  s.setRange(-2.0, 2.0);
  EXPECT_EQ(s.map(0.0), QColor(255, 255, 255));
  EXPECT_DOUBLE_EQ(s.position(0.0), 0.5);
  EXPECT_DOUBLE_EQ(s.position(1.0), 0.75);
  EXPECT_DOUBLE_EQ(s.position(-1.0), 0.25);
  EXPECT_DOUBLE_EQ(s.position(5.0), 1.0);  // clipped
  EXPECT_DOUBLE_EQ(s.position(-5.0), 0.0);
  for (double v : {0.2, 1.0, 2.0}) {
    const QColor pos = s.map(v), neg = s.map(-v);
    EXPECT_GT(pos.blue(), pos.red()) << "positive " << v << " must be blue";
    EXPECT_GT(neg.red(), neg.blue()) << "negative " << -v << " must be red";
  }
  // Further from 0 = darker on both sides.
  EXPECT_LT(oklabL(s.map(2.0)), oklabL(s.map(1.0)));
  EXPECT_LT(oklabL(s.map(1.0)), oklabL(s.map(0.2)));
  EXPECT_LT(oklabL(s.map(-2.0)), oklabL(s.map(-1.0)));
  EXPECT_NEAR(oklabL(s.map(1.3)), oklabL(s.map(-1.3)), 0.03);  // both arms equally light
  // End anchors.
  EXPECT_EQ(s.map(2.0), QColor(0x0c, 0x34, 0x70));
  EXPECT_EQ(s.map(-2.0), QColor(0x6b, 0x0f, 0x1e));
}

TEST(ColorScale, DivergingAsymmetricRangeKeepsZeroWhite) {
  ColorScale s(ColorScale::Kind::Diverging);
  s.setRange(-1.0, 4.0);
  EXPECT_EQ(s.map(0.0), QColor(255, 255, 255));
  EXPECT_DOUBLE_EQ(s.position(2.0), 0.75);
  EXPECT_DOUBLE_EQ(s.position(-0.5), 0.25);
}

TEST(ColorScale, SequentialLinearNumbers) {
  ColorScale s(ColorScale::Kind::Sequential);
  s.setRange(0.0, 2.0);
  EXPECT_DOUBLE_EQ(s.position(0.5), 0.25);
  EXPECT_DOUBLE_EQ(s.position(-1.0), 0.0);
  EXPECT_DOUBLE_EQ(s.position(3.0), 1.0);
  EXPECT_EQ(s.map(0.0), QColor(0x2a, 0x0f, 0x4e));
  EXPECT_EQ(s.map(2.0), QColor(0xf5, 0xe7, 0x4a));
  EXPECT_EQ(s.map(1.0), QColor(0x21, 0x90, 0x8c));  // middle anchor
  // Perceptual: Oklab lightness rises monotonically and about evenly (0.25 → 0.91).
  double last = oklabL(s.colorAt(0.0));
  EXPECT_NEAR(last, 0.253, 0.005);
  for (int i = 1; i <= 40; ++i) {
    const double l = oklabL(s.colorAt(i / 40.0));
    EXPECT_GT(l - last, 0.008) << "step " << i;
    EXPECT_LT(l - last, 0.030) << "step " << i;
    last = l;
  }
  EXPECT_NEAR(last, 0.913, 0.005);
}

TEST(ColorScale, LogScaleAndNaN) {
  ColorScale s(ColorScale::Kind::Sequential);
  s.setRange(1e-3, 1.0);
  s.setLogScale(true);
  EXPECT_NEAR(s.position(1e-2), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.position(1e-1), 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(s.position(0.0), 0.0);
  EXPECT_TRUE(std::isnan(s.position(std::numeric_limits<double>::quiet_NaN())));
  s.setMaskColor(QColor(1, 2, 3));
  EXPECT_EQ(s.map(std::numeric_limits<double>::quiet_NaN()), QColor(1, 2, 3));
}

TEST(ColorScale, AutoRange) {
  const float v[] = {0.5f, -3.0f, NAN, 2.0f, 1e-4f};
  auto [lo, hi] = ColorScale::autoRange(v, 5, ColorScale::Kind::Sequential, false);
  EXPECT_DOUBLE_EQ(lo, -3.0);
  EXPECT_DOUBLE_EQ(hi, 2.0);
  std::tie(lo, hi) = ColorScale::autoRange(v, 5, ColorScale::Kind::Diverging, false);
  EXPECT_DOUBLE_EQ(lo, -3.0);
  EXPECT_DOUBLE_EQ(hi, 3.0);
  std::tie(lo, hi) = ColorScale::autoRange(v, 5, ColorScale::Kind::Sequential, true);
  EXPECT_NEAR(lo, 1e-4, 1e-9);
  EXPECT_DOUBLE_EQ(hi, 2.0);
}

TEST(ColorScale, GradientMatchesMap) {
  for (auto kind : {ColorScale::Kind::Sequential, ColorScale::Kind::Diverging}) {
    ColorScale s(kind);
    s.setRange(0.0, 1.0);
    QCPColorGradient g = s.gradient();
    for (double t : {0.0, 0.1, 0.37, 0.5, 0.81, 1.0}) {
      const QColor a = QColor::fromRgb(g.color(t, QCPRange(0, 1)));
      const QColor b = s.colorAt(t);
      EXPECT_NEAR(a.red(), b.red(), 4) << t;
      EXPECT_NEAR(a.green(), b.green(), 4) << t;
      EXPECT_NEAR(a.blue(), b.blue(), 4) << t;
    }
  }
}
