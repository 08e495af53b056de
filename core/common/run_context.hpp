#pragma once
// RunContext: a cancel token plus a progress sink, shared by the CLI, the batch runner and the GUI's
// job runner. Qt-free; the engine polls it between layers and batches.
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "core/common/errors.hpp"

namespace mechscope {

/// One progress report: `done` of `total` units in the named stage.
struct Progress {
  long long done = 0;
  long long total = 0;
  std::string stage;
};

/// Cancellation flag that may be set from any thread (or a signal handler) and polled by workers.
class CancelToken {
 public:
  /// Ask the work to stop at its next check.
  void cancel() noexcept { m_cancelled.store(true, std::memory_order_relaxed); }
  /// Whether cancel() was called.
  [[nodiscard]] bool cancelled() const noexcept { return m_cancelled.load(std::memory_order_relaxed); }
  /// Throw Cancelled when cancel() was called.
  void throwIfCancelled() const {
    if (cancelled()) throw Cancelled();
  }

 private:
  std::atomic<bool> m_cancelled{false};
};

/// What long work receives: where to check for cancellation and where to report progress.
struct RunContext {
  std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();
  std::function<void(const Progress&)> progress;  ///< may be empty

  /// Report progress (no-op without a sink) and throw Cancelled if cancellation was requested.
  void step(long long done, long long total, const std::string& stage) const {
    if (progress) progress(Progress{done, total, stage});
    cancel->throwIfCancelled();
  }
  /// Throw Cancelled if cancellation was requested.
  void check() const { cancel->throwIfCancelled(); }
};

}  // namespace mechscope
