#include "app/gui/model_panel.hpp"

#include <QComboBox>
#include <QHBoxLayout>
#include <QShortcut>
#include <QToolButton>
#include <QLabel>
#include <QListWidget>
#include <QLocale>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QSplitter>
#include <QTimer>
#include <QVBoxLayout>

#include "core/common/errors.hpp"
#include "views/token_strip_view.hpp"

namespace mechscope::gui {

ModelPanel::ModelPanel(Workspace* ws, QWidget* parent) : QWidget(parent), m_ws(ws) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  m_card = new QLabel("No model. Open a Hugging Face folder (Ctrl+O) or the embedded planted model (Ctrl+E).", this);
  m_card->setWordWrap(true);
  m_card->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_card->setObjectName("modelCard");
  layout->addWidget(m_card);
  // Hook points: folded by default (hundreds of names); one click shows them.
  auto* hooksToggle = new QToolButton(this);
  hooksToggle->setObjectName("hooksToggle");
  hooksToggle->setCheckable(true);
  hooksToggle->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  hooksToggle->setArrowType(Qt::RightArrow);
  hooksToggle->setAutoRaise(true);
  hooksToggle->setText("Hook points");
  layout->addWidget(hooksToggle);
  m_hooks = new QListWidget(this);
  m_hooks->setMaximumHeight(140);
  m_hooks->setToolTip("Hook points (TransformerLens names) in forward order");
  m_hooks->hide();
  layout->addWidget(m_hooks);
  connect(hooksToggle, &QToolButton::toggled, this, [this, hooksToggle](bool on) {
    hooksToggle->setArrowType(on ? Qt::DownArrow : Qt::RightArrow);
    m_hooks->setVisible(on);
  });

  auto* promptLabel = new QLabel("<b>Prompt</b>", this);
  layout->addWidget(promptLabel);
  // Batch navigator: shown once prompts are read from a file; every panel uses the prompt picked here.
  m_batchRow = new QWidget(this);
  auto* batchLayout = new QHBoxLayout(m_batchRow);
  batchLayout->setContentsMargins(0, 0, 0, 0);
  auto* prev = new QToolButton(m_batchRow);
  prev->setArrowType(Qt::LeftArrow);
  prev->setToolTip("Previous prompt of the batch (Alt+PgUp)");
  auto* next = new QToolButton(m_batchRow);
  next->setArrowType(Qt::RightArrow);
  next->setToolTip("Next prompt of the batch (Alt+PgDown)");
  m_batchPicker = new QComboBox(m_batchRow);
  m_batchPicker->setObjectName("batchPicker");
  m_batchPicker->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_batchPicker->setMinimumContentsLength(12);
  m_batchCount = new QLabel(m_batchRow);
  batchLayout->addWidget(prev);
  batchLayout->addWidget(m_batchPicker, 1);
  batchLayout->addWidget(next);
  batchLayout->addWidget(m_batchCount);
  m_batchRow->hide();
  layout->addWidget(m_batchRow);
  connect(prev, &QToolButton::clicked, this, &ModelPanel::previousBatchPrompt);
  connect(next, &QToolButton::clicked, this, &ModelPanel::nextBatchPrompt);
  connect(new QShortcut(QKeySequence("Alt+PgDown"), this, nullptr, nullptr, Qt::WindowShortcut), &QShortcut::activated, this,
          &ModelPanel::nextBatchPrompt);
  connect(new QShortcut(QKeySequence("Alt+PgUp"), this, nullptr, nullptr, Qt::WindowShortcut), &QShortcut::activated, this,
          &ModelPanel::previousBatchPrompt);
  connect(m_batchPicker, qOverload<int>(&QComboBox::activated), this, [this](int i) { m_ws->setBatchIndex(i); });
  connect(m_ws, &Workspace::batchChanged, this, &ModelPanel::refreshBatch);
  connect(m_ws, &Workspace::batchIndexChanged, this, [this](int i) {
    const QSignalBlocker block(m_batchPicker);
    m_batchPicker->setCurrentIndex(i);
    m_batchCount->setText(QString("%1 / %2").arg(i + 1).arg(m_ws->batch().size()));
    setPromptText(m_ws->batch()[i]);
  });
  m_prompt = new QPlainTextEdit(this);
  m_prompt->setPlaceholderText("Type a prompt; its tokens appear below as you type.");
  m_prompt->setMaximumHeight(90);
  layout->addWidget(m_prompt);
  m_strip = new views::TokenStripView(this);
  auto* scroll = new QScrollArea(this);
  scroll->setWidget(m_strip);
  scroll->setWidgetResizable(true);
  scroll->setMinimumHeight(70);
  layout->addWidget(scroll, 1);
  m_error = new QLabel(this);
  m_error->setWordWrap(true);
  m_error->setStyleSheet("color: #c0392b;");
  m_error->hide();
  layout->addWidget(m_error);
  m_memory = new QLabel(this);
  m_memory->setWordWrap(true);
  m_memory->setObjectName("memoryEstimate");
  layout->addWidget(m_memory);
  auto* row = new QHBoxLayout();
  row->addStretch(1);
  auto* batch = new QPushButton("Prompts from file…", this);
  connect(batch, &QPushButton::clicked, this, &ModelPanel::batchRequested);
  row->addWidget(batch);
  m_run = new QPushButton("Run attention", this);
  m_run->setToolTip("Forward pass caching every layer's attention pattern (Ctrl+R)");
  m_run->setDefault(true);
  connect(m_run, &QPushButton::clicked, this, &ModelPanel::runRequested);
  row->addWidget(m_run);
  layout->addLayout(row);

