#pragma once
// Colour maps for heatmaps and score grids: a perceptual sequential map (dark indigo → yellow) and a
// diverging map centred at 0 (red = negative, white = 0, blue = positive). Anchors are defined here and
// interpolated in Oklab so equal steps in value look like equal steps in colour.
#include <QColor>
#include <QRgb>

#include <array>
#include <cstddef>
#include <utility>

class QCPColorGradient;

namespace mechscope::views {

/// Maps values to colours: sequential or diverging (0 is always white), optional log scale, clipping.
class ColorScale {
 public:
  /// Sequential for magnitudes (attention, scores ≥ 0); Diverging for signed scores.
  enum class Kind { Sequential, Diverging };

  /// A scale of `kind` over [0, 1] (sequential) or [-1, 1] (diverging).
  explicit ColorScale(Kind kind = Kind::Sequential);

  /// Diverging when `signedValues`, sequential otherwise.
  static ColorScale forData(bool signedValues);

  /// The value range mapped onto the colours; values outside are clipped to the end colours.
  /// Diverging scales map [low, 0] and [0, high] separately so 0 stays white even when |low| != high.
  void setRange(double low, double high);
  /// Logarithmic mapping (sequential: log10 between low > 0 and high; diverging: symmetric log).
  void setLogScale(bool on);
  /// Colour of masked / excluded / missing (NaN) cells.
  void setMaskColor(const QColor& color);

  /// Which map this is.
  Kind kind() const { return m_kind; }
  /// Lower end of the range.
  double low() const { return m_low; }
  /// Upper end of the range.
  double high() const { return m_high; }
  /// Whether the mapping is logarithmic.
  bool logScale() const { return m_log; }
  /// Colour of NaN (masked) values.
  QColor maskColor() const { return QColor::fromRgba(m_mask); }

  /// Position of `value` on the colour axis in [0, 1] (clipped); NaN for NaN.
  double position(double value) const;
  /// The colour of `value` (mask colour for NaN).
  QColor map(double value) const;
  /// The colour of `value` as a packed RGB (fast path for images).
  QRgb mapRgb(double value) const;
  /// Colours `n` values into `out` (the image fast path; same colours as mapRgb up to LUT rounding).
  void mapRow(const float* values, QRgb* out, int n) const;
  /// The colour at position `t` ∈ [0, 1] of the map, ignoring range and log scale.
  QColor colorAt(double t) const;
  /// The same map as a QCustomPlot gradient (for QCPColorScale colour bars).
  QCPColorGradient gradient() const;

  /// A neutral colour for masked cells that reads as "no data" on light or dark backgrounds.
  static QColor neutralMaskColor(bool darkTheme);
  /// A range fitted to `n` values (NaN skipped): sequential [min, max] (log: lower = smallest positive,
  /// at least max·1e-6); diverging [-m, m] with m = max |v|. Returns {0, 1} when nothing is finite.
  static std::pair<double, double> autoRange(const float* values, std::size_t n, Kind kind, bool logScale);
  /// Same for double values.
  static std::pair<double, double> autoRange(const double* values, std::size_t n, Kind kind, bool logScale);

 private:
  static constexpr int kLutSize = 1024;
  Kind m_kind;
  double m_low = 0.0, m_high = 1.0;
  bool m_log = false;
  QRgb m_mask;
  std::array<QRgb, kLutSize> m_lut{};
};

}  // namespace mechscope::views
