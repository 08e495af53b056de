// Time to open a large attention cache in the GUI and show the first map (issue 11, GUI case):
// writes a synthetic cache of about --gb GB (store's synthetic writer: every hook of every layer, patterns
// [1, heads, pos, pos] fp32, chunked as the CLI writes them) unless --path names an existing one, then on
// the offscreen platform opens it in the CacheViewer (layout + layer 0 head 0 read on the job runner,
// heatmap set and replotted) and reports the wall time; then another head; deletes the file it wrote.
// Run: QT_QPA_PLATFORM=offscreen ./build/bench/bench_gui_open_cache --gb 10 --dir /tmp   (docs/benchmarks.md)
#include <qcustomplot.h>

#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QTimer>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "app/gui/cache_viewer.hpp"
#include "app/gui/job_runner.hpp"
#include "store/synthetic_cache.hpp"
#include "views/heatmap_view.hpp"
#include "views/offscreen.hpp"

namespace {

/// Waits (event loop running) until `viewer` shows a map; returns false on failure or after 10 minutes.
bool waitForMap(mechscope::gui::CacheViewer& viewer) {
  QEventLoop loop;
  bool ok = false;
  auto a = QObject::connect(&viewer, &mechscope::gui::CacheViewer::mapShown, &loop, [&] {
    ok = true;
    loop.quit();
  });
  auto b = QObject::connect(&viewer, &mechscope::gui::CacheViewer::failed, &loop, [&](const QString& m) {
    std::fprintf(stderr, "failed: %s\n", m.toUtf8().constData());
    loop.quit();
  });
  QTimer::singleShot(600000, &loop, &QEventLoop::quit);
  loop.exec();
  QObject::disconnect(a);
  QObject::disconnect(b);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  double gb = 10.0;
  std::string dir = "/tmp", path;
  int pos = 4096, heads = 8;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--gb") gb = std::stod(next());
    else if (a == "--dir") dir = next();
    else if (a == "--path") path = next();
    else if (a == "--pos") pos = std::stoi(next());
    else if (a == "--heads") heads = std::stoi(next());
    else if (a == "--keep") keep = true;
    else {
      std::fprintf(stderr, "usage: %s [--gb 10] [--dir /tmp] [--pos 4096] [--heads 8] [--path existing.h5] [--keep]\n", argv[0]);
      return 2;
    }
  }
  mechscope::views::ensureGuiApplication();
  bool wrote = false;
  if (path.empty()) {
    mechscope::store::SyntheticShape shape;
    shape.pos = pos;
    shape.heads = heads;
    shape.dModel = 64;
    shape.nLayers = 1;
    while (static_cast<double>(mechscope::store::syntheticCacheBytes(shape)) < gb * 1e9) ++shape.nLayers;
    path = dir + "/mechscope_bench_gui_open_cache.h5";
    std::printf("writing %s: %d layers x %lld heads x %lld x %lld patterns, %.2f GB of activations ...\n", path.c_str(), shape.nLayers,
                static_cast<long long>(shape.heads), static_cast<long long>(shape.pos), static_cast<long long>(shape.pos),
                static_cast<double>(mechscope::store::syntheticCacheBytes(shape)) / 1e9);
    std::fflush(stdout);
    const auto stats = mechscope::store::streamSyntheticCache(path, shape);
    std::printf("written in %.1f s (%.2f GB on disk)\n", stats.seconds, static_cast<double>(std::filesystem::file_size(path)) / 1e9);
    wrote = true;
  }
  int rc = 0;
  {
    mechscope::gui::JobRunner jobs;
    mechscope::gui::CacheViewer viewer(&jobs);
    viewer.resize(1200, 900);
    viewer.show();
    QApplication::processEvents();

    QElapsedTimer t;
    t.start();
    viewer.open(QString::fromStdString(path));
    if (!waitForMap(viewer)) return 1;
    viewer.heatmap()->plot()->replot(QCustomPlot::rpImmediateRefresh);
    QApplication::processEvents();
    const double openMs = static_cast<double>(t.nsecsElapsed()) / 1e6;
    const auto& c = viewer.layout();
    std::printf("open %.2f GB cache and show the first map (L0 H0, %d x %d): %.1f ms\n", static_cast<double>(c.fileBytes) / 1e9, c.positions,
                c.positions, openMs);

    t.restart();
    viewer.showHead(c.patternLayers.back(), c.heads - 1);
    if (!waitForMap(viewer)) return 1;
    viewer.heatmap()->plot()->replot(QCustomPlot::rpImmediateRefresh);
    QApplication::processEvents();
    std::printf("switch to L%d H%d: %.1f ms\n", c.patternLayers.back(), c.heads - 1, static_cast<double>(t.nsecsElapsed()) / 1e6);
    std::printf("%s\n", viewer.infoText().toUtf8().constData());
  }
  if (wrote && !keep) {
    std::filesystem::remove(path);
    std::printf("deleted %s\n", path.c_str());
  }
  return rc;
}
