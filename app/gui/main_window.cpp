#include "app/gui/main_window.hpp"

#include <QApplication>
#include <QLabel>
#include <QPixmap>
#include <QStatusBar>

namespace mechscope::gui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle("mechscope");
  resize(1400, 900);
  auto* placeholder = new QLabel("mechscope — the attention explorer and analysis panels are being built.", this);
  placeholder->setAlignment(Qt::AlignCenter);
  setCentralWidget(placeholder);
  statusBar()->showMessage("Ready");
}

bool MainWindow::saveScreenshot(const QString& path) {
  QApplication::processEvents();  // only here, outside any work: let the first layout happen
  return grab().save(path, "PNG");
}

}  // namespace mechscope::gui
