#pragma once
// Model card (family, sizes, parameter count, hook list) and the prompt editor with its live token strip
// and the memory estimate of caching the prompt's patterns.
#include <QWidget>

#include "app/gui/workspace.hpp"

class QComboBox;
class QLabel;
class QListWidget;
class QPlainTextEdit;
class QPushButton;
class QTimer;

namespace mechscope::views {
class TokenStripView;
}

namespace mechscope::gui {

/// Model card + prompt editor + token strip.
class ModelPanel : public QWidget {
  Q_OBJECT
 public:
  /// A panel over `ws`.
  explicit ModelPanel(Workspace* ws, QWidget* parent = nullptr);

  /// Sets the prompt text (tokenized at once).
  void setPromptText(const QString& text);
  /// The prompt editor's text.
  QString promptText() const;
  /// Tokenizes the editor's text into the workspace now (normally 150 ms after typing stops).
  void tokenizeNow();
  /// Bytes a pattern cache of the current prompt would hold (0 without a model).
  qint64 estimatedBytes() const;

  /// The token strip (tests).
  views::TokenStripView* tokenStrip() const { return m_strip; }
  /// The model card's text (tests).
  QString cardText() const;
  /// The memory estimate line.
  QString memoryText() const;
  /// The batch picker (hidden without a batch; tests).
  QComboBox* batchPicker() const { return m_batchPicker; }
  /// Selects the next / previous prompt of the batch (Alt+PgDown / Alt+PgUp).
  void nextBatchPrompt();
  void previousBatchPrompt();
  /// The tokenizer's error line (empty when fine).
  QString errorText() const;

 signals:
  /// The user asked to run the attention patterns.
  void runRequested();
  /// The user wants the prompts of a file (one per line) as a batch.
  void batchRequested();

 private:
  void refreshCard();
  void refreshTokens();
  void refreshBatch();
  Workspace* m_ws;
  QLabel* m_card = nullptr;
  QListWidget* m_hooks = nullptr;
  QPlainTextEdit* m_prompt = nullptr;
  views::TokenStripView* m_strip = nullptr;
  QLabel* m_memory = nullptr;
  QLabel* m_error = nullptr;
  QPushButton* m_run = nullptr;
  QTimer* m_debounce = nullptr;
  QWidget* m_batchRow = nullptr;
  QComboBox* m_batchPicker = nullptr;
  QLabel* m_batchCount = nullptr;
};

}  // namespace mechscope::gui
