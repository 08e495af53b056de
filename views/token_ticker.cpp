#include "views/token_ticker.hpp"

#include <cmath>

#include "views/plot_theme.hpp"

namespace mechscope::views {

int TokenTicker::stepFor(double visibleCells, double axisPixels, double labelPixels) {
  if (axisPixels <= 0 || visibleCells <= 0) return 1;
  const double raw = visibleCells * labelPixels / axisPixels;
  if (raw <= 1.0) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * magnitude >= raw) return static_cast<int>(m * magnitude);
  return static_cast<int>(10 * magnitude);
}

double TokenTicker::getTickStep(const QCPRange&) { return m_step; }

int TokenTicker::getSubTickCount(double) { return 0; }

QString TokenTicker::getTickLabel(double tick, const QLocale&, QChar, int) {
  const int i = static_cast<int>(std::lround(tick));
  if (i >= 0 && i < m_labels.size()) return tokenLabel(m_labels[i]);
  return QString::number(i + m_offset);
}

QVector<double> TokenTicker::createTickVector(double, const QCPRange& range) {
  QVector<double> ticks;
  const int n = m_labels.isEmpty() ? m_count : static_cast<int>(m_labels.size());
  const int first = std::max(0, static_cast<int>(std::ceil(range.lower / m_step)) * m_step);
  const int last = std::min(n - 1, static_cast<int>(std::floor(range.upper)));
  for (int i = first; i <= last; i += m_step) ticks.push_back(i);
  return ticks;
}

}  // namespace mechscope::views
