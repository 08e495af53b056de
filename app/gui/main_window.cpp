#include "app/gui/main_window.hpp"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPalette>
#include <QPixmap>
#include <QSettings>
#include <QStatusBar>
#include <QStyle>
#include <QStyleFactory>
#include <QTabWidget>
#include <QTextStream>
#include <QtGlobal>

#include <algorithm>
#include <memory>

#include "app/gui/analysis_panel.hpp"
#include "app/gui/attention_explorer.hpp"
#include "app/gui/cache_viewer.hpp"
#include "app/gui/jobs.hpp"
#include "app/gui/model_panel.hpp"
#include "app/gui/patching_panel.hpp"
#include "app/gui/presenters.hpp"
#include "app/gui/task_panel.hpp"
#include "app/gui/workspace.hpp"
#include "core/common/build_info.hpp"
#include "mechscope/version.hpp"
#include "store/hdf5_version.hpp"
#include "views/heatmap_view.hpp"
#include "views/circuit_graph_view.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

namespace mechscope::gui {

namespace {
std::unique_ptr<QSettings> openSettings(const QString& path) {
  return path.isEmpty() ? std::make_unique<QSettings>() : std::make_unique<QSettings>(path, QSettings::IniFormat);
}

QPalette darkPalette() {
  QPalette p;
  const QColor window(0x26, 0x28, 0x2c), base(0x1d, 0x1f, 0x22), text(0xe6, 0xe6, 0xe6), mid(0x3a, 0x3d, 0x42);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, base);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, mid);
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::Mid, QColor(0x80, 0x84, 0x8a));
  p.setColor(QPalette::Highlight, QColor(0x3d, 0x7e, 0xc4));
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Disabled, QPalette::Text, QColor(0x80, 0x80, 0x80));
  p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(0x80, 0x80, 0x80));
  return p;
}
}  // namespace

MainWindow::MainWindow(QWidget* parent, const QString& settingsPath) : QMainWindow(parent), m_settingsPath(settingsPath) {
  {
    auto store = openSettings(m_settingsPath);
    m_settings = Settings::load(*store);
  }
  setWindowTitle("mechscope");
  setObjectName("MainWindow");
  setAcceptDrops(true);
  resize(1500, 920);
  m_ws = new Workspace(this);
  m_jobs = new JobRunner(this);

  m_tabs = new QTabWidget(this);
  m_tabs->setDocumentMode(true);
  m_explorer = new AttentionExplorer(m_ws, m_tabs);
  m_tabs->addTab(m_explorer, "Attention");
  m_patching = new PatchingPanel(m_ws, m_jobs, m_tabs);
  m_tabs->addTab(m_patching, "Patching");
  m_analysisTabs = new QTabWidget(m_tabs);
  for (auto& a : analysisAdapters()) {
    const QString title = a.title;
    const bool available = a.available;
    auto* panel = new AnalysisPanel(std::move(a), m_ws, m_jobs, m_analysisTabs);
    const int idx = m_analysisTabs->addTab(panel, title);
    if (!available) m_analysisTabs->setTabToolTip(idx, "not available yet");
    m_panels.push_back(panel);
  }
  m_tabs->addTab(m_analysisTabs, "Analyses");
  setCentralWidget(m_tabs);

  m_model = new ModelPanel(m_ws, this);
  auto* dock = new QDockWidget("Model and prompt", this);
  dock->setObjectName("modelDock");
  dock->setWidget(m_model);
  addDockWidget(Qt::LeftDockWidgetArea, dock);
  resizeDocks({dock}, {380}, Qt::Horizontal);

  m_tasks = new TaskPanel(m_jobs, this);
  statusBar()->addPermanentWidget(m_tasks);
  statusBar()->showMessage("Open a model folder (Ctrl+O) or the embedded planted model (Ctrl+E).");

  buildActions();
  if (!m_settings.lastPrompt.isEmpty()) m_model->setPromptText(m_settings.lastPrompt);
  if (!m_settings.geometry.isEmpty()) restoreGeometry(m_settings.geometry);
  if (!m_settings.windowState.isEmpty()) restoreState(m_settings.windowState);
  setDarkTheme(m_settings.darkTheme);

  connect(m_model, &ModelPanel::runRequested, this, &MainWindow::runAttention);
  connect(m_model, &ModelPanel::batchRequested, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, "Prompts (one per line)", QString(), "Text (*.txt);;All files (*)");
    if (path.isEmpty()) return;
    loadPromptBatch(path);
  });
  // Another prompt of the batch: the explorer follows (its patterns are recomputed when it showed some).
  connect(m_ws, &Workspace::batchIndexChanged, this, [this](int i) {
    statusBar()->showMessage(QString("Prompt %1 of %2 of the batch").arg(i + 1).arg(m_ws->batch().size()), 5000);
    if (m_followBatch && m_ws->session()) runAttention();
  });
  connect(m_ws, &Workspace::modelChanged, this, [this] {
    const auto s = m_ws->session();
    if (!s) return;
    setWindowTitle("mechscope — " + QFileInfo(s->card.folder).fileName());
    if (!s->card.planted) m_settings.addRecentModel(s->card.folder);
    rebuildRecentMenu();
    if (s->card.planted) {
      const auto d = plantedPatchingDefaults();
      m_patching->setPrompts(d.clean, d.corrupt, d.answer, d.incorrect);
    }
  });
  connect(m_ws, &Workspace::headRequested, this, [this] { m_tabs->setCurrentIndex(0); });
  connect(m_jobs, &JobRunner::failed, this, [this](int, const QString& m) { showError("The job failed", m); });
}

