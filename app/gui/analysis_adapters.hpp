#pragma once
// Analysis adapters: each analysis panel is a parameters form → run function (on the job runner) →
// AnalysisResult (score grids, line plots). One adapter per registry entry: plugins get theirs from the
// table (plugin_adapter.hpp); the ones whose analysis has not landed are listed as unavailable with a note.
#include <QJsonObject>
#include <QString>
#include <QStringList>
#include <QVariant>

#include <functional>
#include <memory>
#include <vector>

#include "app/gui/analysis_result.hpp"
#include "app/gui/head_patching.hpp"
#include "app/gui/model_session.hpp"
#include "core/common/run_context.hpp"

namespace mechscope::gui {

/// One field of a parameters form: an int/double (range), a bool, a string, or a choice.
struct ParamSpec {
  QString key, label;
  QVariant defaultValue;  ///< its type picks the editor (int, double, bool, QString)
  double minimum = 0.0, maximum = 1e9;
  QStringList choices;    ///< non-empty: a combo box of these strings
  QString tooltip;
};

/// What a run sees: immutable snapshots of the workspace.
struct AnalysisInput {
  std::shared_ptr<const ModelSession> session;
  PromptTokens tokens;
  QString prompt;
  std::shared_ptr<const PatchingSession> patching;
  std::vector<AnalysisResult> results;  ///< the workspace's finished results (overlap reads circuits)
};

/// A thin adapter from the panel to an analysis.
struct AnalysisAdapter {
  QString name;       ///< registry name
  QString title;      ///< tab title
  QString summary;    ///< one line
  bool available = false;
  QString note;       ///< why unavailable / what it needs
  bool needsPatching = false;  ///< needs the patching panel's clean/corrupted pair
  bool needsModel = true;      ///< false: runs without a model (e.g. overlap of two circuit files)
  std::vector<ParamSpec> params;
  /// Runs on the compute thread; throws InputError for bad parameters.
  std::function<AnalysisResult(const AnalysisInput&, const QJsonObject& params, const RunContext&)> run;
  /// Optional, on the compute thread: what clicking an edge of the result's circuit graph does (e.g. patch
  /// it), given the result's form values and the edge's upstream node, downstream node and input ("q",
  /// "k", "v" or ""); returns a line for the status bar.
  std::function<QString(const AnalysisInput&, const QJsonObject& params, const QString& upstream, const QString& downstream,
                        const QString& receiver, const RunContext&)>
      edgeAction;
};

/// Every adapter, in the registry's order with the attention overview first; plugins' adapters are
/// derived from their table entries (plugin_adapter.hpp), the others are wired by hand.
std::vector<AnalysisAdapter> analysisAdapters();

}  // namespace mechscope::gui
