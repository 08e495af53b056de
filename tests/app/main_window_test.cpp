// The main window end to end: planted model, attention, export of PNG/SVG/PDF + sidecars, results saved and
// reopened, settings and layout persisted, About versions.
#include <gtest/gtest.h>

#include <QApplication>
#include <QComboBox>
#include <QFile>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSettings>
#include <QTemporaryDir>

#include "app/gui/analysis_panel.hpp"
#include "app/gui/attention_explorer.hpp"
#include "app/gui/main_window.hpp"
#include "app/gui/model_panel.hpp"
#include "app/gui/workspace.hpp"
#include "app_test_support.hpp"
#include "core/common/build_info.hpp"
#include "store/hdf5_version.hpp"
#include "views/heatmap_view.hpp"
#include "views/line_plot_view.hpp"
#include <qcustomplot.h>
#include "views/score_grid_view.hpp"

using namespace mechscope;
using namespace mechscope::gui;

namespace {
QByteArray readAll(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}
QJsonObject readJson(const QString& path) { return QJsonDocument::fromJson(readAll(path)).object(); }

/// A window with the planted model and the attention patterns of a prompt.
struct Loaded {
  QTemporaryDir tmp;
  std::unique_ptr<MainWindow> w;
  explicit Loaded(const QString& settings = QString()) {
    w = std::make_unique<MainWindow>(nullptr, settings.isEmpty() ? tmp.path() + "/settings.ini" : settings);
    w->setConfirmLargeInputs(false);
    w->resize(1400, 900);
    w->show();
    gui::test::JobWatch watch(*w->jobs());
    w->openEmbeddedModel();
    QTest::qWait(1);
    for (int i = 0; i < 20000 && !w->workspace()->session(); i += 5) QTest::qWait(5);
    w->modelPanel()->setPromptText("When Mary and John were at the store , John gave a ring to");
    w->runAttention();
    for (int i = 0; i < 20000 && !w->workspace()->patterns(); i += 5) QTest::qWait(5);
  }
};
}  // namespace

