#include "views/figure_export.hpp"

#include <qcustomplot.h>

#include <QDateTime>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>
#include <QSvgGenerator>
#include <QTextStream>

#include <cmath>

namespace mechscope::views {
namespace {

bool fail(QString* error, const QString& message) {
  if (error) *error = message;
  return false;
}

QString csvField(const QString& s) {
  if (!s.contains(',') && !s.contains('"') && !s.contains('\n') && !s.contains('\r')) return s;
  QString q = s;
  q.replace('"', "\"\"");
  return '"' + q + '"';
}

QString csvNumber(const QJsonValue& v) { return v.isDouble() ? QString::number(v.toDouble(), 'g', 9) : QString(); }

// Wide CSV of a matrix: header ",<col labels>", then "<row label>,v,v,...".
QString matrixCsv(const QJsonObject& m) {
  const int rows = m["rows"].toInt(), cols = m["cols"].toInt();
  const QJsonArray values = m["values"].toArray(), rl = m["row_labels"].toArray(), cl = m["col_labels"].toArray();
  QString out;
  QTextStream s(&out);
  s << "row\\col";
  for (int c = 0; c < cols; ++c) s << ',' << csvField(c < cl.size() ? cl[c].toString() : QString::number(c));
  s << '\n';
  for (int r = 0; r < rows; ++r) {
    s << csvField(r < rl.size() ? rl[r].toString() : QString::number(r));
    for (int c = 0; c < cols; ++c) {
      const qsizetype k = static_cast<qsizetype>(r) * cols + c;
      s << ',' << (k < values.size() ? csvNumber(values[k]) : QString());
    }
    s << '\n';
  }
  return out;
}

// Long CSV of line series: series,index,x,label,y,marked.
QString seriesCsv(const QJsonArray& series, const QJsonArray& labels) {
  QString out;
  QTextStream s(&out);
  s << "series,index,x,label,y,marked\n";
  for (const QJsonValue& sv : series) {
    const QJsonObject o = sv.toObject();
    const QJsonArray xs = o["x"].toArray(), ys = o["y"].toArray(), marks = o["marked"].toArray();
    for (qsizetype i = 0; i < ys.size(); ++i) {
      const double x = i < xs.size() ? xs[i].toDouble() : static_cast<double>(i);
      const auto xi = static_cast<qsizetype>(std::llround(x));
      bool marked = false;
      for (const QJsonValue& m : marks) marked = marked || m.toInt() == i;
      s << csvField(o["name"].toString()) << ',' << i << ',' << QString::number(x, 'g', 9) << ','
        << csvField(xi >= 0 && xi < labels.size() ? labels[xi].toString() : QString()) << ',' << csvNumber(ys[i]) << ','
        << (marked ? 1 : 0) << '\n';
    }
  }
  return out;
}

bool writeText(const QString& path, const QByteArray& bytes, QString* error) {
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly)) return fail(error, QString("cannot write %1: %2").arg(path, f.errorString()));
  f.write(bytes);
  if (!f.commit()) return fail(error, QString("cannot write %1: %2").arg(path, f.errorString()));
  return true;
}

}  // namespace

FigureFormat figureFormatFor(const QString& path) {
  const QString suffix = QFileInfo(path).suffix().toLower();
  if (suffix == "png") return FigureFormat::Png;
  if (suffix == "svg") return FigureFormat::Svg;
  if (suffix == "pdf") return FigureFormat::Pdf;
  return FigureFormat::Unknown;
}

QJsonObject provenanceJson(const FigureProvenance& p) {
  QJsonObject o;
  auto put = [&](const char* key, const QString& v) {
    if (!v.isEmpty()) o[key] = v;
  };
  put("model", p.model);
  put("prompt", p.prompt);
  put("layer", p.layer);
  put("head", p.head);
  put("metric", p.metric);
  put("normalisation", p.normalisation);
  for (auto it = p.extra.begin(); it != p.extra.end(); ++it) o[it.key()] = it.value();
  return o;
}

bool writeFigureSidecar(const QString& figurePath, double dpi, QSize size, const FigureProvenance& provenance,
                        const QJsonObject& numbers, QString* error) {
  QJsonObject doc;
  doc["figure"] = QFileInfo(figurePath).fileName();
  doc["format"] = QFileInfo(figurePath).suffix().toLower();
  doc["dpi"] = dpi;
  doc["size_logical_px"] = QJsonArray{size.width(), size.height()};
  doc["created"] = QDateTime::currentDateTimeUtc().toString(Qt::ISODate);
  doc["generator"] = "mechscope";
  doc["provenance"] = provenanceJson(provenance);
  doc["numbers"] = numbers;
  if (!writeText(figurePath + ".json", QJsonDocument(doc).toJson(QJsonDocument::Indented), error)) return false;
  if (numbers.contains("matrix"))
    return writeText(figurePath + ".csv", matrixCsv(numbers["matrix"].toObject()).toUtf8(), error);
  if (numbers.contains("series"))
    return writeText(figurePath + ".csv", seriesCsv(numbers["series"].toArray(), numbers["x_labels"].toArray()).toUtf8(), error);
  return true;
}

bool exportFigure(QCustomPlot* plot, const QString& path, double dpi, const FigureProvenance& provenance,
                  const QJsonObject& numbers, QString* error, QSize size) {
  if (!plot) return fail(error, "export: no plot to export");
  if (!(dpi >= 24.0 && dpi <= 2400.0)) return fail(error, QString("export %1: DPI must be in [24, 2400], got %2").arg(path).arg(dpi));
  const FigureFormat format = figureFormatFor(path);
  if (format == FigureFormat::Unknown)
    return fail(error, QString("export %1: expected a .png, .svg or .pdf file name, found suffix '%2'").arg(path, QFileInfo(path).suffix()));
  if (!size.isValid() || size.isEmpty()) size = plot->viewport().size();
  if (size.isEmpty()) size = QSize(800, 600);
  const int w = size.width(), h = size.height();
  const QString title = provenance.metric.isEmpty() ? QStringLiteral("mechscope figure") : provenance.metric;
  bool ok = false;
  switch (format) {
    case FigureFormat::Png:
      ok = plot->savePng(path, w, h, dpi / 96.0, -1, static_cast<int>(std::lround(dpi)), QCP::ruDotsPerInch);
      break;
    case FigureFormat::Pdf:
      ok = plot->savePdf(path, w, h, QCP::epNoCosmetic, "mechscope", title);
      break;
    case FigureFormat::Svg: {
      QSvgGenerator gen;
      gen.setFileName(path);
      gen.setSize(QSize(w, h));
      gen.setViewBox(QRect(0, 0, w, h));
      gen.setResolution(96);
      gen.setTitle(title);
      gen.setDescription(QString::fromUtf8(QJsonDocument(provenanceJson(provenance)).toJson(QJsonDocument::Compact)));
      QCPPainter painter;
      if (painter.begin(&gen)) {
        painter.setMode(QCPPainter::pmVectorized);
        painter.setMode(QCPPainter::pmNoCaching);
        plot->toPainter(&painter, w, h);
        ok = painter.end();
      }
      ok = ok && QFileInfo(path).size() > 0;
      break;
    }
    case FigureFormat::Unknown: break;
  }
  if (!ok) return fail(error, QString("export %1: the renderer could not write the file (check the folder exists and is writable)").arg(path));
  return writeFigureSidecar(path, dpi, size, provenance, numbers, error);
}

}  // namespace mechscope::views
