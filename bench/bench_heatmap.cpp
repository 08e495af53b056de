// Frame time of the attention-map widget on long inputs: panning an 8192 × 8192 heatmap
// (replot after one pan step, offscreen platform, immediate refresh), at three zoom levels, plus the
// one-off cost of setData (display transform + level-of-detail pyramid).
// Run: QT_QPA_PLATFORM=offscreen ./build/bench/bench_heatmap   (results go to docs/benchmarks.md)
#include <benchmark/benchmark.h>
#include <qcustomplot.h>

#include <QApplication>

#include <chrono>
#include <memory>
#include <random>

#include "views/heatmap_view.hpp"
#include "views/offscreen.hpp"

namespace {

using mechscope::views::HeatmapData;
using mechscope::views::HeatmapView;

constexpr int kN = 8192;

// A causal attention-like pattern: a sink on key 0, a diagonal band and random mass, rows sum to 1.
const HeatmapData& bigPattern() {
  static const HeatmapData data = [] {
    HeatmapData d;
    d.rows = d.cols = kN;
    d.values.assign(static_cast<std::size_t>(kN) * kN, 0.0f);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int i = 0; i < kN; ++i) {
      float* row = d.values.data() + static_cast<std::size_t>(i) * kN;
      float sum = 0.0f;
      for (int j = 0; j <= i; ++j) sum += (row[j] = (j == 0 ? 50.0f : 0.0f) + (i - j < 8 ? 5.0f : 0.0f) + u(rng) * 0.1f);
      for (int j = 0; j <= i; ++j) row[j] /= sum;
    }
    d.title = "8192 × 8192 pan benchmark";
    return d;
  }();
  return data;
}

HeatmapView& view() {
  static std::unique_ptr<HeatmapView> v = [] {
    auto w = std::make_unique<HeatmapView>();
    w->resize(1200, 900);
    w->setData(bigPattern());
    w->show();
    QApplication::processEvents();
    return w;
  }();
  return *v;
}

// Arg = visible window in cells (8192 = whole matrix, aggregated; 1024; 128 = full resolution).
void BM_HeatmapPan8K(benchmark::State& state) {
  HeatmapView& v = view();
  const double window = static_cast<double>(state.range(0));
  v.setVisibleWindow(kN / 2 - window / 2 - 0.5, kN / 2 + window / 2 - 0.5, kN / 2 - window / 2 - 0.5, kN / 2 + window / 2 - 0.5);
  QCustomPlot* plot = v.plot();
  plot->replot(QCustomPlot::rpImmediateRefresh);
  const double step = window * 0.02;  // a drag step of ~2 % of the view, as a mouse drag produces
  double direction = 1.0;
  int frames = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (frames % 40 == 20) direction = -direction;  // stay inside the matrix
    plot->xAxis->moveRange(step * direction);
    plot->yAxis->moveRange(step * direction);
    plot->replot(QCustomPlot::rpImmediateRefresh);
    ++frames;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state.counters["ms_per_frame"] = 1000.0 * seconds / frames;
  state.counters["fps"] = frames / seconds;
  state.counters["level"] = v.displayedLevel();
  state.counters["cells_drawn"] = static_cast<double>(v.displayedCells().width()) * v.displayedCells().height();
  state.SetLabel(v.aggregationText().isEmpty() ? "full resolution" : v.aggregationText().toStdString());
}
BENCHMARK(BM_HeatmapPan8K)->Arg(8192)->Arg(1024)->Arg(128)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Wheel zoom in and out around the centre (every frame changes the level of detail or the window).
void BM_HeatmapZoom8K(benchmark::State& state) {
  HeatmapView& v = view();
  v.resetView();
  QCustomPlot* plot = v.plot();
  int frames = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const double f = (frames / 20) % 2 == 0 ? 0.85 : 1.0 / 0.85;
    plot->xAxis->scaleRange(f);
    plot->yAxis->scaleRange(f);
    plot->replot(QCustomPlot::rpImmediateRefresh);
    ++frames;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state.counters["ms_per_frame"] = 1000.0 * seconds / frames;
  state.counters["fps"] = frames / seconds;
}
BENCHMARK(BM_HeatmapZoom8K)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Opening an 8K × 8K pattern: validation, display transform and the max pyramid.
void BM_HeatmapSetData8K(benchmark::State& state) {
  HeatmapView v;
  v.resize(1200, 900);
  for (auto _ : state) v.setData(bigPattern());
}
BENCHMARK(BM_HeatmapSetData8K)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  mechscope::views::ensureGuiApplication();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
