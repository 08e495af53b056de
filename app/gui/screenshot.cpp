#include "app/gui/screenshot.hpp"

#include <QApplication>
#include <QTimer>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "app/gui/analysis_panel.hpp"
#include "app/gui/attention_explorer.hpp"
#include "app/gui/job_runner.hpp"
#include "app/gui/main_window.hpp"
#include "app/gui/model_panel.hpp"
#include "app/gui/workspace.hpp"

namespace mechscope::gui {

void runStartupPlan(MainWindow& window, const StartupPlan& plan) {
  if (!plan.embedded && plan.modelFolder.isEmpty()) return;
  MainWindow* w = &window;
  const bool shot = !plan.screenshot.isEmpty();
  if (shot) w->setConfirmLargeInputs(false);
  // Step 1: once the model is in, set the prompt and run the patterns (and the overview analysis).
  auto stage = std::make_shared<int>(0);
  QObject::connect(w->workspace(), &Workspace::modelChanged, w, [w, plan, stage] {
    if (*stage != 0 || !w->workspace()->session()) return;
    *stage = 1;
    const bool planted = w->workspace()->session()->card.planted;
    QString prompt = plan.prompt;
    if (prompt.isEmpty() && planted) prompt = "When Mary and John were at the store , John gave a ring to Mary . Then John and Mary had fun at the park ; When Mary and John";
    if (!prompt.isEmpty()) w->modelPanel()->setPromptText(prompt);
    if (!w->workspace()->tokens().ids.empty()) {
      w->runAttention();
      if (auto* overview = w->analysisPanel("attention-overview")) overview->run();
    }
  });
  // Step 2: patterns arrived: show the requested head (planted default: 2.0, the induction head).
  QObject::connect(w->workspace(), &Workspace::patternsChanged, w, [w, plan, stage] {
    const auto p = w->workspace()->patterns();
    if (!p || *stage != 1) return;
    *stage = 2;
    const bool planted = w->workspace()->session()->card.planted;
    const int layer = plan.layer >= 0 ? plan.layer : (planted ? 2 : 0);
    const int head = plan.head >= 0 ? plan.head : 0;
    w->explorer()->showHead(std::min(layer, p->layers - 1), std::min(head, p->heads - 1));
    w->showTab(0);
  });
  if (shot) {
    const QString path = plan.screenshot;
    auto save = [w, path, stage] {
      if (*stage != 2 || w->jobs()->busy()) return;
      *stage = 3;
      QTimer::singleShot(300, w, [w, path] {  // let the last paint land
        const bool ok = w->saveScreenshot(path);
        std::fprintf(stderr, ok ? "mechscope: wrote %s\n" : "mechscope: could not write %s\n", qPrintable(path));
        QApplication::exit(ok ? 0 : 1);
      });
    };
    QObject::connect(w->jobs(), &JobRunner::idle, w, save);
    QObject::connect(w, &MainWindow::errorShown, w, [](const QString& m) {
      std::fprintf(stderr, "mechscope: %s\n", qPrintable(m));
      QApplication::exit(1);
    });
    QTimer::singleShot(plan.timeoutMs, w, [] {
      std::fprintf(stderr, "mechscope: screenshot timed out\n");
      QApplication::exit(1);
    });
  }
  if (plan.embedded) w->openEmbeddedModel();
  else w->openModel(plan.modelFolder);
}

}  // namespace mechscope::gui
