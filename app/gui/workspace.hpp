#pragma once
// Workspace: the open document — model, prompt, tokens, attention patterns, patching pair and analysis
// results — with change signals. No widgets; mutated only on the GUI thread (jobs deliver here).
#include <QObject>
#include <QString>
#include <QStringList>

#include <memory>
#include <vector>

#include "app/gui/analysis_result.hpp"
#include "app/gui/head_patching.hpp"
#include "app/gui/model_session.hpp"

namespace mechscope::gui {

/// The document of the workbench.
class Workspace : public QObject {
  Q_OBJECT
 public:
  /// An empty workspace.
  explicit Workspace(QObject* parent = nullptr);

  /// The loaded model (null when none).
  std::shared_ptr<const ModelSession> session() const { return m_session; }
  /// The prompt text.
  const QString& prompt() const { return m_prompt; }
  /// Its tokens (empty when not tokenized).
  const PromptTokens& tokens() const { return m_tokens; }
  /// The attention patterns of the prompt (null when not computed).
  std::shared_ptr<const AttentionPatterns> patterns() const { return m_patterns; }
  /// The clean/corrupted pair of the patching panel (null when not built).
  std::shared_ptr<const PatchingSession> patching() const { return m_patching; }
  /// The batch of prompts read from a file (empty: none); the prompt editor steps through it.
  const QStringList& batch() const { return m_batch; }
  /// Index of the batch prompt in use (-1 without a batch).
  int batchIndex() const { return m_batchIndex; }
  /// Finished analyses, oldest first.
  const std::vector<AnalysisResult>& results() const { return m_results; }

  /// Replaces the model (clears tokens, patterns, patching pair).
  void setSession(std::shared_ptr<const ModelSession> session);
  /// Sets the prompt and its tokens (clears patterns).
  void setPrompt(const QString& prompt, PromptTokens tokens);
  /// Sets the attention patterns.
  void setPatterns(std::shared_ptr<const AttentionPatterns> patterns);
  /// Sets the patching pair.
  void setPatching(std::shared_ptr<const PatchingSession> patching);
  /// Replaces the batch of prompts and selects its first one (an empty list clears it).
  void setBatch(QStringList prompts);
  /// Selects batch prompt `index` (clamped); emits batchIndexChanged when it changes.
  void setBatchIndex(int index);
  /// Appends a result.
  void addResult(AnalysisResult result);
  /// Asks every view to show head (layer, head)'s attention map.
  void requestHead(int layer, int head);

 signals:
  /// The model changed (or was closed).
  void modelChanged();
  /// The prompt's tokens changed.
  void tokensChanged();
  /// New attention patterns.
  void patternsChanged();
  /// A new patching pair.
  void patchingChanged();
  /// A new batch was set (or cleared).
  void batchChanged();
  /// Another prompt of the batch was selected: its text is batch()[index].
  void batchIndexChanged(int index);
  /// A result was added at `index`.
  void resultAdded(int index);
  /// Somebody clicked a head: open its attention map.
  void headRequested(int layer, int head);

 private:
  std::shared_ptr<const ModelSession> m_session;
  QString m_prompt;
  PromptTokens m_tokens;
  std::shared_ptr<const AttentionPatterns> m_patterns;
  std::shared_ptr<const PatchingSession> m_patching;
  std::vector<AnalysisResult> m_results;
  QStringList m_batch;
  int m_batchIndex = -1;
};

}  // namespace mechscope::gui
