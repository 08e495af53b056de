#pragma once
// WriteQueue: a few threads that pwrite queued pieces of a file at once (internal to the direct-write file
// driver, store/detail/direct_vfd.hpp). One thread writing 1 MiB pieces in turn leaves a disk that serves
// several requests at a time (NVMe, most cloud volumes) idle between them: on the 2-core VM of
// docs/benchmarks.md, `dd oflag=direct bs=1M` wrote 1.37 GB/s alone and 1.91 GB/s as four streams. The
// queue never copies: the caller keeps every buffer untouched until wait() returns.
#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

namespace mechscope::store::detail {

/// pwrite until done; 0 or the errno of the failure. `written` gets the bytes that did reach the file.
int writeFully(int fd, const unsigned char* p, std::size_t size, off_t offset, std::size_t& written);

/// One piece to write: bytes [p, p + size) at `offset` of `fd`. Where `fd` refuses it as misaligned (EINVAL,
/// as O_DIRECT may), what is left goes to `fallbackFd`. The counters (may be null) get the bytes written each way.
struct QueuedWrite {
  int fd = -1;
  int fallbackFd = -1;
  off_t offset = 0;
  const unsigned char* p = nullptr;
  std::size_t size = 0;
  std::atomic<unsigned long long>* writtenCounter = nullptr;
  std::atomic<unsigned long long>* fallbackCounter = nullptr;
};

/// The first write that failed since the last wait(): its errno (0: none), offset and size.
struct WriteFailure {
  int err = 0;
  off_t offset = 0;
  std::size_t size = 0;
};

/// A fixed set of writer threads over one queue of pieces; pieces run in any order and at the same time, so
/// callers queue only pieces that do not overlap.
class WriteQueue {
 public:
  /// Starts `threads` ≥ 1 writer threads (fewer if the system refuses more; at least one, else std::system_error),
  /// each with a 256 KiB stack: they only call pwrite, and a process under an address-space limit
  /// (`prlimit --as`, tests/cli/stream_memory.sh) cannot spare the default 8 MiB per thread.
  explicit WriteQueue(int threads);
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;
  /// Waits for every queued piece, then joins the threads. Never throws.
  ~WriteQueue();

  /// Queues one piece (never blocks: the bytes are the caller's, not copied).
  void submit(const QueuedWrite& w);
  /// Waits until every queued piece is written (or failed); returns the first failure since the last wait.
  WriteFailure wait();
  /// Whether a piece was refused by its `fd` as misaligned since the queue started (its rest went to the fallback).
  [[nodiscard]] bool refusedByFd() const { return m_refused.load(); }
  /// Whether pieces are queued or being written now.
  [[nodiscard]] bool busy() const;

 private:
  static void* threadMain(void* self);
  void loop();
  void run(const QueuedWrite& w);

  mutable std::mutex m_mutex;
  std::condition_variable m_work;  // a piece was queued, or stop
  std::condition_variable m_idle;  // a piece finished
  // Pieces since the last wait(); the threads take them in order from m_next. Only submit() and wait() (the
  // caller's thread) grow or clear it: a writer thread never frees memory, so glibc gives it no malloc arena of its
  // own (64 MiB of address space each, which a process under `prlimit --as` cannot spare).
  std::vector<QueuedWrite> m_queue;
  std::size_t m_next = 0;
  int m_pending = 0;  // queued + being written
  bool m_stop = false;
  WriteFailure m_failure;
  std::atomic<bool> m_refused{false};
  std::vector<pthread_t> m_threads;
};

}  // namespace mechscope::store::detail
