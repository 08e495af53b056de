#pragma once
// Settings: one typed struct over QSettings (recent models, device/dtype, theme, export DPI, window layout).
#include <QByteArray>
#include <QSettings>
#include <QString>
#include <QStringList>

namespace mechscope::gui {

/// Everything the workbench remembers between sessions.
struct Settings {
  QStringList recentModels;       ///< most recent first, at most kMaxRecent
  QString device = "cpu";         ///< "cpu", "cuda", "cuda:N"
  QString dtype = "fp32";         ///< "fp32", "bf16", "fp16"
  bool darkTheme = false;         ///< dark palette
  double exportDpi = 200.0;       ///< PNG export resolution
  QString lastPrompt;             ///< prompt editor text
  QString lastExportDir;          ///< where the export dialog opens
  qint64 memoryWarnBytes = 2'000'000'000;  ///< ask before caching patterns larger than this
  QByteArray geometry, windowState;        ///< QMainWindow::saveGeometry / saveState

  static constexpr int kMaxRecent = 10;
  /// Reads from `store` (missing keys keep their defaults; bad values are replaced by defaults).
  static Settings load(QSettings& store);
  /// Writes every field to `store`.
  void save(QSettings& store) const;
  /// Puts `folder` first in the recent list (deduplicated, capped).
  void addRecentModel(const QString& folder);
};

}  // namespace mechscope::gui