MainWindow::~MainWindow() = default;

void MainWindow::buildActions() {
  auto* file = menuBar()->addMenu("&File");
  auto* open = file->addAction("&Open model folder…", this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, "Hugging Face model folder");
    if (!dir.isEmpty()) openModel(dir);
  });
  open->setShortcut(QKeySequence::Open);
  auto* embedded = file->addAction("Open &embedded planted model", this, &MainWindow::openEmbeddedModel);
  embedded->setShortcut(QKeySequence("Ctrl+E"));
  m_recent = file->addMenu("Open &recent");
  rebuildRecentMenu();
  file->addSeparator();
  file->addAction("Open &results (HDF5)…", this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, "Results", QString(), "HDF5 (*.h5 *.hdf5)");
    if (!p.isEmpty()) openResults(p);
  });
  file->addAction("&Save results (HDF5)…", this, [this] {
    const QString p = QFileDialog::getSaveFileName(this, "Save results", "results.h5", "HDF5 (*.h5)");
    if (!p.isEmpty()) saveResults(p);
  })->setShortcut(QKeySequence::Save);
  file->addAction("Save attention &cache (HDF5)…", this, [this] {
    const QString p = QFileDialog::getSaveFileName(this, "Save cache", "attention.h5", "HDF5 (*.h5)");
    if (p.isEmpty()) return;
    try {
      submitSaveCache(*m_ws, *m_jobs, p);
    } catch (const std::exception& e) {
      showError("Save cache", QString::fromUtf8(e.what()));
    }
  });
  file->addAction("Open attention cac&he (HDF5)…", this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, "Open attention cache", QString(), "HDF5 (*.h5 *.hdf5);;All files (*)");
    if (!p.isEmpty()) openCache(p);
  });
  auto* exp = file->addAction("E&xport figure (PNG/SVG/PDF + sidecar)…", this, [this] {
    const QString p = QFileDialog::getSaveFileName(this, "Export figure", m_settings.lastExportDir + "/figure.png",
                                                   "PNG (*.png);;SVG (*.svg);;PDF (*.pdf)");
    if (p.isEmpty()) return;
    m_settings.lastExportDir = QFileInfo(p).absolutePath();
    exportCurrentFigure(p);
  });
  exp->setShortcut(QKeySequence("Ctrl+Shift+S"));
  file->addSeparator();
  file->addAction("&Quit", this, &QWidget::close)->setShortcut(QKeySequence::Quit);

  auto* run = menuBar()->addMenu("&Run");
  run->addAction("Run &attention", this, &MainWindow::runAttention)->setShortcut(QKeySequence("Ctrl+R"));
  run->addAction("&Cancel", this, [this] { m_jobs->cancelAll(); })->setShortcut(QKeySequence(Qt::Key_Escape));
  auto* device = run->addMenu("&Device and dtype (next load)");
  auto* devGroup = new QActionGroup(this);
  // auto: cuda:0, or the blocks split over every GPU when the weights need them (docs/multi-gpu.md).
  for (const QString d : {"cpu", "cuda", "auto"}) {
    auto* a = device->addAction(d, this, [this, d] { m_settings.device = d; });
    a->setCheckable(true);
    a->setChecked(m_settings.device.startsWith(d));
    devGroup->addAction(a);
  }
  device->addSeparator();
  auto* dtGroup = new QActionGroup(this);
  for (const QString d : {"fp32", "bf16", "fp16"}) {
    auto* a = device->addAction(d, this, [this, d] { m_settings.dtype = d; });
    a->setCheckable(true);
    a->setChecked(m_settings.dtype == d);
    dtGroup->addAction(a);
  }

  auto* view = menuBar()->addMenu("&View");
  view->addAction("&Attention", this, [this] { showTab(0); })->setShortcut(QKeySequence("Ctrl+1"));
  view->addAction("&Patching", this, [this] { showTab(1); })->setShortcut(QKeySequence("Ctrl+2"));
  view->addAction("A&nalyses", this, [this] { showTab(2); })->setShortcut(QKeySequence("Ctrl+3"));
  view->addSeparator();
  view->addAction("Next layer", this, [this] { stepLayer(1); })->setShortcut(QKeySequence("]"));
  view->addAction("Previous layer", this, [this] { stepLayer(-1); })->setShortcut(QKeySequence("["));
  view->addAction("Next head", this, [this] { stepHead(1); })->setShortcut(QKeySequence("."));
  view->addAction("Previous head", this, [this] { stepHead(-1); })->setShortcut(QKeySequence(","));
  view->addSeparator();
  m_darkAction = view->addAction("&Dark theme", this, [this](bool on) { setDarkTheme(on); });
  m_darkAction->setCheckable(true);
  m_darkAction->setShortcut(QKeySequence("Ctrl+Shift+D"));

  auto* help = menuBar()->addMenu("&Help");
  help->addAction("&About mechscope", this, [this] { QMessageBox::about(this, "About mechscope", aboutText()); });
}

