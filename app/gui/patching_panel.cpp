#include "app/gui/patching_panel.hpp"

#include <QComboBox>
#include <QCompleter>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPointer>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include <cmath>

#include "app/gui/jobs.hpp"
#include "core/common/errors.hpp"
#include "views/score_grid_view.hpp"

namespace mechscope::gui {

PatchingPanel::PatchingPanel(Workspace* ws, JobRunner* jobs, QWidget* parent) : QWidget(parent), m_ws(ws), m_jobs(jobs) {
  auto* layout = new QVBoxLayout(this);
  auto* prompts = new QGridLayout();
  prompts->addWidget(new QLabel("<b>Clean</b>", this), 0, 0);
  prompts->addWidget(new QLabel("<b>Corrupted</b>", this), 0, 1);
  m_clean = new QLineEdit(this);
  m_corrupt = new QLineEdit(this);
  prompts->addWidget(m_clean, 1, 0);
  prompts->addWidget(m_corrupt, 1, 1);
  auto* answers = new QHBoxLayout();
  answers->addWidget(new QLabel("Answer", this));
  m_answer = new QLineEdit(this);
  m_answer->setToolTip("Correct next token (type to search the vocabulary)");
  answers->addWidget(m_answer);
  answers->addWidget(new QLabel("vs", this));
  m_incorrect = new QLineEdit(this);
  m_incorrect->setToolTip("Contrast token: logit difference = logit(answer) − logit(contrast)");
  answers->addWidget(m_incorrect);
  m_prepare = new QPushButton("Run clean + corrupted", this);
  answers->addWidget(m_prepare);
  prompts->addLayout(answers, 2, 0, 1, 2);
  m_tokens = new QLabel(this);
  m_tokens->setWordWrap(true);
  prompts->addWidget(m_tokens, 3, 0, 1, 2);
  layout->addLayout(prompts);

  auto* modes = new QHBoxLayout();
  m_intervention = new QComboBox(this);
  m_intervention->addItems({"Patch", "Ablate: zero", "Ablate: mean", "Ablate: uniform attention"});
  m_intervention->setToolTip(
      "Patch: replace the head's activation with the other run's.\n"
      "Ablations run on the clean prompt exactly as mechscope-cli ablate --method (the sweep as ablate --sweep):\n"
      "zero: the head's output (z) set to 0;\n"
      "mean: z replaced by the mean of the clean and the corrupted run's z at each position (mean ablation with the pair as reference set);\n"
      "uniform attention: each query attends uniformly to the keys it can see.");
  m_site = new QComboBox(this);
  m_site->addItems({"z (head output)", "pattern"});
  m_direction = new QComboBox(this);
  m_direction->addItems({"clean → corrupted run", "corrupted → clean run"});
  modes->addWidget(m_intervention);
  modes->addWidget(m_site);
  modes->addWidget(m_direction);
  m_sweep = new QPushButton("Sweep every head", this);
  m_sweep->setToolTip("Apply the intervention to each head alone and colour the grid by the normalised logit difference");
  modes->addWidget(m_sweep);
  modes->addStretch(1);
  layout->addLayout(modes);

  m_diff = new QLabel("Run the clean and corrupted prompts, then click heads (shift-click adds to the set).", this);
  m_diff->setWordWrap(true);
  layout->addWidget(m_diff);
  m_error = new QLabel(this);
  m_error->setStyleSheet("color: #c0392b;");
  m_error->setWordWrap(true);
  m_error->hide();
  layout->addWidget(m_error);

  auto* body = new QHBoxLayout();
  m_grid = new views::ScoreGridView(this);
  m_grid->setMinimumHeight(260);
  body->addWidget(m_grid, 3);
  m_top = new QTableWidget(0, 2, this);
  m_top->setHorizontalHeaderLabels({"next token", "p"});
  m_top->horizontalHeader()->setStretchLastSection(true);
  m_top->verticalHeader()->hide();
  m_top->setMaximumWidth(220);
  body->addWidget(m_top, 1);
  layout->addLayout(body, 1);

  connect(m_prepare, &QPushButton::clicked, this, [this] { prepare(); });
  connect(m_sweep, &QPushButton::clicked, this, [this] { sweep(); });
  connect(m_grid, &views::ScoreGridView::selectionChanged, this, [this] {
    std::vector<Head> heads;
    for (const auto& h : m_grid->selectedHeads()) heads.push_back(h);
    apply(heads);
  });
  connect(m_site, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { apply(m_grid->selectedHeads()); });
  connect(m_direction, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { apply(m_grid->selectedHeads()); });
  connect(m_intervention, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { apply(m_grid->selectedHeads()); });
  connect(m_ws, &Workspace::patchingChanged, this, &PatchingPanel::refreshPatching);
  connect(m_ws, &Workspace::modelChanged, this, [this] {
    const auto s = m_ws->session();
    if (!s || !s->tokenizer) return;
    QStringList vocab;
    const int64_t n = s->tokenizer->vocabSize();
    for (int64_t i = 0; i < n; ++i) vocab << QString::fromStdString(s->tokenizer->idToToken(i));
    for (auto* e : {m_answer, m_incorrect}) {
      auto* c = new QCompleter(vocab, e);
      c->setCaseSensitivity(Qt::CaseInsensitive);
      c->setFilterMode(Qt::MatchContains);
      e->setCompleter(c);
    }
  });
}

void PatchingPanel::setPrompts(const QString& clean, const QString& corrupt, const QString& answer, const QString& incorrect) {
  m_clean->setText(clean);
  m_corrupt->setText(corrupt);
  m_answer->setText(answer);
  m_incorrect->setText(incorrect);
}

void PatchingPanel::showError(const QString& message) {
  m_error->setText(message);
  m_error->setVisible(!message.isEmpty());
}

QString PatchingPanel::logitDiffText() const { return m_diff->text(); }
QString PatchingPanel::errorText() const { return m_error->isHidden() ? QString() : m_error->text(); }

int PatchingPanel::prepare() {
  try {
    const auto s = m_ws->session();
    if (!s) throw InputError("patching: no model loaded; open a model first");
    if (!s->tokenizer) throw InputError("patching: the model has no tokenizer.json; prompts cannot be tokenized");
    const PromptTokens clean = tokenizePrompt(*s, m_clean->text());
    const PromptTokens corrupt = tokenizePrompt(*s, m_corrupt->text());
    auto idOf = [&](QLineEdit* e, const char* what) {
      const auto id = s->tokenizer->tokenToId(e->text().toStdString());
      if (!id) throw InputError(std::string("patching: ") + what + " '" + e->text().toStdString() +
                                "' is not a vocabulary token; pick one from the completion list");
      return *id;
    };
    const int64_t answer = idOf(m_answer, "answer"), incorrect = idOf(m_incorrect, "contrast token");
    m_tokens->setText(QString("clean: %1 tokens · corrupted: %2 tokens").arg(clean.ids.size()).arg(corrupt.ids.size()));
    showError({});
    const int id = submitBuildPatching(*m_ws, *m_jobs, clean.ids, corrupt.ids, answer, incorrect);
    connect(m_jobs, &JobRunner::failed, this, [this, id](int j, const QString& msg) {
      if (j == id) showError(msg);
    });
    return id;
  } catch (const std::exception& e) {
    showError(QString::fromUtf8(e.what()));
    return -1;
  }
}

void PatchingPanel::refreshPatching() {
  const auto p = m_ws->patching();
  m_last.reset();
  if (!p) return;
  std::vector<double> none(static_cast<std::size_t>(p->layers() * p->heads()), 0.0);
  m_grid->setScores(p->layers(), p->heads(), std::move(none), "Click heads to patch (shift-click: set)", true);
  m_diff->setText(QString("clean logit diff <b>%1</b> · corrupted <b>%2</b> · click a head to patch it")
                      .arg(p->cleanLogitDiff(), 0, 'f', 4).arg(p->corruptLogitDiff(), 0, 'f', 4));
  apply({});
}

void PatchingPanel::setIntervention(Intervention i) { m_intervention->setCurrentIndex(static_cast<int>(i)); }
void PatchingPanel::setSite(PatchSite s) { m_site->setCurrentIndex(static_cast<int>(s)); }
void PatchingPanel::setDirection(PatchDirection d) { m_direction->setCurrentIndex(static_cast<int>(d)); }

PatchRequest PatchingPanel::request(const std::vector<Head>& heads) const {
  PatchRequest r;
  r.heads = heads;
  r.intervention = static_cast<Intervention>(m_intervention->currentIndex());
  r.site = static_cast<PatchSite>(m_site->currentIndex());
  r.direction = static_cast<PatchDirection>(m_direction->currentIndex());
  r.topK = 8;
  return r;
}

int PatchingPanel::apply(const std::vector<Head>& heads) {
  const auto p = m_ws->patching();
  if (!p) return -1;
  if (m_pendingApply >= 0) m_jobs->cancel(m_pendingApply);  // only the latest click matters
  const PatchRequest req = request(heads);
  const int id = m_jobs->submit("Patch heads", [this, p, req](const RunContext& ctx) -> JobRunner::Deliver {
    PatchOutcome o = p->run(req, &ctx);
    QPointer<PatchingPanel> self(this);
    return [self, o, heads = req.heads] {
      if (self) self->showOutcome(o, heads);
    };
  });
  m_pendingApply = id;
  return id;
}

void PatchingPanel::showOutcome(const PatchOutcome& o, const std::vector<Head>& heads) {
  m_last = o;
  const auto p = m_ws->patching();
  const auto s = m_ws->session();
  QStringList names;
  for (const auto& [l, h] : heads) names << QString("%1.%2").arg(l).arg(h);
  const double clean = p ? p->cleanLogitDiff() : NAN, corrupt = p ? p->corruptLogitDiff() : NAN;
  const double frac = std::abs(clean - corrupt) > 1e-12 ? (o.logitDiff - corrupt) / (clean - corrupt) : NAN;
  m_diff->setText(QString("%1 <b>%2</b>: logit diff <b>%3</b> (without: %4; clean %5, corrupted %6; recovered %7 %)")
                      .arg(m_intervention->currentText(), names.isEmpty() ? QString("no head") : names.join(", "))
                      .arg(o.logitDiff, 0, 'f', 4).arg(o.baselineLogitDiff, 0, 'f', 4).arg(clean, 0, 'f', 4)
                      .arg(corrupt, 0, 'f', 4).arg(100.0 * frac, 0, 'f', 1));
  m_top->setRowCount(static_cast<int>(o.topProbs.size()));
  for (int i = 0; i < static_cast<int>(o.topProbs.size()); ++i) {
    const auto [id, prob] = o.topProbs[static_cast<std::size_t>(i)];
    const QString tok = s && s->tokenizer ? QString::fromStdString(s->tokenizer->displayToken(id)) : QString::number(id);
    m_top->setItem(i, 0, new QTableWidgetItem(tok));
    m_top->setItem(i, 1, new QTableWidgetItem(QString::number(prob, 'f', 4)));
  }
  emit outcomeChanged();
}

int PatchingPanel::sweep() {
  const auto p = m_ws->patching();
  if (!p) {
    showError("patching: run the clean and corrupted prompts first");
    return -1;
  }
  const PatchRequest base = request({});
  const QString label = m_intervention->currentText() + (base.intervention == Intervention::Patch ? " " + m_site->currentText() : "");
  QPointer<PatchingPanel> self(this);
  const auto selected = m_grid->selectedHeads();
  return m_jobs->submit("Head sweep", [self, p, base, label, selected](const RunContext& ctx) -> JobRunner::Deliver {
    std::vector<double> scores = p->sweep(base, true, ctx);
    return [self, p, scores, label, selected]() mutable {
      if (!self) return;
      const QSignalBlocker b(self->m_grid);
      self->m_grid->setScores(p->layers(), p->heads(), std::move(scores), label + ": normalised logit diff", true);
      self->m_grid->setSelectedHeads(selected);
    };
  });
}

}  // namespace mechscope::gui
