#pragma once
// Cache viewer: opens an attention cache written by the CLI or the GUI (HDF5, /activations/
// blocks.L.attn.hook_pattern [batch, head, query, key]) without reading it whole: only the shown head's
// [query, key] slice is read (on the job runner), so a 10 GB cache opens in the time of one map.
#include <QString>
#include <QStringList>
#include <QWidget>

#include <memory>
#include <vector>

#include "app/gui/job_runner.hpp"
#include "views/heatmap_data.hpp"

class QLabel;
class QSpinBox;

namespace mechscope::views {
class HeatmapView;
}

namespace mechscope::gui {

/// What a cache holds for the viewer.
struct CacheLayout {
  QString path;
  int layers = 0, batch = 0, heads = 0, positions = 0;
  std::vector<int> patternLayers;  ///< layers with a hook_pattern dataset, ascending
  QStringList labels;              ///< token strings of batch row 0 (empty when absent)
  qint64 fileBytes = 0;
};

/// Reads the layout (datasets, token strings; no activations). InputError for a broken file or one
/// without attention patterns.
CacheLayout readCacheLayout(const QString& path);
/// Reads one head's [query, key] map of batch row `row` (only the chunks it touches).
views::HeatmapData readCacheHead(const QString& path, const CacheLayout& layout, int layer, int head, int row = 0);

/// A window over one cache: layer/head/row pickers and the heatmap.
class CacheViewer : public QWidget {
  Q_OBJECT
 public:
  /// A viewer running its reads on `jobs`.
  explicit CacheViewer(JobRunner* jobs, QWidget* parent = nullptr);
  /// Opens `path` and shows layer 0 head 0 (asynchronously); returns the job id.
  int open(const QString& path);
  /// Shows another head (asynchronously); returns the job id (-1 when nothing is open).
  int showHead(int layer, int head, int row = 0);
  /// The layout of the open cache (empty path when none).
  const CacheLayout& layout() const { return m_layout; }
  /// The heatmap.
  views::HeatmapView* heatmap() const { return m_heatmap; }
  /// The info line.
  QString infoText() const;

 signals:
  /// A map is on screen (after open or showHead).
  void mapShown(int layer, int head, int row);
  /// A read failed; `message` says what to do.
  void failed(const QString& message);

 private:
  JobRunner* m_jobs;
  CacheLayout m_layout;
  QSpinBox *m_layer = nullptr, *m_head = nullptr, *m_row = nullptr;
  QLabel* m_info = nullptr;
  views::HeatmapView* m_heatmap = nullptr;
  bool m_updating = false;
};

}  // namespace mechscope::gui
