#pragma once
// Interactive head patching: clean and corrupted prompts side by side, answer tokens from the vocabulary,
// a layer × head grid where clicking a head patches it (shift-click builds a set), the logit difference
// and top next-token probabilities updating after each click; ablation (zero/mean/uniform) from the same grid.
#include <QWidget>

#include <optional>

#include "app/gui/head_patching.hpp"
#include "app/gui/job_runner.hpp"
#include "app/gui/workspace.hpp"

class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QTableWidget;

namespace mechscope::views {
class ScoreGridView;
}

namespace mechscope::gui {

/// The interactive patching panel.
class PatchingPanel : public QWidget {
  Q_OBJECT
 public:
  /// A panel over `ws` whose work runs on `jobs`.
  PatchingPanel(Workspace* ws, JobRunner* jobs, QWidget* parent = nullptr);

  /// Sets the prompts and answer words (e.g. the planted IOI defaults).
  void setPrompts(const QString& clean, const QString& corrupt, const QString& answer, const QString& incorrect);
  /// Tokenizes both prompts and runs them (job); returns the job id or -1 with the error shown.
  int prepare();
  /// Patches/ablates `heads` with the panel's current mode (job); -1 when not prepared.
  int apply(const std::vector<Head>& heads);
  /// Runs the current mode on every head alone and fills the grid (job, normalised logit difference).
  int sweep();
  /// Mode setters (tests and keyboard).
  void setIntervention(Intervention i);
  void setSite(PatchSite s);
  void setDirection(PatchDirection d);
  /// The request the panel would send for `heads`.
  PatchRequest request(const std::vector<Head>& heads) const;

  /// The last outcome (empty before the first click).
  const std::optional<PatchOutcome>& lastOutcome() const { return m_last; }
  /// The grid.
  views::ScoreGridView* grid() const { return m_grid; }
  /// The logit-difference line.
  QString logitDiffText() const;
  /// The error line (empty when fine).
  QString errorText() const;

 signals:
  /// An outcome arrived.
  void outcomeChanged();

 private:
  void showError(const QString& message);
  void refreshPatching();
  void showOutcome(const PatchOutcome& o, const std::vector<Head>& heads);
  Workspace* m_ws;
  JobRunner* m_jobs;
  QLineEdit *m_clean = nullptr, *m_corrupt = nullptr, *m_answer = nullptr, *m_incorrect = nullptr;
  QComboBox *m_intervention = nullptr, *m_site = nullptr, *m_direction = nullptr;
  QPushButton *m_prepare = nullptr, *m_sweep = nullptr;
  QLabel *m_diff = nullptr, *m_error = nullptr, *m_tokens = nullptr;
  QTableWidget* m_top = nullptr;
  views::ScoreGridView* m_grid = nullptr;
  std::optional<PatchOutcome> m_last;
  int m_pendingApply = -1;
};

}  // namespace mechscope::gui
