#include "views/color_scale.hpp"

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace mechscope::views {
namespace {

struct Anchor {
  double t;
  unsigned rgb;
};

// Our own anchors: a monotonically brightening indigo → teal → green → yellow path (sequential) and
// red → white → blue (diverging; blue = positive as the project's convention for signed scores).
constexpr Anchor kSequential[] = {{0.000, 0x2a0f4e}, {0.125, 0x3b2a7a}, {0.250, 0x34528f},
                                  {0.375, 0x2b718f}, {0.500, 0x21908c}, {0.625, 0x2fae7b},
                                  {0.750, 0x62c95c}, {0.875, 0xb0dc39}, {1.000, 0xf5e74a}};
constexpr Anchor kDiverging[] = {{0.000, 0x6b0f1e}, {0.125, 0xa8262e}, {0.250, 0xd6604d},
                                 {0.375, 0xf2b09a}, {0.500, 0xffffff}, {0.625, 0xa3c9e6},
                                 {0.750, 0x5a9bd0}, {0.875, 0x2465a8}, {1.000, 0x0c3470}};

struct Lab {
  double l, a, b;
};

double toLinear(double c) { return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4); }
double toGamma(double c) {
  c = std::clamp(c, 0.0, 1.0);
  return c <= 0.0031308 ? 12.92 * c : 1.055 * std::pow(c, 1.0 / 2.4) - 0.055;
}

// sRGB ↔ Oklab (Björn Ottosson's published matrices).
Lab toOklab(unsigned rgb) {
  const double r = toLinear(((rgb >> 16) & 0xff) / 255.0), g = toLinear(((rgb >> 8) & 0xff) / 255.0),
               b = toLinear((rgb & 0xff) / 255.0);
  const double l = std::cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  const double m = std::cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  const double s = std::cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  return {0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s,
          1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s,
          0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s};
}

QRgb fromOklab(const Lab& c) {
  const double l = std::pow(c.l + 0.3963377774 * c.a + 0.2158037573 * c.b, 3.0);
  const double m = std::pow(c.l - 0.1055613458 * c.a - 0.0638541728 * c.b, 3.0);
  const double s = std::pow(c.l - 0.0894841775 * c.a - 1.2914855480 * c.b, 3.0);
  const double r = 4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s;
  const double g = -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s;
  const double b = -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s;
  auto q = [](double v) { return static_cast<int>(std::lround(toGamma(v) * 255.0)); };
  return qRgb(q(r), q(g), q(b));
}

template <std::size_t N>
QRgb interpolate(const Anchor (&anchors)[N], double t) {
  t = std::clamp(t, 0.0, 1.0);
  std::size_t i = 1;
  while (i < N - 1 && anchors[i].t < t) ++i;
  const Anchor& a = anchors[i - 1];
  const Anchor& b = anchors[i];
  const double u = (t - a.t) / (b.t - a.t);
  if (u <= 0.0) return qRgb((a.rgb >> 16) & 0xff, (a.rgb >> 8) & 0xff, a.rgb & 0xff);
  if (u >= 1.0) return qRgb((b.rgb >> 16) & 0xff, (b.rgb >> 8) & 0xff, b.rgb & 0xff);
  const Lab la = toOklab(a.rgb), lb = toOklab(b.rgb);
  return fromOklab({la.l + u * (lb.l - la.l), la.a + u * (lb.a - la.a), la.b + u * (lb.b - la.b)});
}

}  // namespace

ColorScale::ColorScale(Kind kind) : m_kind(kind), m_mask(neutralMaskColor(false).rgba()) {
  if (kind == Kind::Diverging) m_low = -1.0;
  for (int i = 0; i < kLutSize; ++i) {
    const double t = static_cast<double>(i) / (kLutSize - 1);
    m_lut[static_cast<std::size_t>(i)] = kind == Kind::Diverging ? interpolate(kDiverging, t) : interpolate(kSequential, t);
  }
}

ColorScale ColorScale::forData(bool signedValues) { return ColorScale(signedValues ? Kind::Diverging : Kind::Sequential); }

void ColorScale::setRange(double low, double high) {
  if (!std::isfinite(low) || !std::isfinite(high)) return;
  if (low > high) std::swap(low, high);
  m_low = low;
  m_high = high;
}

void ColorScale::setLogScale(bool on) { m_log = on; }

void ColorScale::setMaskColor(const QColor& color) { m_mask = color.rgba(); }

