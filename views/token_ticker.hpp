#pragma once
// Axis ticks at integer positions labelled with token strings, thinned so labels never overlap.
#include <qcustomplot.h>

#include <QStringList>

namespace mechscope::views {

/// A ticker for token axes: ticks on integers only, one label per `step` positions.
class TokenTicker : public QCPAxisTicker {
 public:
  /// Labels for positions 0..n-1 (empty: the positions themselves are shown).
  void setLabels(const QStringList& labels) { m_labels = labels; }
  /// Number of positions on the axis (used when there are no labels).
  void setCount(int count) { m_count = count; }
  /// Added to positions shown as numbers (e.g. the query position of row 0).
  void setOffset(int offset) { m_offset = offset; }
  /// Shows every `step`-th position (≥ 1).
  void setStep(int step) { m_step = step < 1 ? 1 : step; }
  /// The current step.
  int step() const { return m_step; }
  /// A 1-2-5 step so labels `labelPixels` apart fit on an axis of `axisPixels` showing `visibleCells`.
  static int stepFor(double visibleCells, double axisPixels, double labelPixels);

 protected:
  double getTickStep(const QCPRange& range) override;
  int getSubTickCount(double tickStep) override;
  QString getTickLabel(double tick, const QLocale& locale, QChar formatChar, int precision) override;
  QVector<double> createTickVector(double tickStep, const QCPRange& range) override;

 private:
  QStringList m_labels;
  int m_count = 0;
  int m_step = 1;
  int m_offset = 0;
};

}  // namespace mechscope::views