TEST(MainWindow, ExportWritesValidPngSvgPdfWithSidecarsOfThePlottedNumbers) {
  Loaded l;
  MainWindow& w = *l.w;
  ASSERT_TRUE(w.workspace()->patterns()) << w.lastError().toStdString();
  w.explorer()->showHead(2, 0);
  QTest::qWait(20);
  const QString dir = l.tmp.path();
  for (const char* ext : {"png", "svg", "pdf"}) ASSERT_TRUE(w.exportCurrentFigure(dir + "/attn." + ext)) << w.lastError().toStdString();

  const QImage png(dir + "/attn.png");
  ASSERT_FALSE(png.isNull());
  const double scale = w.settings().exportDpi / 96.0;
  const QSize logical = w.explorer()->heatmap()->plot()->size();
  EXPECT_NEAR(png.width(), logical.width() * scale, 2.0);
  EXPECT_NEAR(png.dotsPerMeterX(), w.settings().exportDpi / 0.0254, 1.0);
  const QByteArray svg = readAll(dir + "/attn.svg");
  EXPECT_TRUE(svg.contains("<svg")) << svg.left(200).toStdString();
  EXPECT_TRUE(svg.trimmed().endsWith("</svg>"));
  const QByteArray pdf = readAll(dir + "/attn.pdf");
  EXPECT_TRUE(pdf.startsWith("%PDF-"));
  EXPECT_TRUE(pdf.trimmed().endsWith("%%EOF"));

  for (const char* ext : {"png", "svg", "pdf"}) {
    const QJsonObject side = readJson(dir + "/attn." + ext + ".json");
    ASSERT_FALSE(side.isEmpty()) << ext;
    const QJsonObject prov = side["provenance"].toObject();
    EXPECT_TRUE(prov["model"].toString().contains("planted-default")) << ext;
    EXPECT_EQ(prov["layer"].toString(), "2");
    EXPECT_EQ(prov["head"].toString(), "0");
    EXPECT_TRUE(prov["prompt"].toString().startsWith("When Mary"));
    EXPECT_FALSE(prov["metric"].toString().isEmpty());
    EXPECT_EQ(prov["normalisation"].toString(), "none");
    EXPECT_TRUE(QFile::exists(dir + "/attn." + ext + ".csv")) << ext;
  }
  // The sidecar's matrix is exactly the pattern (masked cells null).
  const QJsonObject numbers = readJson(dir + "/attn.png.json")["numbers"].toObject();
  const QJsonObject matrix = numbers["matrix"].toObject();
  ASSERT_EQ(matrix["rows"].toInt(), 15);
  ASSERT_EQ(matrix["cols"].toInt(), 15);
  EXPECT_EQ(matrix["block"].toInt(), 1);
  const QJsonArray values = matrix["values"].toArray();
  ASSERT_EQ(values.size(), 15 * 15);
  EXPECT_EQ(matrix["row_labels"].toArray()[2].toString(), "Mary");
  const auto ref = w.workspace()->patterns()->head(2, 0);
  for (int q = 0; q < 15; ++q) {
    for (int k = 0; k < 15; ++k) {
      const QJsonValue v = values[q * 15 + k];
      if (k > q) {
        EXPECT_TRUE(v.isNull());
      } else {
        EXPECT_NEAR(v.toDouble(), ref[static_cast<std::size_t>(q * 15 + k)], 1e-6);
      }
    }
  }

  // Options show up in the provenance.
  views::HeatmapOptions o;
  o.excludeFirstK = 1;
  o.rowNormalise = true;
  w.explorer()->heatmap()->setOptions(o);
  EXPECT_TRUE(w.explorer()->provenance().normalisation.contains("row-normalised"));

  // The score grid of an analysis exports the same way.
  auto* overview = w.analysisPanel("attention-overview");
  ASSERT_TRUE(overview);
  gui::test::JobWatch watch(*w.jobs());
  ASSERT_EQ(watch.wait(overview->run()).status, "finished");
  w.showTab(2);
  ASSERT_TRUE(w.exportCurrentFigure(dir + "/grid.svg")) << w.lastError().toStdString();
  const QJsonObject gs = readJson(dir + "/grid.svg.json");
  EXPECT_EQ(gs["provenance"].toObject()["analysis"].toString(), "attention-overview");
  const QJsonObject gm = gs["numbers"].toObject()["matrix"].toObject();
  ASSERT_EQ(gm["rows"].toInt(), 24);
  ASSERT_EQ(gm["cols"].toInt(), 4);
  EXPECT_NEAR(gm["values"].toArray()[4 * 4 + 0].toDouble(), overview->gridViews()[0]->score(4, 0), 1e-9);

  // Results to HDF5 and back.
  ASSERT_TRUE(w.saveResults(dir + "/results.h5")) << w.lastError().toStdString();
  Loaded other;
  ASSERT_TRUE(other.w->openResults(dir + "/results.h5")) << other.w->lastError().toStdString();
  auto* reopened = other.w->analysisPanel("attention-overview");
  ASSERT_EQ(reopened->gridViews().size(), 3u);
  EXPECT_DOUBLE_EQ(reopened->gridViews()[2]->score(9, 1), overview->gridViews()[2]->score(9, 1));
  // A bad results file: a message, no crash.
  EXPECT_FALSE(other.w->openResults(dir + "/attn.png"));
  EXPECT_FALSE(other.w->lastError().isEmpty());
}

TEST(MainWindow, SettingsAndLayoutPersistAndAboutNamesTheVersions) {
  QTemporaryDir tmp;
  const QString ini = tmp.path() + "/s.ini";
  {
    MainWindow w(nullptr, ini);
    w.resize(1234, 777);
    w.show();
    w.setDarkTheme(true);
    w.modelPanel()->setPromptText("Mary and John");
    w.close();
  }
  QSettings s(ini, QSettings::IniFormat);
  EXPECT_TRUE(s.value("ui/dark").toBool());
  EXPECT_EQ(s.value("prompt/last").toString(), "Mary and John");
  EXPECT_FALSE(s.value("window/geometry").toByteArray().isEmpty());
  EXPECT_FALSE(s.value("window/state").toByteArray().isEmpty());
  {
    MainWindow w(nullptr, ini);
    EXPECT_TRUE(w.settings().darkTheme);
    EXPECT_EQ(w.modelPanel()->promptText(), "Mary and John");
    EXPECT_EQ(w.size(), QSize(1234, 777));
    EXPECT_LT(QApplication::palette().color(QPalette::Window).lightness(), 100);
    w.setDarkTheme(false);
    EXPECT_GT(QApplication::palette().color(QPalette::Window).lightness(), 150);
  }
  Settings st;
  for (int i = 0; i < 15; ++i) st.addRecentModel(QString("/m/%1").arg(i));
  st.addRecentModel("/m/3");
  EXPECT_EQ(st.recentModels.size(), Settings::kMaxRecent);
  EXPECT_EQ(st.recentModels.front(), "/m/3");
  EXPECT_EQ(st.recentModels.count("/m/3"), 1);
  // Bad stored values fall back to defaults.
  QSettings bad(tmp.path() + "/bad.ini", QSettings::IniFormat);
  bad.setValue("export/dpi", "lots");
  bad.setValue("models/dtype", "int3");
  const Settings fixed = Settings::load(bad);
  EXPECT_DOUBLE_EQ(fixed.exportDpi, 200.0);
  EXPECT_EQ(fixed.dtype, "fp32");

  const QString about = MainWindow::aboutText();
  EXPECT_TRUE(about.contains(QString("Qt ") + qVersion()));
  EXPECT_TRUE(about.contains(QString::fromStdString("LibTorch " + torchVersion())));
  EXPECT_TRUE(about.contains(QString::fromStdString("HDF5 " + store::hdf5Version())));
}

