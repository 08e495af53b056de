#include "app/gui/analysis_panel.hpp"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>

#include "views/circuit_graph_view.hpp"
#include "views/line_plot_view.hpp"
#include "views/score_grid_view.hpp"

namespace mechscope::gui {

AnalysisPanel::AnalysisPanel(AnalysisAdapter adapter, Workspace* ws, JobRunner* jobs, QWidget* parent)
    : QWidget(parent), m_adapter(std::move(adapter)), m_ws(ws), m_jobs(jobs) {
  setObjectName("analysis-" + m_adapter.name);
  auto* layout = new QVBoxLayout(this);
  auto* summary = new QLabel(QString("<b>%1</b> — %2").arg(m_adapter.name.toHtmlEscaped(), m_adapter.summary.toHtmlEscaped()), this);
  summary->setWordWrap(true);
  layout->addWidget(summary);
  if (!m_adapter.note.isEmpty()) {
    auto* note = new QLabel(m_adapter.note, this);
    note->setWordWrap(true);
    note->setStyleSheet(m_adapter.available ? "color: palette(mid);" : "color: #b9770e;");
    layout->addWidget(note);
  }
  auto* formHolder = new QWidget(this);  // long forms (retrieval's grid) scroll instead of growing the window
  m_form = new QFormLayout(formHolder);
  m_form->setContentsMargins(0, 0, 0, 0);
  for (const auto& p : m_adapter.params) {
    QWidget* editor = nullptr;
    if (!p.choices.isEmpty()) {
      auto* c = new QComboBox(this);
      c->addItems(p.choices);
      c->setCurrentText(p.defaultValue.toString());
      editor = c;
    } else if (p.defaultValue.typeId() == QMetaType::Bool) {
      auto* c = new QCheckBox(this);
      c->setChecked(p.defaultValue.toBool());
      editor = c;
    } else if (p.defaultValue.typeId() == QMetaType::Int) {
      auto* s = new QSpinBox(this);
      s->setRange(static_cast<int>(p.minimum), static_cast<int>(std::min(p.maximum, 2e9)));
      s->setValue(p.defaultValue.toInt());
      editor = s;
    } else if (p.defaultValue.typeId() == QMetaType::Double) {
      auto* s = new QDoubleSpinBox(this);
      s->setRange(p.minimum, p.maximum);
      s->setDecimals(4);
      s->setValue(p.defaultValue.toDouble());
      editor = s;
    } else {
      editor = new QLineEdit(p.defaultValue.toString(), this);
    }
    editor->setToolTip(p.tooltip);
    m_form->addRow(p.label, editor);
    m_editors.emplace_back(p.key, editor);
  }
  auto* formScroll = new QScrollArea(this);
  formScroll->setWidget(formHolder);
  formScroll->setWidgetResizable(true);
  formScroll->setFrameShape(QFrame::NoFrame);
  formScroll->setMaximumHeight(std::min(formHolder->sizeHint().height() + 4, 320));
  layout->addWidget(formScroll);
  auto* row = new QHBoxLayout();
  m_run = new QPushButton("Run", this);
  m_run->setEnabled(m_adapter.available);
  m_cancel = new QPushButton("Cancel", this);
  m_cancel->setEnabled(false);
  m_progress = new QProgressBar(this);
  m_progress->setRange(0, 1);
  m_progress->setValue(0);
  row->addWidget(m_run);
  row->addWidget(m_cancel);
  row->addWidget(m_progress, 1);
  layout->addLayout(row);
  m_status = new QLabel(this);
  m_status->setWordWrap(true);
  layout->addWidget(m_status);
  auto* scroll = new QScrollArea(this);
  auto* holder = new QWidget(scroll);
  m_results = new QVBoxLayout(holder);
  m_results->addStretch(1);
  scroll->setWidget(holder);
  scroll->setWidgetResizable(true);
  layout->addWidget(scroll, 1);

  connect(m_run, &QPushButton::clicked, this, [this] { run(); });
  connect(m_cancel, &QPushButton::clicked, this, &AnalysisPanel::cancel);
  connect(m_jobs, &JobRunner::progress, this, [this](int id, qint64 done, qint64 total, const QString& stage) {
    if (id != m_job) return;
    m_progress->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
    m_progress->setValue(static_cast<int>(done));
    m_status->setText(stage);
  });
  auto finish = [this](int id, const QString& text) {
    if (id != m_job) return;
    m_job = -1;
    m_run->setEnabled(true);
    m_cancel->setEnabled(false);
    m_status->setText(text);
  };
  connect(m_jobs, &JobRunner::finished, this, [finish](int id) { finish(id, "Done."); });
  connect(m_jobs, &JobRunner::failed, this, [finish](int id, const QString& m) { finish(id, "Failed: " + m); });
  connect(m_jobs, &JobRunner::failed, this, [this](int id, const QString& m) {
    if (id == m_edgeJob) m_status->setText("Edge patching failed: " + m);
  });
  connect(m_jobs, &JobRunner::cancelled, this, [this, finish](int id) {
    if (id == m_job) m_progress->setValue(0);
    finish(id, "Cancelled.");
  });
}

QJsonObject AnalysisPanel::params() const {
  QJsonObject o;
  for (const auto& [key, w] : m_editors) {
    if (auto* c = qobject_cast<QComboBox*>(w)) o[key] = c->currentText();
    else if (auto* b = qobject_cast<QCheckBox*>(w)) o[key] = b->isChecked();
    else if (auto* s = qobject_cast<QSpinBox*>(w)) o[key] = s->value();
    else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) o[key] = d->value();
    else if (auto* e = qobject_cast<QLineEdit*>(w)) o[key] = e->text();
  }
  return o;
}

