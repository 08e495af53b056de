#include "app/gui/task_panel.hpp"

#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QToolButton>

namespace mechscope::gui {

TaskPanel::TaskPanel(JobRunner* jobs, QWidget* parent) : QWidget(parent), m_jobs(jobs) {
  auto* l = new QHBoxLayout(this);
  l->setContentsMargins(0, 0, 0, 0);
  m_label = new QLabel(this);
  m_bar = new QProgressBar(this);
  m_bar->setMaximumWidth(220);
  m_bar->setMaximumHeight(14);
  m_bar->setTextVisible(false);
  m_cancel = new QToolButton(this);
  m_cancel->setText("Cancel");
  m_cancel->setToolTip("Stop the running job (Esc)");
  l->addWidget(m_label);
  l->addWidget(m_bar);
  l->addWidget(m_cancel);
  m_bar->hide();
  m_cancel->hide();
  connect(m_cancel, &QToolButton::clicked, this, [this] {
    if (m_current >= 0) m_jobs->cancel(m_current);
  });
  connect(jobs, &JobRunner::started, this, [this](int id, const QString& name) {
    m_current = id;
    m_label->setText(name + "…");
    m_bar->setRange(0, 0);
    m_bar->show();
    m_cancel->show();
  });
  connect(jobs, &JobRunner::progress, this, [this](int id, qint64 done, qint64 total, const QString& stage) {
    if (id != m_current) return;
    m_bar->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
    m_bar->setValue(static_cast<int>(done));
    m_label->setText(QString("%1 %2/%3").arg(stage).arg(done).arg(total));
  });
  auto end = [this](int id, const QString& text) {
    if (id == m_current) m_label->setText(text);
  };
  connect(jobs, &JobRunner::finished, this, [end](int id) { end(id, "Done"); });
  connect(jobs, &JobRunner::failed, this, [end](int id, const QString& m) { end(id, "Failed: " + m); });
  connect(jobs, &JobRunner::cancelled, this, [end](int id) { end(id, "Cancelled"); });
  connect(jobs, &JobRunner::idle, this, [this] {
    m_current = -1;
    m_bar->hide();
    m_cancel->hide();
  });
}

QString TaskPanel::text() const { return m_label->text(); }

}  // namespace mechscope::gui
