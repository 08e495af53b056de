// mechscope: the Qt workbench. `--version` prints without opening a window (no QApplication needed).
#include <QApplication>
#include <QCommandLineParser>

#include <cstdio>
#include <cstring>

#include "app/gui/main_window.hpp"
#include "core/common/build_info.hpp"
#include "mechscope/version.hpp"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0 || std::strcmp(argv[i], "-v") == 0) {
      std::printf("mechscope %s\n", mechscope::kVersion);
      return 0;
    }
    if (std::strcmp(argv[i], "--build-info") == 0) {
      std::printf("%sQt %s\n", mechscope::buildInfo().c_str(), qVersion());
      return 0;
    }
  }
  QApplication app(argc, argv);
  QApplication::setApplicationName("mechscope");
  QApplication::setOrganizationName("mechscope");
  QApplication::setApplicationVersion(mechscope::kVersion);

  QCommandLineParser parser;
  parser.setApplicationDescription("mechscope: mechanistic-interpretability workbench");
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption modelOpt({"m", "model"}, "Open this Hugging Face model folder.", "DIR");
  QCommandLineOption screenshotOpt("screenshot", "Render the main window to FILE.png and exit.", "FILE");
  parser.addOption(modelOpt);
  parser.addOption(screenshotOpt);
  parser.process(app);

  mechscope::gui::MainWindow window;
  window.show();
  if (parser.isSet(screenshotOpt)) return window.saveScreenshot(parser.value(screenshotOpt)) ? 0 : 1;
  return QApplication::exec();
}
