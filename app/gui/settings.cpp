#include "app/gui/settings.hpp"

namespace mechscope::gui {

Settings Settings::load(QSettings& s) {
  Settings out;
  out.recentModels = s.value("models/recent", QStringList()).toStringList();
  while (out.recentModels.size() > kMaxRecent) out.recentModels.removeLast();
  out.device = s.value("models/device", out.device).toString();
  if (out.device != "cpu" && out.device != "auto" && !out.device.startsWith("cuda")) out.device = "cpu";
  out.dtype = s.value("models/dtype", out.dtype).toString();
  if (out.dtype != "fp32" && out.dtype != "bf16" && out.dtype != "fp16") out.dtype = "fp32";
  out.darkTheme = s.value("ui/dark", out.darkTheme).toBool();
  bool ok = false;
  const double dpi = s.value("export/dpi", out.exportDpi).toDouble(&ok);
  out.exportDpi = ok && dpi >= 36.0 && dpi <= 1200.0 ? dpi : 200.0;
  out.lastPrompt = s.value("prompt/last", out.lastPrompt).toString();
  out.lastExportDir = s.value("export/dir", out.lastExportDir).toString();
  const qint64 warn = s.value("memory/warnBytes", out.memoryWarnBytes).toLongLong(&ok);
  if (ok && warn > 0) out.memoryWarnBytes = warn;
  out.geometry = s.value("window/geometry").toByteArray();
  out.windowState = s.value("window/state").toByteArray();
  return out;
}

void Settings::save(QSettings& s) const {
  s.setValue("models/recent", recentModels);
  s.setValue("models/device", device);
  s.setValue("models/dtype", dtype);
  s.setValue("ui/dark", darkTheme);
  s.setValue("export/dpi", exportDpi);
  s.setValue("prompt/last", lastPrompt);
  s.setValue("export/dir", lastExportDir);
  s.setValue("memory/warnBytes", memoryWarnBytes);
  s.setValue("window/geometry", geometry);
  s.setValue("window/state", windowState);
  s.sync();
}

void Settings::addRecentModel(const QString& folder) {
  recentModels.removeAll(folder);
  recentModels.prepend(folder);
  while (recentModels.size() > kMaxRecent) recentModels.removeLast();
}

}  // namespace mechscope::gui