void AnalysisPanel::setParam(const QString& key, const QVariant& value) {
  for (const auto& [k, w] : m_editors) {
    if (k != key) continue;
    if (auto* c = qobject_cast<QComboBox*>(w)) c->setCurrentText(value.toString());
    else if (auto* b = qobject_cast<QCheckBox*>(w)) b->setChecked(value.toBool());
    else if (auto* s = qobject_cast<QSpinBox*>(w)) s->setValue(value.toInt());
    else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) d->setValue(value.toDouble());
    else if (auto* e = qobject_cast<QLineEdit*>(w)) e->setText(value.toString());
  }
}

QString AnalysisPanel::statusText() const { return m_status->text(); }

int AnalysisPanel::run() {
  if (!m_adapter.available || !m_adapter.run) {
    m_status->setText("Not available: " + m_adapter.note);
    return -1;
  }
  if (m_job >= 0) return m_job;
  AnalysisInput in{m_ws->session(), m_ws->tokens(), m_ws->prompt(), m_ws->patching(), m_ws->results()};
  if (!in.session && m_adapter.needsModel) {
    m_status->setText("Open a model first (File → Open model, or Ctrl+E for the embedded planted model).");
    return -1;
  }
  if (m_adapter.needsPatching && !in.patching) {
    m_status->setText("Needs the clean/corrupted pair: open the Patching panel and press Run clean + corrupted.");
    return -1;
  }
  const QJsonObject params = this->params();
  auto run = m_adapter.run;
  QPointer<AnalysisPanel> self(this);
  QPointer<Workspace> ws(m_ws);
  m_job = m_jobs->submit(m_adapter.title, [run, in, params, self, ws](const RunContext& ctx) -> JobRunner::Deliver {
    AnalysisResult r = run(in, params, ctx);
    if (in.session) r.model = in.session->card.folder;
    r.prompt = in.prompt;
    return [r, self, ws] {
      if (ws) ws->addResult(r);
      if (self) self->showResult(r);
    };
  });
  m_run->setEnabled(false);
  m_cancel->setEnabled(true);
  m_progress->setRange(0, 0);  // busy until the first report
  m_status->setText("Queued…");
  return m_job;
}

