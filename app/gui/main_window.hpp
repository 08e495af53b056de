#pragma once
// MainWindow: docks and actions only; the document lives in Workspace, work in JobRunner.
#include <QMainWindow>
#include <QString>

namespace mechscope::gui {

/// The workbench's top-level window.
class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  /// Render the window into a PNG (for the screenshot test); true on success.
  bool saveScreenshot(const QString& path);
};

}  // namespace mechscope::gui
