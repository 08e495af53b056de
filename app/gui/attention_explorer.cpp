#include "app/gui/attention_explorer.hpp"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QScrollArea>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>

#include <cmath>

#include "app/gui/presenters.hpp"
#include "views/head_grid_view.hpp"
#include "views/heatmap_view.hpp"

namespace mechscope::gui {

AttentionExplorer::AttentionExplorer(Workspace* ws, QWidget* parent) : QWidget(parent), m_ws(ws) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  auto* bar = new QHBoxLayout();
  auto addLabel = [&](const QString& t) { bar->addWidget(new QLabel(t, this)); };
  addLabel("Layer");
  m_layer = new QSpinBox(this);
  m_layer->setToolTip("Layer ([ and ] step through layers)");
  bar->addWidget(m_layer);
  addLabel("Head");
  m_head = new QSpinBox(this);
  m_head->setToolTip("Head (, and . step through heads)");
  bar->addWidget(m_head);
  bar->addSpacing(16);
  m_log = new QCheckBox("Log scale", this);
  bar->addWidget(m_log);
  addLabel("Exclude first");
  m_exclude = new QSpinBox(this);
  m_exclude->setRange(0, 1 << 20);
  m_exclude->setSuffix(" keys");
  m_exclude->setToolTip("Hide keys 0..k-1: attention sinks (BOS) dominate the colour range");
  bar->addWidget(m_exclude);
  m_rowNorm = new QCheckBox("Row-normalise", this);
  bar->addWidget(m_rowNorm);
  m_clip = new QCheckBox("Clip at", this);
  bar->addWidget(m_clip);
  m_clipHigh = new QDoubleSpinBox(this);
  m_clipHigh->setRange(1e-6, 1.0);
  m_clipHigh->setDecimals(4);
  m_clipHigh->setSingleStep(0.05);
  m_clipHigh->setValue(0.5);
  bar->addWidget(m_clipHigh);
  bar->addStretch(1);
  layout->addLayout(bar);

  auto* split = new QSplitter(Qt::Horizontal, this);
  m_grid = new views::HeadGridView(split);
  m_grid->setThumbnailSize(84);
  auto* gridScroll = new QScrollArea(split);
  gridScroll->setWidget(m_grid);
  gridScroll->setWidgetResizable(true);
  gridScroll->setMinimumWidth(220);
  split->addWidget(gridScroll);
  auto* right = new QWidget(split);
  auto* rl = new QVBoxLayout(right);
  rl->setContentsMargins(0, 0, 0, 0);
  m_empty = new QLabel("Open a model, type a prompt and press Run attention (Ctrl+R) to see its attention maps.", right);
  m_empty->setAlignment(Qt::AlignCenter);
  m_empty->setWordWrap(true);
  rl->addWidget(m_empty);
  m_heatmap = new views::HeatmapView(right);
  m_heatmap->hide();
  rl->addWidget(m_heatmap, 1);
  m_hover = new QLabel(" ", right);
  m_hover->setTextInteractionFlags(Qt::TextSelectableByMouse);
  rl->addWidget(m_hover);
  split->addWidget(right);
  split->setStretchFactor(0, 0);
  split->setStretchFactor(1, 1);
  split->setSizes({260, 900});
  layout->addWidget(split, 1);

  connect(m_layer, qOverload<int>(&QSpinBox::valueChanged), this, &AttentionExplorer::refreshHead);
  connect(m_head, qOverload<int>(&QSpinBox::valueChanged), this, &AttentionExplorer::refreshHead);
  connect(m_grid, &views::HeadGridView::headClicked, this, [this](int l, int h) { showHead(l, h); });
  for (auto* c : {m_log, m_rowNorm, m_clip}) connect(c, &QCheckBox::toggled, this, &AttentionExplorer::applyOptions);
  connect(m_exclude, qOverload<int>(&QSpinBox::valueChanged), this, &AttentionExplorer::applyOptions);
  connect(m_clipHigh, qOverload<double>(&QDoubleSpinBox::valueChanged), this, &AttentionExplorer::applyOptions);
  connect(m_heatmap, &views::HeatmapView::cellHovered, this, [this](int r, int c, double v) {
    const auto& d = m_heatmap->data();
    const QString q = r < d.rowLabels.size() ? d.rowLabels[r] : QString::number(r);
    const QString k = c < d.colLabels.size() ? d.colLabels[c] : QString::number(c);
    m_hover->setText(QString("query '%1' #%2 → key '%3' #%4 = %5").arg(q).arg(r).arg(k).arg(c).arg(v, 0, 'g', 5));
  });
  connect(m_ws, &Workspace::patternsChanged, this, &AttentionExplorer::refreshPatterns);
  connect(m_ws, &Workspace::headRequested, this, &AttentionExplorer::showHead);
}

int AttentionExplorer::layer() const { return m_layer->value(); }
int AttentionExplorer::head() const { return m_head->value(); }
QString AttentionExplorer::hoverText() const { return m_hover->text(); }

void AttentionExplorer::showHead(int layer, int head) {
  const QSignalBlocker b(m_layer);
  m_layer->setValue(layer);
  m_head->setValue(head);
  refreshHead();
}

void AttentionExplorer::refreshPatterns() {
  const auto p = m_ws->patterns();
  m_heatmap->setVisible(p != nullptr);
  m_empty->setVisible(p == nullptr);
  if (!p) return;
  {
    const QSignalBlocker b1(m_layer), b2(m_head);
    m_layer->setRange(0, p->layers - 1);
    m_head->setRange(0, p->heads - 1);
  }
  m_grid->setProperty("shownLayer", -1);
  refreshHead();
}

void AttentionExplorer::refreshHead() {
  const auto p = m_ws->patterns();
  if (!p) return;
  const int l = m_layer->value(), h = m_head->value();
  if (m_grid->property("shownLayer").toInt() != l || m_grid->layer() != l || m_grid->headCount() != p->heads) {
    m_grid->setHeads(l, p->heads, p->positions, p->positions, p->perLayer[static_cast<std::size_t>(l)], true);
    m_grid->setProperty("shownLayer", l);
  }
  m_grid->setSelectedHead(h);
  m_heatmap->setData(headHeatmap(*p, l, h));
  applyOptions();
}

void AttentionExplorer::applyOptions() {
  views::HeatmapOptions o;
  o.logScale = m_log->isChecked();
  o.excludeFirstK = m_exclude->value();
  o.rowNormalise = m_rowNorm->isChecked();
  if (m_clip->isChecked()) {
    o.clipLow = o.logScale ? m_clipHigh->value() * 1e-4 : 0.0;
    o.clipHigh = m_clipHigh->value();
  }
  m_heatmap->setOptions(o);
}

views::FigureProvenance AttentionExplorer::provenance() const {
  const auto s = m_ws->session();
  const auto& o = m_heatmap->options();
  QStringList norm;
  if (o.rowNormalise) norm << "row-normalised (÷ row max)";
  if (o.logScale) norm << "log10 colour scale";
  if (o.excludeFirstK > 0) norm << QString("first %1 keys excluded").arg(o.excludeFirstK);
  if (!std::isnan(o.clipHigh)) norm << QString("clipped to [%1, %2]").arg(o.clipLow).arg(o.clipHigh);
  return figureProvenance(s ? &s->card : nullptr, m_ws->prompt(), layer(), head(), "attention pattern (softmax probability)",
                          norm.isEmpty() ? "none" : norm.join("; "));
}

}  // namespace mechscope::gui