TEST(MainWindow, BadModelFolderIsAMessage) {
  QTemporaryDir tmp;
  MainWindow w(nullptr, tmp.path() + "/s.ini");
  gui::test::JobWatch watch(*w.jobs());
  QSignalSpy err(&w, &MainWindow::errorShown);
  w.openModel(tmp.path() + "/nope");
  ASSERT_TRUE(err.wait(10000));
  EXPECT_TRUE(w.lastError().contains("does not exist")) << w.lastError().toStdString();
  EXPECT_FALSE(w.workspace()->session());
  EXPECT_FALSE(w.exportCurrentFigure(tmp.path() + "/x.png"));
  EXPECT_TRUE(w.lastError().contains("nothing to export"));
}

TEST(MainWindow, BatchOfPromptsIsSteppedThroughEverywhere) {
  Loaded l;
  const QString file = l.tmp.path() + "/prompts.txt";
  {
    QFile f(file);
    ASSERT_TRUE(f.open(QIODevice::WriteOnly | QIODevice::Text));
    f.write("When Mary and John were at the store , John gave a ring to\n\n"
            "When Alice and Bob were at the park , Bob gave a book to\n"
            "the day was long in town\n");
  }
  EXPECT_FALSE(l.w->loadPromptBatch(l.tmp.path() + "/missing.txt"));
  EXPECT_TRUE(l.w->lastError().contains("cannot be read"));
  ASSERT_TRUE(l.w->loadPromptBatch(file));
  auto* ws = l.w->workspace();
  ASSERT_EQ(ws->batch().size(), 3);  // the blank line is skipped
  EXPECT_EQ(ws->batchIndex(), 0);
  auto* picker = l.w->modelPanel()->batchPicker();
  EXPECT_EQ(picker->count(), 3);
  EXPECT_TRUE(picker->isVisibleTo(l.w.get()));

  // Next prompt: editor, tokens and (since attention was run) the explorer's patterns follow it.
  l.w->modelPanel()->nextBatchPrompt();
  EXPECT_EQ(ws->batchIndex(), 1);
  EXPECT_EQ(picker->currentIndex(), 1);
  EXPECT_EQ(ws->prompt(), "When Alice and Bob were at the park , Bob gave a book to");
  EXPECT_EQ(l.w->modelPanel()->promptText(), ws->prompt());
  EXPECT_EQ(ws->tokens().ids, tokenizePrompt(*ws->session(), ws->prompt()).ids);
  for (int i = 0; i < 20000 && !ws->patterns(); i += 5) QTest::qWait(5);
  ASSERT_TRUE(ws->patterns());
  EXPECT_EQ(ws->patterns()->positions, static_cast<int>(ws->tokens().ids.size()));
  EXPECT_EQ(ws->patterns()->labels, ws->tokens().display);

  // An analysis run now uses the selected prompt.
  auto* overview = l.w->analysisPanel("attention-overview");
  gui::test::JobWatch watch(*l.w->jobs());
  ASSERT_EQ(watch.wait(overview->run()).status, "finished");
  EXPECT_EQ(overview->result().prompt, ws->batch()[1]);
  EXPECT_EQ(overview->lineViews()[0]->data().xLabels, ws->tokens().display);

  // Picking from the list and stepping past the ends.
  ws->setBatchIndex(2);
  EXPECT_EQ(l.w->modelPanel()->promptText(), "the day was long in town");
  l.w->modelPanel()->nextBatchPrompt();
  EXPECT_EQ(ws->batchIndex(), 2);
  l.w->modelPanel()->previousBatchPrompt();
  l.w->modelPanel()->previousBatchPrompt();
  l.w->modelPanel()->previousBatchPrompt();
  EXPECT_EQ(ws->batchIndex(), 0);
  EXPECT_EQ(ws->prompt(), ws->batch()[0]);
}