void MainWindow::rebuildRecentMenu() {
  m_recent->clear();
  for (const QString& f : m_settings.recentModels) m_recent->addAction(f, this, [this, f] { openModel(f); });
  m_recent->setEnabled(!m_settings.recentModels.isEmpty());
}

QString MainWindow::aboutText() {
  QString info = QString::fromStdString(buildInfo()).trimmed().toHtmlEscaped().replace("\n", "<br>");
  return QString("<h3>mechscope %1</h3><p>Mechanistic-interpretability workbench.</p><p>%2<br>Qt %3 (built with %4)<br>LibTorch %5<br>HDF5 %6</p>")
      .arg(kVersion, info, qVersion(), QT_VERSION_STR, QString::fromStdString(torchVersion()),
           QString::fromStdString(store::hdf5Version()));
}

void MainWindow::showError(const QString& title, const QString& message) {
  m_lastError = message;
  statusBar()->showMessage(title + ": " + message, 15000);
  emit errorShown(message);
  if (QGuiApplication::platformName() == "offscreen") return;  // tests / headless: no dialogs
  auto* box = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->open();  // never blocks
}

void MainWindow::openModel(const QString& folder) {
  try {
    submitOpenModel(*m_ws, *m_jobs, folder, LoadOptions{m_settings.device.toStdString(), m_settings.dtype.toStdString()});
  } catch (const std::exception& e) {
    showError("Open model", QString::fromUtf8(e.what()));
  }
}