double ColorScale::position(double v) const {
  if (std::isnan(v)) return std::numeric_limits<double>::quiet_NaN();
  if (m_kind == Kind::Sequential) {
    if (m_log) {
      const double lo = m_low > 0.0 ? m_low : std::max(m_high * 1e-6, std::numeric_limits<double>::min());
      if (!(m_high > lo)) return v >= m_high ? 1.0 : 0.0;
      if (v <= lo) return 0.0;
      return std::clamp(std::log(v / lo) / std::log(m_high / lo), 0.0, 1.0);
    }
    if (!(m_high > m_low)) return v > m_high ? 1.0 : (v < m_low ? 0.0 : 0.5);
    return std::clamp((v - m_low) / (m_high - m_low), 0.0, 1.0);
  }
  // Diverging: two half-scales meeting at 0 so 0 is white whatever the range.
  if (v == 0.0) return 0.5;
  const double bound = v > 0.0 ? m_high : -m_low;
  if (!(bound > 0.0)) return v > 0.0 ? 1.0 : 0.0;
  double u = std::min(std::abs(v) / bound, 1.0);
  if (m_log) {
    constexpr double kLinear = 1e-3;  // symmetric log: linear below 0.1 % of the bound
    u = std::log1p(u / kLinear) / std::log1p(1.0 / kLinear);
  }
  return v > 0.0 ? 0.5 + 0.5 * u : 0.5 - 0.5 * u;
}

QRgb ColorScale::mapRgb(double v) const {
  const double t = position(v);
  if (std::isnan(t)) return m_mask;
  if (m_kind == Kind::Diverging && t == 0.5) return qRgb(255, 255, 255);
  return m_lut[static_cast<std::size_t>(std::lround(t * (kLutSize - 1)))];
}

void ColorScale::mapRow(const float* values, QRgb* out, int n) const {
  constexpr double top = kLutSize - 1;
  if (!m_log && m_kind == Kind::Sequential && m_high > m_low) {
    const double scale = top / (m_high - m_low);
    for (int i = 0; i < n; ++i) {
      const float v = values[i];
      if (std::isnan(v)) {
        out[i] = m_mask;
        continue;
      }
      const double f = std::clamp((v - m_low) * scale, 0.0, top);
      out[i] = m_lut[static_cast<std::size_t>(f + 0.5)];
    }
    return;
  }
  if (!m_log && m_kind == Kind::Diverging && m_high > 0.0 && m_low < 0.0) {
    const double up = 0.5 * top / m_high, down = 0.5 * top / -m_low;
    for (int i = 0; i < n; ++i) {
      const float v = values[i];
      if (std::isnan(v)) {
        out[i] = m_mask;
      } else if (v == 0.0f) {
        out[i] = qRgb(255, 255, 255);
      } else {
        const double f = std::clamp(0.5 * top + v * (v > 0.0f ? up : down), 0.0, top);
        out[i] = m_lut[static_cast<std::size_t>(f + 0.5)];
      }
    }
    return;
  }
  for (int i = 0; i < n; ++i) out[i] = mapRgb(values[i]);
}

QColor ColorScale::map(double v) const { return QColor::fromRgba(mapRgb(v)); }

QColor ColorScale::colorAt(double t) const {
  if (std::isnan(t)) return maskColor();
  return QColor(m_kind == Kind::Diverging ? interpolate(kDiverging, t) : interpolate(kSequential, t));
}

QCPColorGradient ColorScale::gradient() const {
  QCPColorGradient g;
  g.clearColorStops();
  constexpr int kStops = 48;
  for (int i = 0; i <= kStops; ++i) {
    const double t = static_cast<double>(i) / kStops;
    g.setColorStopAt(t, colorAt(t));
  }
  g.setColorInterpolation(QCPColorGradient::ciRGB);
  g.setLevelCount(512);
  g.setNanHandling(QCPColorGradient::nhNanColor);
  g.setNanColor(maskColor());
  return g;
}

QColor ColorScale::neutralMaskColor(bool darkTheme) { return darkTheme ? QColor(0x3a, 0x3d, 0x44) : QColor(0xe4, 0xe6, 0xea); }

namespace {
template <typename T>
std::pair<double, double> fitRange(const T* values, std::size_t n, ColorScale::Kind kind, bool logScale) {
  using Kind = ColorScale::Kind;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, minPositive = lo, maxAbs = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    if (v > 0.0) minPositive = std::min(minPositive, v);
    maxAbs = std::max(maxAbs, std::abs(v));
  }
  if (!(hi >= lo)) return {kind == Kind::Diverging ? -1.0 : 0.0, 1.0};
  if (kind == Kind::Diverging) {
    if (maxAbs == 0.0) maxAbs = 1.0;
    return {-maxAbs, maxAbs};
  }
  if (logScale) {
    if (!(hi > 0.0)) return {1e-6, 1.0};
    return {std::max(minPositive, hi * 1e-6), hi};
  }
  return {lo, hi};
}

}  // namespace

std::pair<double, double> ColorScale::autoRange(const float* values, std::size_t n, Kind kind, bool logScale) {
  return fitRange(values, n, kind, logScale);
}

std::pair<double, double> ColorScale::autoRange(const double* values, std::size_t n, Kind kind, bool logScale) {
  return fitRange(values, n, kind, logScale);
}

}  // namespace mechscope::views
