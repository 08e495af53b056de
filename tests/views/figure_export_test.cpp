#include <gtest/gtest.h>

#include <QFile>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <QXmlStreamReader>

#include <cmath>

#include "views/offscreen.hpp"
#include "views_test_support.hpp"

using namespace mechscope::views;

namespace {

HeatmapData pattern() {
  HeatmapData d;
  d.rows = d.cols = 5;
  d.values = test::causalPattern(5, 9);
  d.rowLabels = d.colLabels = QStringList{"<s>", "When", " Mary", " and", " John"};
  d.title = "L0H1 attention";
  return d;
}

FigureProvenance prov() {
  FigureProvenance p;
  p.model = "planted-ioi";
  p.prompt = "When Mary and John";
  p.layer = "0";
  p.head = "1";
  p.metric = "attention";
  p.normalisation = "none";
  p.extra["seed"] = 7;
  return p;
}

QByteArray readAll(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

QJsonObject sidecar(const QString& path) { return QJsonDocument::fromJson(readAll(path + ".json")).object(); }

void expectSidecarHoldsHeatmap(const QString& path, const HeatmapData& d) {
  const QJsonObject doc = sidecar(path);
  ASSERT_FALSE(doc.isEmpty()) << "no sidecar for " << path.toStdString();
  const QJsonObject p = doc["provenance"].toObject();
  EXPECT_EQ(p["model"].toString(), "planted-ioi");
  EXPECT_EQ(p["prompt"].toString(), "When Mary and John");
  EXPECT_EQ(p["layer"].toString(), "0");
  EXPECT_EQ(p["head"].toString(), "1");
  EXPECT_EQ(p["metric"].toString(), "attention");
  EXPECT_EQ(p["normalisation"].toString(), "none");
  EXPECT_EQ(p["seed"].toInt(), 7);
  const QJsonObject m = doc["numbers"].toObject()["matrix"].toObject();
  ASSERT_EQ(m["rows"].toInt(), 5);
  ASSERT_EQ(m["cols"].toInt(), 5);
  const QJsonArray values = m["values"].toArray();
  ASSERT_EQ(values.size(), 25);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 5; ++c) {
      const QJsonValue v = values[r * 5 + c];
      if (c > r)
        EXPECT_TRUE(v.isNull()) << r << "," << c;
      else
        EXPECT_NEAR(v.toDouble(), d.values[static_cast<std::size_t>(r * 5 + c)], 1e-7) << r << "," << c;
    }
  EXPECT_EQ(m["col_labels"].toArray()[2].toString(), " Mary");
  // The CSV holds the same matrix: header + 5 rows.
  const QList<QByteArray> lines = readAll(path + ".csv").trimmed().split('\n');
  ASSERT_EQ(lines.size(), 6);
  EXPECT_EQ(lines[0], "row\\col,<s>,When, Mary, and, John");
  EXPECT_TRUE(lines[2].startsWith("When,"));
  EXPECT_NEAR(lines[2].split(',')[1].toDouble(), d.values[5], 1e-7);
}

}  // namespace

TEST(FigureExport, PngHasTheSizeOfTheDpi) {
  QTemporaryDir dir;
  const QString path = dir.filePath("attn.png");
  QString error;
  ASSERT_TRUE(renderHeatmapFigure(pattern(), {}, path, 192.0, prov(), QSize(600, 500), &error)) << error.toStdString();
  const QImage img(path);
  ASSERT_FALSE(img.isNull());
  EXPECT_EQ(img.width(), 1200);
  EXPECT_EQ(img.height(), 1000);
  EXPECT_NEAR(img.dotsPerMeterX() * 0.0254, 192.0, 1.0);
  expectSidecarHoldsHeatmap(path, pattern());
  EXPECT_EQ(sidecar(path)["dpi"].toDouble(), 192.0);
  // The figure is not blank: the causal mask colour and the colour map both appear.
  int distinct = 0;
  QRgb last = 0;
  for (int x = 0; x < img.width(); x += 7) {
    const QRgb c = img.pixel(x, img.height() / 2);
    if (c != last) ++distinct;
    last = c;
  }
  EXPECT_GT(distinct, 5);
}

