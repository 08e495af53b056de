#include "app/gui/job_runner.hpp"

#include <QFutureWatcher>
#include <QMetaObject>
#include <QPointer>
#include <QtConcurrent/QtConcurrent>

#include <c10/util/Exception.h>

#include <chrono>
#include <exception>

#include "core/common/errors.hpp"

namespace mechscope::gui {

// A named namespace, not an anonymous one: JobRunner::Job holds a QFutureWatcher<Outcome>, and a class
// with external linkage must not hold a type that has internal linkage (-Wsubobject-linkage in unity builds).
namespace job_runner_detail {
enum class Status { Ok, Failed, Cancelled };
struct Outcome {
  Status status = Status::Ok;
  JobRunner::Deliver deliver;
  QString message;
};

QString firstLine(const std::string& s) {
  const auto nl = s.find('\n');
  return QString::fromStdString(nl == std::string::npos ? s : s.substr(0, nl));
}
}  // namespace job_runner_detail
using namespace job_runner_detail;

struct JobRunner::Job {
  QString name;
  std::shared_ptr<CancelToken> token = std::make_shared<CancelToken>();
  QFutureWatcher<Outcome>* watcher = nullptr;
};

JobRunner::JobRunner(QObject* parent) : QObject(parent) {
  m_pool.setMaxThreadCount(1);
  m_pool.setExpiryTimeout(-1);  // keep the one thread (and its CUDA context) alive
}

JobRunner::~JobRunner() {
  for (auto& [id, job] : m_jobs) job->token->cancel();
  m_pool.waitForDone();
}

int JobRunner::submit(const QString& name, Work work) {
  const int id = m_nextId++;
  auto job = std::make_shared<Job>();
  job->name = name;
  m_jobs[id] = job;

  RunContext ctx;
  ctx.cancel = job->token;
  QPointer<JobRunner> self(this);
  const int interval = m_intervalMs;
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  ctx.progress = [self, id, interval, last](const Progress& p) {
    // Called on the compute thread: throttle, then hand the numbers to the GUI thread.
    const auto now = std::chrono::steady_clock::now();
    if (p.done < p.total && now - *last < std::chrono::milliseconds(interval)) return;
    *last = now;
    const QString stage = QString::fromStdString(p.stage);
    QMetaObject::invokeMethod(
        self.data(), [self, id, p, stage] {
          if (self) emit self->progress(id, p.done, p.total, stage);
        },
        Qt::QueuedConnection);
  };

  auto* watcher = new QFutureWatcher<Outcome>(this);
  job->watcher = watcher;
  connect(watcher, &QFutureWatcher<Outcome>::finished, this, [this, id] { complete(id); });
  QMetaObject::invokeMethod(
      this, [self, id, name] {
        if (self) emit self->started(id, name);
      },
      Qt::QueuedConnection);
  watcher->setFuture(QtConcurrent::run(&m_pool, [work = std::move(work), ctx]() -> Outcome {
    Outcome o;
    try {
      ctx.check();
      o.deliver = work(ctx);
    } catch (const Cancelled&) {
      o.status = Status::Cancelled;
    } catch (const Error& e) {
      o.status = Status::Failed;
      o.message = firstLine(e.what());
    } catch (const c10::Error& e) {
      o.status = Status::Failed;
      const std::string what = e.what_without_backtrace();
      o.message = what.find("alloc") != std::string::npos || what.find("memory") != std::string::npos
                      ? "out of memory: " + firstLine(what) + " — use a shorter input, bf16, or fewer layers"
                      : "engine error: " + firstLine(what);
    } catch (const std::bad_alloc&) {
      o.status = Status::Failed;
      o.message = "out of memory — use a shorter input, bf16, or fewer layers";
    } catch (const std::exception& e) {
      o.status = Status::Failed;
      o.message = firstLine(e.what());
    } catch (...) {
      o.status = Status::Failed;
      o.message = "unknown error";
    }
    if (o.status == Status::Ok && ctx.cancel->cancelled()) o.status = Status::Cancelled;
    return o;
  }));
  return id;
}

void JobRunner::complete(int id) {
  auto it = m_jobs.find(id);
  if (it == m_jobs.end()) return;
  std::shared_ptr<Job> job = it->second;
  m_jobs.erase(it);
  const Outcome o = job->watcher->result();
  job->watcher->deleteLater();
  switch (o.status) {
    case Status::Ok:
      try {
        if (o.deliver) o.deliver();
        emit finished(id);
      } catch (const std::exception& e) {
        emit failed(id, firstLine(e.what()));
      }
      break;
    case Status::Failed: emit failed(id, o.message); break;
    case Status::Cancelled: emit cancelled(id); break;
  }
  if (m_jobs.empty()) emit idle();
}

void JobRunner::cancel(int id) {
  auto it = m_jobs.find(id);
  if (it != m_jobs.end()) it->second->token->cancel();
}

void JobRunner::cancelAll() {
  for (auto& [id, job] : m_jobs) job->token->cancel();
}

}  // namespace mechscope::gui
