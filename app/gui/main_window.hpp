#pragma once
// MainWindow: docks and actions only; the document lives in Workspace, work in JobRunner, state in Settings.
#include <QMainWindow>
#include <QString>

#include <functional>
#include <vector>

#include "app/gui/settings.hpp"
#include "views/figure_export.hpp"

class QAction;
class QMenu;
class QTabWidget;
class QCustomPlot;

namespace mechscope::gui {

class AnalysisPanel;
class AttentionExplorer;
class CacheViewer;
class JobRunner;
class ModelPanel;
class PatchingPanel;
class TaskPanel;
class Workspace;

/// A plot to export: the QCustomPlot, its numbers and provenance.
struct FigureSource {
  QCustomPlot* plot = nullptr;
  QJsonObject numbers;
  views::FigureProvenance provenance;
};

/// The workbench's top-level window.
class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  /// A window; `settingsPath` empty = the user's QSettings, else an INI file (tests).
  explicit MainWindow(QWidget* parent = nullptr, const QString& settingsPath = QString());
  ~MainWindow() override;

  /// Render the window into a PNG (for the screenshot test); true on success.
  bool saveScreenshot(const QString& path);
  /// Opens a model folder (job); errors are shown as messages.
  void openModel(const QString& folder);
  /// Opens the embedded planted model (job).
  void openEmbeddedModel();
  /// Runs the attention patterns of the current prompt (asks first when the estimate exceeds the limit).
  void runAttention();
  /// Saves every result of the workspace to an HDF5 file; false + message on failure.
  bool saveResults(const QString& path);
  /// Reopens results from an HDF5 file into the analysis panels; false + message on failure.
  bool openResults(const QString& path);
  /// Opens an attention cache (HDF5) in its own window, reading only the shown head (File → Open attention cache).
  CacheViewer* openCache(const QString& path);
  /// Reads prompts (one per line) as the workspace's batch and selects the first; false (message shown) on error.
  bool loadPromptBatch(const QString& path);
  /// Exports the current tab's main plot (.png/.svg/.pdf + sidecar); false + message on failure.
  bool exportCurrentFigure(const QString& path);
  /// The figure the Export action would write.
  FigureSource currentFigure() const;
  /// Switches the light/dark palette.
  void setDarkTheme(bool dark);
  /// Shows a tab: 0 attention, 1 patching, 2 analyses.
  void showTab(int index);
  /// Whether a message box asks before caching inputs above the memory limit (off in tests/screenshots).
  void setConfirmLargeInputs(bool on) { m_confirmLarge = on; }

  Workspace* workspace() const { return m_ws; }
  JobRunner* jobs() const { return m_jobs; }
  ModelPanel* modelPanel() const { return m_model; }
  AttentionExplorer* explorer() const { return m_explorer; }
  PatchingPanel* patchingPanel() const { return m_patching; }
  const std::vector<AnalysisPanel*>& analysisPanels() const { return m_panels; }
  AnalysisPanel* analysisPanel(const QString& name) const;
  const Settings& settings() const { return m_settings; }
  /// The last error shown to the user (tests).
  QString lastError() const { return m_lastError; }
  /// The About text (versions of mechscope, Qt, LibTorch, HDF5).
  static QString aboutText();

 signals:
  /// A message was shown to the user.
  void errorShown(const QString& message);

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void buildActions();
  void rebuildRecentMenu();
  void showError(const QString& title, const QString& message);
  void saveSettings();
  void stepLayer(int delta);
  void stepHead(int delta);

  Settings m_settings;
  QString m_settingsPath;
  Workspace* m_ws = nullptr;
  JobRunner* m_jobs = nullptr;
  ModelPanel* m_model = nullptr;
  AttentionExplorer* m_explorer = nullptr;
  PatchingPanel* m_patching = nullptr;
  TaskPanel* m_tasks = nullptr;
  QTabWidget* m_tabs = nullptr;
  QTabWidget* m_analysisTabs = nullptr;
  std::vector<AnalysisPanel*> m_panels;
  QMenu* m_recent = nullptr;
  QAction* m_darkAction = nullptr;
  QString m_lastError;
  bool m_confirmLarge = true;
  bool m_followBatch = false;  ///< attention was run: stepping the batch re-runs it
};

}  // namespace mechscope::gui
