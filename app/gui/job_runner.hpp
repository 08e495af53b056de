#pragma once
// JobRunner: the one compute lane. Jobs run one at a time on a single dedicated pool thread (so a CUDA
// context stays on one thread), report progress at most 20 times a second, and stop at the next
// RunContext check when cancelled. A job returns a "deliver" continuation that the runner calls on the
// GUI thread, so results reach widgets without any widget being touched from the worker.
#include <QObject>
#include <QString>
#include <QThreadPool>

#include <functional>
#include <map>
#include <memory>

#include "core/common/run_context.hpp"

namespace mechscope::gui {

/// The compute lane of the GUI.
class JobRunner : public QObject {
  Q_OBJECT
 public:
  /// What runs on the GUI thread when a job succeeds.
  using Deliver = std::function<void()>;
  /// The work: runs on the compute thread, polls `ctx`, returns a Deliver (may be empty).
  using Work = std::function<Deliver(const RunContext& ctx)>;

  /// A runner with its own one-thread pool.
  explicit JobRunner(QObject* parent = nullptr);
  /// Cancels everything and waits for the running job to stop.
  ~JobRunner() override;

  /// Queues `work` under a name shown in the status bar; returns the job id.
  int submit(const QString& name, Work work);
  /// Asks job `id` to stop (queued jobs never start; the running one stops at its next check).
  void cancel(int id);
  /// Cancels every job.
  void cancelAll();
  /// Whether a job is queued or running.
  bool busy() const { return !m_jobs.empty(); }
  /// Number of queued or running jobs.
  int pending() const { return static_cast<int>(m_jobs.size()); }
  /// Minimum interval between progress signals of one job, in ms (default 50 = 20 Hz).
  void setProgressInterval(int ms) { m_intervalMs = ms; }

 signals:
  /// A job began running.
  void started(int id, const QString& name);
  /// Progress of a job (throttled; the final report of a stage is always sent).
  void progress(int id, qint64 done, qint64 total, const QString& stage);
  /// A job succeeded (after its Deliver ran).
  void finished(int id);
  /// A job failed; `message` is one line that says what went wrong.
  void failed(int id, const QString& message);
  /// A job stopped because it was cancelled.
  void cancelled(int id);
  /// No job is queued or running any more.
  void idle();

 private:
  struct Job;
  void complete(int id);
  QThreadPool m_pool;
  std::map<int, std::shared_ptr<Job>> m_jobs;
  int m_nextId = 1;
  int m_intervalMs = 50;
};

}  // namespace mechscope::gui
