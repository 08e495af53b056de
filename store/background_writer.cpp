#include "store/background_writer.hpp"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>

namespace mechscope::store {

BackgroundWriter::BackgroundWriter(int64_t maxBytes)
    : m_maxBytes(std::max<int64_t>(1, maxBytes)), m_thread([this] { loop(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
    for (const Job& j : m_queue) m_pending -= j.bytes;
    m_queue.clear();
  }
  m_changed.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void BackgroundWriter::rethrowLocked() const {
  if (m_error) std::rethrow_exception(m_error);
}

void BackgroundWriter::submit(int64_t bytes, std::function<void()> job) {
  bytes = std::max<int64_t>(0, bytes);
  std::unique_lock<std::mutex> lock(m_mutex);
  const auto t0 = std::chrono::steady_clock::now();
  m_changed.wait(lock, [&] { return m_error || m_pending == 0 || m_pending + bytes <= m_maxBytes; });
  m_waitS += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rethrowLocked();
  m_queue.push_back(Job{bytes, std::move(job)});
  m_pending += bytes;
  m_peak = std::max(m_peak, m_pending);
  lock.unlock();
  m_changed.notify_all();
}

void BackgroundWriter::drain() {
  std::unique_lock<std::mutex> lock(m_mutex);
  m_changed.wait(lock, [&] { return m_error || (m_queue.empty() && !m_running); });
  rethrowLocked();
}

void BackgroundWriter::abandon() {
  std::unique_lock<std::mutex> lock(m_mutex);
  for (const Job& j : m_queue) m_pending -= j.bytes;
  m_queue.clear();
  m_changed.wait(lock, [&] { return !m_running; });
}

int64_t BackgroundWriter::pendingBytes() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_pending;
}

int64_t BackgroundWriter::peakPendingBytes() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_peak;
}

double BackgroundWriter::submitWaitSeconds() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_waitS;
}

double BackgroundWriter::busySeconds() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_busyS;
}

void BackgroundWriter::loop() {
  // Conversions on this thread (fp32 → fp16, non-contiguous → contiguous) run on it alone: the forward
  // already has every core. ATen's OpenMP regions take their width from the calling thread's nthreads ICV,
  // which ATen sets on its first call in a thread, so that call comes first.
  (void)at::get_num_threads();
  using SetFn = void (*)(int);
  if (auto set = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) set(1);
  std::unique_lock<std::mutex> lock(m_mutex);
  for (;;) {
    m_changed.wait(lock, [&] { return m_stop || !m_queue.empty(); });
    if (m_stop) return;
    Job job = std::move(m_queue.front());
    m_queue.pop_front();
    m_running = true;
    lock.unlock();
    std::exception_ptr error;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      job.run();
    } catch (...) {
      error = std::current_exception();
    }
    job.run = nullptr;  // release what the job captured (the tensor) before its bytes count as free
    const double busy = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lock.lock();
    m_busyS += busy;
    m_running = false;
    m_pending -= job.bytes;
    if (error && !m_error) m_error = error;
    if (m_error) {  // later jobs would write into a file that is already broken: drop them
      for (const Job& j : m_queue) m_pending -= j.bytes;
      m_queue.clear();
    }
    m_changed.notify_all();
  }
}

}  // namespace mechscope::store
