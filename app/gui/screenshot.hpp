#pragma once
// Startup plan of the command line: open a model, show a prompt's attention, and optionally render the
// window to a PNG and quit (the screenshot test).
#include <QString>

namespace mechscope::gui {

class MainWindow;

/// What main() was asked to do after the window opens.
struct StartupPlan {
  bool embedded = false;
  QString modelFolder, prompt, screenshot;
  int layer = -1, head = -1;  ///< head to show (-1 = a telling default for the planted model)
  int timeoutMs = 180000;     ///< give up on the screenshot after this long (exit code 1)
};

/// Starts the plan (asynchronously: jobs run, the window saves the screenshot and quits when done).
void runStartupPlan(MainWindow& window, const StartupPlan& plan);

}  // namespace mechscope::gui