void MainWindow::openEmbeddedModel() {
  submitOpenModel(*m_ws, *m_jobs, {}, LoadOptions{m_settings.device.toStdString(), m_settings.dtype.toStdString()}, true);
}

void MainWindow::runAttention() {
  m_model->tokenizeNow();
  if (!m_model->errorText().isEmpty()) return showError("Prompt", m_model->errorText());
  const qint64 bytes = m_model->estimatedBytes();
  if (bytes > m_settings.memoryWarnBytes && m_confirmLarge) {
    const auto answer = QMessageBox::question(
        this, "Large input",
        QString("Caching every attention pattern of %1 tokens needs about %2 of memory (limit %3).\n"
                "Continue, or shorten the prompt?")
            .arg(m_ws->tokens().ids.size()).arg(formatBytes(bytes)).arg(formatBytes(m_settings.memoryWarnBytes)));
    if (answer != QMessageBox::Yes) return;
  }
  try {
    statusBar()->showMessage(QString("Caching patterns: ≈ %1").arg(formatBytes(bytes)), 5000);
    submitComputePatterns(*m_ws, *m_jobs);
    m_followBatch = true;
    showTab(0);
  } catch (const std::exception& e) {
    showError("Attention", QString::fromUtf8(e.what()));
  }
}

AnalysisPanel* MainWindow::analysisPanel(const QString& name) const {
  for (auto* p : m_panels)
    if (p->adapter().name == name) return p;
  return nullptr;
}

bool MainWindow::saveResults(const QString& path) {
  if (m_ws->results().empty()) {
    showError("Save results", "nothing to save yet; run an analysis first");
    return false;
  }
  try {
    const auto s = m_ws->session();
    gui::saveResults(path, m_ws->results(), s ? s->card.folder : QString());
    statusBar()->showMessage("Saved " + path, 5000);
    return true;
  } catch (const std::exception& e) {
    showError("Save results", QString::fromUtf8(e.what()));
    return false;
  }
}

CacheViewer* MainWindow::openCache(const QString& path) {
  auto* v = new CacheViewer(m_jobs, this);  // a child window: closed with the main window
  v->setWindowFlag(Qt::Window);
  v->setAttribute(Qt::WA_DeleteOnClose);
  v->resize(1000, 800);
  connect(v, &CacheViewer::failed, this, [this, v](const QString& m) {
    showError("Open cache", m);
    v->close();
  });
  v->show();
  v->open(path);
  return v;
}

bool MainWindow::loadPromptBatch(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly | QIODevice::Text)) {
    showError("Prompts", path + ": cannot be read; check the file's permissions");
    return false;
  }
  QStringList prompts;
  QTextStream in(&f);
  while (!in.atEnd()) {
    const QString line = in.readLine().trimmed();
    if (!line.isEmpty()) prompts << line;
  }
  if (prompts.isEmpty()) {
    showError("Prompts", path + ": holds no prompt lines; write one prompt per line");
    return false;
  }
  m_ws->setBatch(prompts);
  statusBar()->showMessage(QString("%1 prompts read from %2; step through them with Alt+PgDown / Alt+PgUp").arg(prompts.size()).arg(path), 8000);
  return true;
}

bool MainWindow::openResults(const QString& path) {
  try {
    const auto results = loadResults(path);
    for (const auto& r : results) {
      m_ws->addResult(r);
      if (auto* p = analysisPanel(r.analysis)) {
        p->showResult(r);
        m_analysisTabs->setCurrentWidget(p);
      }
    }
    showTab(2);
    return true;
  } catch (const std::exception& e) {
    showError("Open results", QString::fromUtf8(e.what()));
    return false;
  }
}

