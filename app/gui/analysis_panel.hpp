#pragma once
// One analysis panel: parameters form, Run / Cancel with a progress bar, results as layer × head score
// grids and per-token line plots; clicking a head opens its attention map (Workspace::requestHead).
#include <QJsonObject>
#include <QWidget>

#include <vector>

#include "app/gui/analysis_adapters.hpp"
#include "app/gui/job_runner.hpp"
#include "app/gui/workspace.hpp"

class QFormLayout;
class QLabel;
class QProgressBar;
class QPushButton;
class QVBoxLayout;

namespace mechscope::views {
class CircuitGraphView;
class LinePlotView;
class ScoreGridView;
}  // namespace mechscope::views

namespace mechscope::gui {

/// The panel of one analysis.
class AnalysisPanel : public QWidget {
  Q_OBJECT
 public:
  /// A panel for `adapter` over `ws`, running on `jobs`.
  AnalysisPanel(AnalysisAdapter adapter, Workspace* ws, JobRunner* jobs, QWidget* parent = nullptr);

  /// The adapter.
  const AnalysisAdapter& adapter() const { return m_adapter; }
  /// The form's values.
  QJsonObject params() const;
  /// Sets one form value (tests).
  void setParam(const QString& key, const QVariant& value);
  /// Starts a run; returns the job id, -1 when unavailable or the input is missing (error shown).
  int run();
  /// Cancels the running job.
  void cancel();
  /// Shows a result (a new one, or one reopened from a file).
  void showResult(const AnalysisResult& result);
  /// The result shown (empty analysis name when none).
  const AnalysisResult& result() const { return m_result; }
  /// Score grid views of the result shown.
  const std::vector<views::ScoreGridView*>& gridViews() const { return m_grids; }
  /// Line plot views of the result shown.
  const std::vector<views::LinePlotView*>& lineViews() const { return m_lines; }
  /// Circuit graph views of the result shown.
  const std::vector<views::CircuitGraphView*>& graphViews() const { return m_graphs; }
  /// Runs the adapter's edge action on edge `edge` of the first graph shown (what clicking it does);
  /// returns the job id, -1 when the adapter has none or there is no such edge.
  int patchEdge(int edge);
  /// The status line.
  QString statusText() const;
  /// The progress bar (tests).
  QProgressBar* progressBar() const { return m_progress; }

 private:
  void clearResults();
  AnalysisAdapter m_adapter;
  Workspace* m_ws;
  JobRunner* m_jobs;
  QFormLayout* m_form = nullptr;
  std::vector<std::pair<QString, QWidget*>> m_editors;
  QPushButton *m_run = nullptr, *m_cancel = nullptr;
  QProgressBar* m_progress = nullptr;
  QLabel* m_status = nullptr;
  QVBoxLayout* m_results = nullptr;
  std::vector<views::ScoreGridView*> m_grids;
  std::vector<views::LinePlotView*> m_lines;
  std::vector<views::CircuitGraphView*> m_graphs;
  AnalysisResult m_result;
  int m_job = -1;
  int m_edgeJob = -1;  // the last edge action's job
};

}  // namespace mechscope::gui
