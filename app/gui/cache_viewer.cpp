#include "app/gui/cache_viewer.hpp"

#include <ATen/ATen.h>

#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QPointer>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>
#include <regex>

#include "app/gui/model_session.hpp"
#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "views/heatmap_view.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::gui {

namespace {
std::string patternPath(int layer) { return hook::pattern(layer); }
}  // namespace

CacheLayout readCacheLayout(const QString& path) {
  const auto reader = store::CacheReader::open(path.toStdString());
  CacheLayout c;
  c.path = path;
  c.fileBytes = QFileInfo(path).size();
  static const std::regex re(R"(^blocks\.(\d+)\.attn\.hook_pattern$)");
  for (const auto& d : reader.activations()) {
    std::smatch m;
    if (!std::regex_match(d.name, m, re)) continue;
    if (d.shape.size() != 4 || d.shape[2] != d.shape[3])
      throw InputError(path.toStdString() + ": " + d.name + " is not [batch, head, query, key]; was it written by mechscope?");
    const int layer = std::stoi(m[1]);
    c.patternLayers.push_back(layer);
    c.layers = std::max(c.layers, layer + 1);
    c.batch = static_cast<int>(d.shape[0]);
    c.heads = static_cast<int>(d.shape[1]);
    c.positions = static_cast<int>(d.shape[2]);
  }
  if (c.patternLayers.empty())
    throw InputError(path.toStdString() + ": holds no attention patterns (blocks.L.attn.hook_pattern); cache them with "
                     "`mechscope-cli run --hooks '*hook_pattern'` or File → Save attention cache");
  std::sort(c.patternLayers.begin(), c.patternLayers.end());
  const auto strings = reader.tokenStrings();
  if (!strings.empty())
    for (const auto& s : strings.front()) c.labels << QString::fromStdString(s);
  if (c.labels.size() != c.positions) c.labels.clear();
  return c;
}

views::HeatmapData readCacheHead(const QString& path, const CacheLayout& layout, int layer, int head, int row) {
  if (std::find(layout.patternLayers.begin(), layout.patternLayers.end(), layer) == layout.patternLayers.end())
    throw InputError(QString("%1: layer %2 has no cached pattern").arg(path).arg(layer).toStdString());
  if (head < 0 || head >= layout.heads || row < 0 || row >= layout.batch)
    throw InputError(QString("%1: head %2 / row %3 outside %4 heads × %5 rows").arg(path).arg(head).arg(row).arg(layout.heads).arg(layout.batch).toStdString());
  const auto reader = store::CacheReader::open(path.toStdString());
  const at::Tensor t = reader.readSlice(patternPath(layer), {store::SliceRange::at(row), store::SliceRange::at(head), store::SliceRange::all(),
                                                            store::SliceRange::all()})
                           .to(at::kFloat)
                           .contiguous();  // [query, key]
  views::HeatmapData d;
  d.rows = d.cols = layout.positions;
  d.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  d.rowLabels = d.colLabels = layout.labels;
  d.title = QString("Attention L%1 H%2 · %3").arg(layer).arg(head).arg(QFileInfo(path).fileName());
  d.causal = true;
  return d;
}

CacheViewer::CacheViewer(JobRunner* jobs, QWidget* parent) : QWidget(parent), m_jobs(jobs) {
  setWindowTitle("Attention cache");
  auto* layout = new QVBoxLayout(this);
  auto* row = new QHBoxLayout();
  m_layer = new QSpinBox(this);
  m_head = new QSpinBox(this);
  m_row = new QSpinBox(this);
  row->addWidget(new QLabel("Layer", this));
  row->addWidget(m_layer);
  row->addWidget(new QLabel("Head", this));
  row->addWidget(m_head);
  row->addWidget(new QLabel("Prompt", this));
  row->addWidget(m_row);
  m_info = new QLabel(this);
  row->addWidget(m_info, 1);
  layout->addLayout(row);
  m_heatmap = new views::HeatmapView(this);
  layout->addWidget(m_heatmap, 1);
  for (auto* s : {m_layer, m_head, m_row})
    connect(s, qOverload<int>(&QSpinBox::valueChanged), this, [this] {
      if (!m_updating) showHead(m_layer->value(), m_head->value(), m_row->value());
    });
}

QString CacheViewer::infoText() const { return m_info->text(); }

int CacheViewer::open(const QString& path) {
  QPointer<CacheViewer> self(this);
  m_info->setText("Opening " + path + " …");
  const int id = m_jobs->submit("Open cache " + QFileInfo(path).fileName(), [path, self](const RunContext& ctx) -> JobRunner::Deliver {
    ctx.step(0, 2, "reading the cache's layout");
    CacheLayout c = readCacheLayout(path);
    ctx.step(1, 2, "reading layer 0 head 0");
    views::HeatmapData d = readCacheHead(path, c, c.patternLayers.front(), 0, 0);
    ctx.step(2, 2, "reading layer 0 head 0");
    return [self, c = std::move(c), d = std::move(d)]() mutable {
      if (!self) return;
      self->m_layout = std::move(c);
      self->m_updating = true;
      self->m_layer->setRange(self->m_layout.patternLayers.front(), self->m_layout.patternLayers.back());
      self->m_layer->setValue(self->m_layout.patternLayers.front());
      self->m_head->setRange(0, self->m_layout.heads - 1);
      self->m_head->setValue(0);
      self->m_row->setRange(0, self->m_layout.batch - 1);
      self->m_row->setValue(0);
      self->m_updating = false;
      self->m_info->setText(QString("%1 · %2 · %3 layers × %4 heads · %5 prompts × %6 tokens · only the shown head is read")
                                .arg(QFileInfo(self->m_layout.path).fileName(), formatBytes(self->m_layout.fileBytes))
                                .arg(self->m_layout.patternLayers.size()).arg(self->m_layout.heads).arg(self->m_layout.batch)
                                .arg(self->m_layout.positions));
      const int layer = self->m_layout.patternLayers.front();
      self->m_heatmap->setData(std::move(d));
      emit self->mapShown(layer, 0, 0);
    };
  });
  connect(m_jobs, &JobRunner::failed, this, [this, id](int j, const QString& m) {
    if (j != id) return;
    m_info->setText("Failed: " + m);
    emit failed(m);
  });
  return id;
}

int CacheViewer::showHead(int layer, int head, int row) {
  if (m_layout.path.isEmpty()) return -1;
  QPointer<CacheViewer> self(this);
  const CacheLayout c = m_layout;
  return m_jobs->submit(QString("Read L%1 H%2").arg(layer).arg(head), [c, layer, head, row, self](const RunContext& ctx) -> JobRunner::Deliver {
    ctx.check();
    views::HeatmapData d = readCacheHead(c.path, c, layer, head, row);
    return [self, d = std::move(d), layer, head, row]() mutable {
      if (!self) return;
      self->m_heatmap->setData(std::move(d));
      emit self->mapShown(layer, head, row);
    };
  });
}

}  // namespace mechscope::gui