FigureSource MainWindow::currentFigure() const {
  FigureSource f;
  const auto s = m_ws->session();
  const ModelCard* card = s ? &s->card : nullptr;
  if (m_tabs->currentIndex() == 0) {
    if (!m_ws->patterns()) return f;
    f.plot = m_explorer->heatmap()->plot();
    f.numbers = m_explorer->heatmap()->plottedNumbers();
    f.provenance = m_explorer->provenance();
  } else if (m_tabs->currentIndex() == 1) {
    if (!m_ws->patching()) return f;
    auto* g = m_patching->grid();
    f.plot = g->plot();
    f.numbers = g->plottedNumbers();
    f.provenance = figureProvenance(card, m_ws->prompt(), -1, -1, g->data().title, "logit difference; see title");
  } else if (auto* p = qobject_cast<AnalysisPanel*>(m_analysisTabs->currentWidget())) {
    const auto& r = p->result();
    if (!p->gridViews().empty()) {
      auto* g = p->gridViews().front();
      f.plot = g->plot();
      f.numbers = g->plottedNumbers();
      f.provenance = figureProvenance(card, r.prompt, -1, -1, g->data().title, g->data().valueLabel);
    } else if (!p->graphViews().empty()) {
      auto* g = p->graphViews().front();
      f.plot = g->plot();
      f.numbers = g->plottedNumbers();
      f.provenance = figureProvenance(card, r.prompt, -1, -1, g->data().title, g->data().scoreLabel);
    } else if (!p->lineViews().empty()) {
      auto* l = p->lineViews().front();
      f.plot = l->plot();
      f.numbers = l->plottedNumbers();
      f.provenance = figureProvenance(card, r.prompt, -1, -1, l->data().title, l->data().yLabel);
    }
    f.provenance.extra["analysis"] = r.analysis;
    f.provenance.extra["params"] = r.params;
  }
  f.provenance.extra["generator"] = QString("mechscope %1").arg(kVersion);
  return f;
}

bool MainWindow::exportCurrentFigure(const QString& path) {
  const FigureSource f = currentFigure();
  if (!f.plot) {
    showError("Export", "nothing to export on this tab yet; run the attention patterns or an analysis first");
    return false;
  }
  QString error;
  if (!views::exportFigure(f.plot, path, m_settings.exportDpi, f.provenance, f.numbers, &error)) {
    showError("Export", error);
    return false;
  }
  statusBar()->showMessage("Exported " + path + " (+ .json/.csv sidecar)", 5000);
  return true;
}

void MainWindow::setDarkTheme(bool dark) {
  m_settings.darkTheme = dark;
  if (m_darkAction) {
    const QSignalBlocker b(m_darkAction);
    m_darkAction->setChecked(dark);
  }
  if (auto* style = QStyleFactory::create("Fusion")) QApplication::setStyle(style);
  QApplication::setPalette(dark ? darkPalette() : QApplication::style()->standardPalette());
}

void MainWindow::showTab(int index) { m_tabs->setCurrentIndex(index); }

void MainWindow::stepLayer(int delta) {
  if (const auto p = m_ws->patterns())
    m_explorer->showHead(std::clamp(m_explorer->layer() + delta, 0, p->layers - 1), m_explorer->head());
}

void MainWindow::stepHead(int delta) {
  if (const auto p = m_ws->patterns())
    m_explorer->showHead(m_explorer->layer(), std::clamp(m_explorer->head() + delta, 0, p->heads - 1));
}

void MainWindow::saveSettings() {
  m_settings.geometry = saveGeometry();
  m_settings.windowState = saveState();
  m_settings.lastPrompt = m_model->promptText();
  auto store = openSettings(m_settingsPath);
  m_settings.save(*store);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  m_jobs->cancelAll();
  saveSettings();
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.isEmpty()) return;
  const QString path = urls.front().toLocalFile();
  if (path.endsWith(".h5") || path.endsWith(".hdf5")) openResults(path);
  else openModel(QFileInfo(path).isDir() ? path : QFileInfo(path).absolutePath());
}

bool MainWindow::saveScreenshot(const QString& path) {
  QApplication::processEvents();  // only here, outside any work: let the first layout happen
  return grab().save(path, "PNG");
}

}  // namespace mechscope::gui