TEST(FigureExport, SvgIsXmlWithSvgRoot) {
  QTemporaryDir dir;
  const QString path = dir.filePath("attn.svg");
  QString error;
  ASSERT_TRUE(renderHeatmapFigure(pattern(), {}, path, 96.0, prov(), QSize(600, 500), &error)) << error.toStdString();
  QXmlStreamReader xml(readAll(path));
  QString root;
  while (!xml.atEnd()) {
    xml.readNext();
    if (xml.isStartElement() && root.isEmpty()) root = xml.name().toString();
  }
  EXPECT_FALSE(xml.hasError()) << xml.errorString().toStdString();
  EXPECT_EQ(root, "svg");
  expectSidecarHoldsHeatmap(path, pattern());
}

TEST(FigureExport, PdfHasHeaderAndTrailer) {
  QTemporaryDir dir;
  const QString path = dir.filePath("attn.pdf");
  QString error;
  ASSERT_TRUE(renderHeatmapFigure(pattern(), {}, path, 300.0, prov(), QSize(600, 500), &error)) << error.toStdString();
  const QByteArray pdf = readAll(path);
  EXPECT_TRUE(pdf.startsWith("%PDF-"));
  EXPECT_TRUE(pdf.trimmed().endsWith("%%EOF"));
  EXPECT_GT(pdf.size(), 1000);
  expectSidecarHoldsHeatmap(path, pattern());
}

TEST(FigureExport, ScoreGridAndLinePlotFigures) {
  QTemporaryDir dir;
  ScoreGridData g;
  g.layers = 2;
  g.heads = 3;
  g.scores = {0.1, -0.2, 0.3, 0.0, 0.5, -0.6};
  g.signedScores = true;
  g.title = "logit diff change";
  QString error;
  const QString gridPath = dir.filePath("grid.png");
  ASSERT_TRUE(renderScoreGridFigure(g, gridPath, 96.0, prov(), QSize(400, 300), &error)) << error.toStdString();
  EXPECT_EQ(QImage(gridPath).size(), QSize(400, 300));
  const QJsonArray gv = sidecar(gridPath)["numbers"].toObject()["matrix"].toObject()["values"].toArray();
  ASSERT_EQ(gv.size(), 6);
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(gv[i].toDouble(), g.scores[static_cast<std::size_t>(i)]);

  LinePlotData lp;
  lp.title = "WAAD / FAI";
  lp.xLabels = {"a", "b", "c", "d"};
  lp.series = {{"WAAD", {1.0, 2.0, 0.5, 3.0}, {}, {3}, {}}, {"FAI", {0.1, 0.2, 0.3, 0.4}, {}, {}, {}}};
  const QString linePath = dir.filePath("trace.svg");
  ASSERT_TRUE(renderLinePlotFigure(lp, linePath, 96.0, prov(), QSize(500, 300), &error)) << error.toStdString();
  const QJsonArray series = sidecar(linePath)["numbers"].toObject()["series"].toArray();
  ASSERT_EQ(series.size(), 2);
  EXPECT_EQ(series[0].toObject()["name"].toString(), "WAAD");
  EXPECT_DOUBLE_EQ(series[0].toObject()["y"].toArray()[3].toDouble(), 3.0);
  EXPECT_EQ(series[0].toObject()["marked"].toArray()[0].toInt(), 3);
  const QList<QByteArray> csv = readAll(linePath + ".csv").trimmed().split('\n');
  ASSERT_EQ(csv.size(), 9);
  EXPECT_EQ(csv[4], "WAAD,3,3,d,3,1");
}

TEST(FigureExport, BadInputIsAnErrorNotACrash) {
  QTemporaryDir dir;
  QString error;
  EXPECT_FALSE(renderHeatmapFigure(pattern(), {}, dir.filePath("x.gif"), 96.0, prov(), QSize(), &error));
  EXPECT_TRUE(error.contains(".png, .svg or .pdf")) << error.toStdString();
  HeatmapData bad = pattern();
  bad.values.pop_back();
  EXPECT_FALSE(renderHeatmapFigure(bad, {}, dir.filePath("x.png"), 96.0, prov(), QSize(), &error));
  EXPECT_TRUE(error.contains("values has 24 entries")) << error.toStdString();
  EXPECT_FALSE(renderHeatmapFigure(pattern(), {}, dir.filePath("no/such/dir/x.png"), 96.0, prov(), QSize(), &error));
  EXPECT_FALSE(error.isEmpty());
  EXPECT_FALSE(exportFigure(nullptr, dir.filePath("x.png"), 96.0, prov(), {}, &error));
}
