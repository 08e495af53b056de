#pragma once
// TaskPanel: the status bar's view of the job runner — current job, progress bar, Cancel.
#include <QWidget>

#include "app/gui/job_runner.hpp"

class QLabel;
class QProgressBar;
class QToolButton;

namespace mechscope::gui {

/// Progress and Cancel of the compute lane, for the status bar.
class TaskPanel : public QWidget {
  Q_OBJECT
 public:
  /// A panel following `jobs`.
  explicit TaskPanel(JobRunner* jobs, QWidget* parent = nullptr);
  /// The text shown (tests).
  QString text() const;

 private:
  JobRunner* m_jobs;
  QLabel* m_label = nullptr;
  QProgressBar* m_bar = nullptr;
  QToolButton* m_cancel = nullptr;
  int m_current = -1;
};

}  // namespace mechscope::gui
