#include "app/gui/presenters.hpp"

namespace mechscope::gui {

views::HeatmapData headHeatmap(const AttentionPatterns& patterns, int layer, int head) {
  views::HeatmapData d;
  d.rows = d.cols = patterns.positions;
  d.values = patterns.head(layer, head);
  d.rowLabels = patterns.labels;
  d.colLabels = patterns.labels;
  d.title = QString("Attention L%1 H%2").arg(layer).arg(head);
  d.causal = true;
  return d;
}

views::FigureProvenance figureProvenance(const ModelCard* card, const QString& prompt, int layer, int head,
                                         const QString& metric, const QString& normalisation) {
  views::FigureProvenance p;
  if (card) {
    p.model = card->folder;
    p.extra["family"] = card->family;
    p.extra["dtype"] = card->dtype;
    p.extra["device"] = card->device;
  }
  p.prompt = prompt;
  p.layer = layer >= 0 ? QString::number(layer) : QString();
  p.head = head >= 0 ? QString::number(head) : QString();
  p.metric = metric;
  p.normalisation = normalisation;
  return p;
}

}  // namespace mechscope::gui
