// mechscope: the Qt workbench. `--version` prints without opening a window (no QApplication needed).
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include <cstdio>
#include <cstring>

#include "core/common/head_ref.hpp"
#include "app/gui/attention_explorer.hpp"
#include "app/gui/main_window.hpp"
#include "app/gui/screenshot.hpp"
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
  QCommandLineOption embeddedOpt("embedded", "Open the embedded planted model.");
  QCommandLineOption promptOpt("prompt", "Prompt to show (with --model/--embedded).", "TEXT");
  QCommandLineOption headOpt("head", "Head to show, LAYER.HEAD (e.g. 2.0).", "L.H");
  QCommandLineOption screenshotOpt("screenshot", "Open, run the attention patterns, render the main window to FILE.png and exit.", "FILE");
  QCommandLineOption settingsOpt("settings", "Use this INI file for settings instead of the user's.", "FILE");
  parser.addOptions({modelOpt, embeddedOpt, promptOpt, headOpt, screenshotOpt, settingsOpt});
  parser.process(app);

  mechscope::gui::MainWindow window(nullptr, parser.value(settingsOpt));
  window.show();
  mechscope::gui::StartupPlan plan;
  plan.embedded = parser.isSet(embeddedOpt);
  plan.modelFolder = parser.value(modelOpt);
  plan.prompt = parser.value(promptOpt);
  plan.screenshot = parser.value(screenshotOpt);
  if (parser.isSet(headOpt)) {
    try {
      const auto heads = mechscope::parseHeadList(parser.value(headOpt).toStdString(), "--head");
      if (heads.size() != 1) throw mechscope::InputError("--head: give one LAYER.HEAD (e.g. 2.0)");
      plan.layer = heads[0].layer;
      plan.head = heads[0].head;
    } catch (const mechscope::InputError& e) {
      std::fprintf(stderr, "mechscope: %s\n", e.what());
      return 2;
    }
  }
  if (!plan.screenshot.isEmpty() && !plan.embedded && plan.modelFolder.isEmpty()) plan.embedded = true;
  mechscope::gui::runStartupPlan(window, plan);
  return QApplication::exec();
}