int AnalysisPanel::patchEdge(int edge) {
  if (!m_adapter.edgeAction || m_result.graphs.empty() || edge < 0 || edge >= static_cast<int>(m_result.graphs.front().edges.size()))
    return -1;
  const auto& g = m_result.graphs.front();
  const auto& e = g.edges[static_cast<std::size_t>(edge)];
  const QString up = g.nodes[static_cast<std::size_t>(e.from)].name, down = g.nodes[static_cast<std::size_t>(e.to)].name, recv = e.receiver;
  const AnalysisInput in{m_ws->session(), m_ws->tokens(), m_ws->prompt(), m_ws->patching(), m_ws->results()};
  auto action = m_adapter.edgeAction;
  const QJsonObject form = m_result.params;
  QPointer<AnalysisPanel> self(this);
  m_status->setText(QString("Patching %1 → %2…").arg(up, down));
  return m_edgeJob = m_jobs->submit(m_adapter.title + " edge", [action, in, form, up, down, recv, self](const RunContext& ctx) -> JobRunner::Deliver {
    const QString line = action(in, form, up, down, recv, ctx);
    return [line, self] {
      if (self) self->m_status->setText(line);
    };
  });
}

void AnalysisPanel::cancel() {
  if (m_job >= 0) m_jobs->cancel(m_job);
}

void AnalysisPanel::clearResults() {
  for (auto* g : m_grids) g->deleteLater();
  for (auto* l : m_lines) l->deleteLater();
  for (auto* g : m_graphs) g->deleteLater();
  m_grids.clear();
  m_lines.clear();
  m_graphs.clear();
}

void AnalysisPanel::showResult(const AnalysisResult& result) {
  clearResults();
  m_result = result;
  int at = 0;
  for (const auto& g : result.grids) {
    auto* v = new views::ScoreGridView(this);
    v->setMinimumHeight(std::clamp(g.layers * 16 + 90, 220, 560));
    v->setData(g);
    if (g.columnAxis == "head")  // a layer × head grid: a click opens that head's attention
      connect(v, &views::ScoreGridView::headClicked, this, [this](int l, int h, Qt::KeyboardModifiers) { m_ws->requestHead(l, h); });
    m_results->insertWidget(at++, v);
    m_grids.push_back(v);
  }
  for (const auto& g : result.graphs) {
    auto* v = new views::CircuitGraphView(this);
    v->setMinimumHeight(420);
    v->setData(g);
    connect(v, &views::CircuitGraphView::edgeClicked, this, [this, v](int e) {
      if (m_adapter.edgeAction) {
        patchEdge(e);
        return;
      }
      const auto& d = v->data();
      const auto& edge = d.edges[static_cast<std::size_t>(e)];
      m_status->setText(QString("Edge %1 → %2%3: %4 %5")
                            .arg(d.nodes[static_cast<std::size_t>(edge.from)].name, d.nodes[static_cast<std::size_t>(edge.to)].name,
                                 edge.receiver.isEmpty() ? QString() : " (" + edge.receiver + ")", d.scoreLabel)
                            .arg(edge.score, 0, 'g', 5));
    });
    connect(v, &views::CircuitGraphView::nodeClicked, this, [this, v](int n) {
      const HeadRef head = v->data().nodes[static_cast<std::size_t>(n)].head;
      if (head.layer >= 0) m_ws->requestHead(head.layer, head.head);
    });
    m_results->insertWidget(at++, v);
    m_graphs.push_back(v);
  }
  for (const auto& l : result.lines) {
    auto* v = new views::LinePlotView(this);
    v->setMinimumHeight(240);
    v->setData(l);
    m_results->insertWidget(at++, v);
    m_lines.push_back(v);
  }
}

}  // namespace mechscope::gui
