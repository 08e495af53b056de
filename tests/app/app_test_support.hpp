#pragma once
// Helpers of the app tests: wait for a job without blocking the event loop, and the embedded planted
// model loaded once per process.
#include <QElapsedTimer>
#include <QSignalSpy>
#include <QString>
#include <QTest>

#include <map>
#include <memory>
#include <stdexcept>

#include "app/gui/analysis_adapters.hpp"
#include "app/gui/job_runner.hpp"
#include "app/gui/model_session.hpp"
#include "app/gui/workspace.hpp"
#include "core/synth/planted_model.hpp"

namespace mechscope::gui::test {

/// How a job ended.
struct JobEnd {
  QString status;  ///< "finished", "failed", "cancelled" or "timeout"
  QString message;
};

/// Records how every job of a runner ends (connect before submitting), and waits for one.
class JobWatch {
 public:
  explicit JobWatch(JobRunner& jobs) {
    QObject::connect(&jobs, &JobRunner::finished, &m_ctx, [this](int j) { m_ends[j] = {"finished", {}}; });
    QObject::connect(&jobs, &JobRunner::failed, &m_ctx, [this](int j, const QString& m) { m_ends[j] = {"failed", m}; });
    QObject::connect(&jobs, &JobRunner::cancelled, &m_ctx, [this](int j) { m_ends[j] = {"cancelled", {}}; });
  }
  /// Spins the event loop until job `id` ends (or `timeoutMs`).
  JobEnd wait(int id, int timeoutMs = 120000) {
    QElapsedTimer t;
    t.start();
    while (!m_ends.count(id) && t.elapsed() < timeoutMs) QTest::qWait(5);
    return m_ends.count(id) ? m_ends[id] : JobEnd{"timeout", {}};
  }

 private:
  QObject m_ctx;
  std::map<int, JobEnd> m_ends;
};

/// The embedded planted model, loaded once (CPU, fp32).
inline std::shared_ptr<const ModelSession> plantedSession() {
  static std::shared_ptr<const ModelSession> s = loadModelSession(planted::embeddedModelFolder(), LoadOptions{}, RunContext{});
  return s;
}

/// The IOI prompt most panel tests analyse.
inline const QString kIoiPrompt = "When Mary and John were at the store , John gave a ring to";

/// The analysis adapter called `name` (throws when the registry has none).
inline AnalysisAdapter adapterNamed(const QString& name) {
  for (auto& a : analysisAdapters())
    if (a.name == name) return a;
  throw std::runtime_error("no adapter " + name.toStdString());
}

/// A workspace holding the planted model (and, unless `withPrompt` is false, kIoiPrompt), a job runner and
/// a watch on it: what every panel test starts from. Unpack with `auto& [ws, jobs, watch, session] = bench;`.
struct PlantedBench {
  Workspace ws;
  JobRunner jobs;
  JobWatch watch{jobs};
  std::shared_ptr<const ModelSession> session = plantedSession();
  explicit PlantedBench(bool withPrompt = true) {
    ws.setSession(session);
    if (withPrompt) ws.setPrompt(kIoiPrompt, tokenizePrompt(*session, kIoiPrompt));
  }
};

}  // namespace mechscope::gui::test