  m_debounce = new QTimer(this);
  m_debounce->setSingleShot(true);
  m_debounce->setInterval(150);
  connect(m_debounce, &QTimer::timeout, this, &ModelPanel::tokenizeNow);
  connect(m_prompt, &QPlainTextEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
  connect(m_ws, &Workspace::modelChanged, this, [this] {
    refreshCard();
    tokenizeNow();
  });
  connect(m_ws, &Workspace::tokensChanged, this, &ModelPanel::refreshTokens);
  refreshCard();
}

void ModelPanel::setPromptText(const QString& text) {
  m_prompt->setPlainText(text);
  tokenizeNow();
}

void ModelPanel::nextBatchPrompt() {
  if (!m_ws->batch().isEmpty()) m_ws->setBatchIndex(m_ws->batchIndex() + 1);
}

void ModelPanel::previousBatchPrompt() {
  if (!m_ws->batch().isEmpty()) m_ws->setBatchIndex(m_ws->batchIndex() - 1);
}

void ModelPanel::refreshBatch() {
  const QSignalBlocker block(m_batchPicker);
  m_batchPicker->clear();
  const QStringList& b = m_ws->batch();
  for (int i = 0; i < b.size(); ++i) {
    const QString one = b[i].simplified();
    m_batchPicker->addItem(QString("%1: %2").arg(i + 1).arg(one.size() > 70 ? one.left(70) + "…" : one));
    m_batchPicker->setItemData(i, b[i], Qt::ToolTipRole);
  }
  m_batchRow->setVisible(b.size() > 1);
}

QString ModelPanel::promptText() const { return m_prompt->toPlainText(); }
QString ModelPanel::cardText() const { return m_card->text(); }
QString ModelPanel::memoryText() const { return m_memory->text(); }
QString ModelPanel::errorText() const { return m_error->isHidden() ? QString() : m_error->text(); }

void ModelPanel::tokenizeNow() {
  m_debounce->stop();
  const auto session = m_ws->session();
  if (!session) return;
  const QString text = m_prompt->toPlainText();
  if (text.trimmed().isEmpty()) {
    m_error->hide();
    m_ws->setPrompt(text, {});
    return;
  }
  try {
    PromptTokens t = tokenizePrompt(*session, text);  // cheap (no tensors): fine on the GUI thread
    m_error->hide();
    m_ws->setPrompt(text, std::move(t));
  } catch (const std::exception& e) {
    m_error->setText(QString::fromUtf8(e.what()));
    m_error->show();
  }
}

qint64 ModelPanel::estimatedBytes() const {
  const auto s = m_ws->session();
  return s ? patternBytes(s->card, static_cast<qint64>(m_ws->tokens().ids.size())) : 0;
}

void ModelPanel::refreshCard() {
  m_hooks->clear();
  const auto s = m_ws->session();
  if (!s) return;
  const ModelCard& c = s->card;
  const QLocale loc(QLocale::English);
  m_card->setText(QString("<b>%1</b> · %2%3<br>%4 layers × %5 heads (%6 kv) · d_model %7 · d_head %8 · d_mlp %9<br>"
                          "vocab %10 · context %11 · <b>%12</b> parameters · %13 · %14")
                      .arg(c.folder.section('/', -1).toHtmlEscaped(), c.family, c.planted ? " · planted circuits" : "")
                      .arg(c.layers).arg(c.heads).arg(c.kvHeads).arg(c.dModel).arg(c.dHead).arg(c.dMlp)
                      .arg(c.vocab).arg(c.nCtx).arg(loc.toString(c.parameters)).arg(c.device, c.dtype));
  m_card->setToolTip(c.folder);
  m_hooks->addItems(c.hooks);
  if (auto* t = findChild<QToolButton*>("hooksToggle")) t->setText(QString("Hook points (%1)").arg(c.hooks.size()));
}

void ModelPanel::refreshTokens() {
  const PromptTokens& t = m_ws->tokens();
  std::vector<qint64> ids(t.ids.begin(), t.ids.end());
  m_strip->setTokens(t.display, std::move(ids), t.offsets);
  const auto s = m_ws->session();
  if (!s || t.ids.empty()) {
    m_memory->clear();
    return;
  }
  const qint64 bytes = estimatedBytes();
  const QString n = QString::number(t.ids.size());
  m_memory->setText(QString("<b>%1 tokens</b> · caching every pattern needs ≈ <b>%2</b><br><small>%3 layers × %4 heads × %5 × %5 × 4 B</small>")
                        .arg(n, formatBytes(bytes), QString::number(s->card.layers), QString::number(s->card.heads), n));
}

}  // namespace mechscope::gui
