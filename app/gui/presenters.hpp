#pragma once
// Presenters: workspace values → the plain structs the views take.
#include "app/gui/analysis_result.hpp"
#include "app/gui/model_session.hpp"
#include "views/figure_export.hpp"
#include "views/heatmap_data.hpp"

namespace mechscope::gui {

/// One head's pattern as a heatmap (query rows, key columns, token labels, causal mask).
views::HeatmapData headHeatmap(const AttentionPatterns& patterns, int layer, int head);
/// Provenance of a figure of this workspace.
views::FigureProvenance figureProvenance(const ModelCard* card, const QString& prompt, int layer, int head,
                                         const QString& metric, const QString& normalisation);

}  // namespace mechscope::gui
