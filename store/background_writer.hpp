#pragma once
// BackgroundWriter: one worker thread that runs a cache's write jobs in submission order, so converting
// and writing hook tensors overlaps the forward pass that produces them. The queue is bounded in bytes
// (the tensors it keeps alive), so a streamed cache larger than memory still holds at most about
// `maxBytes` beyond what the forward itself keeps. The first failing job's exception is kept and rethrown,
// unchanged, by every later submit() and drain(); jobs queued after it are dropped.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace mechscope::store {

/// A bounded, ordered, single-thread job queue with sticky error propagation.
class BackgroundWriter {
 public:
  /// Starts the worker; `maxBytes` ≥ 1 bounds the bytes accounted to queued and running jobs.
  explicit BackgroundWriter(int64_t maxBytes);
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  /// Drops the jobs not yet started, waits for the running one, joins the worker. Never throws.
  ~BackgroundWriter();

  /// Queues `job`, accounted as `bytes`; blocks while the queue would exceed the bound (a job larger than
  /// the bound waits for an empty queue and then runs alone). Rethrows an earlier job's error instead.
  void submit(int64_t bytes, std::function<void()> job);
  /// Waits until every queued job has run; rethrows the first error of any of them.
  void drain();
  /// Drops the jobs not yet started and waits for the running one; errors are kept, not thrown.
  void abandon();
  /// Bytes accounted to queued and running jobs now.
  [[nodiscard]] int64_t pendingBytes() const;
  /// The most bytes ever pending at once (for tests and benchmarks).
  [[nodiscard]] int64_t peakPendingBytes() const;
  /// Seconds submit() spent waiting for room in the queue (the producer throttled by the writer).
  [[nodiscard]] double submitWaitSeconds() const;
  /// Seconds the worker spent running jobs.
  [[nodiscard]] double busySeconds() const;

 private:
  struct Job {
    int64_t bytes;
    std::function<void()> run;
  };
  void loop();
  void rethrowLocked() const;

  const int64_t m_maxBytes;
  mutable std::mutex m_mutex;
  std::condition_variable m_changed;  // queue, pending bytes, error or stop changed
  std::deque<Job> m_queue;
  int64_t m_pending = 0;  // queued + running
  int64_t m_peak = 0;
  double m_waitS = 0, m_busyS = 0;
  bool m_running = false;
  bool m_stop = false;
  std::exception_ptr m_error;
  std::thread m_thread;  // last: starts after every member above exists
};

}  // namespace mechscope::store
