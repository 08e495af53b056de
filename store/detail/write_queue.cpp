#include "store/detail/write_queue.hpp"

#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace mechscope::store::detail {

int writeFully(int fd, const unsigned char* p, std::size_t size, off_t offset, std::size_t& written) {
  written = 0;
  while (written < size) {
    const ssize_t n = ::pwrite(fd, p + written, size - written, offset + static_cast<off_t>(written));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    written += static_cast<std::size_t>(n);
  }
  return 0;
}

WriteQueue::WriteQueue(int threads) {
  const int n = threads < 1 ? 1 : threads;
  m_threads.reserve(static_cast<std::size_t>(n));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, std::size_t{256} << 10);
  int err = 0;
  for (int i = 0; i < n; ++i) {
    pthread_t t{};
    err = pthread_create(&t, &attr, &WriteQueue::threadMain, this);
    if (err != 0) break;
    m_threads.push_back(t);
  }
  pthread_attr_destroy(&attr);
  if (m_threads.empty()) throw std::system_error(err, std::generic_category(), "cannot start a disk writer thread");
}

void* WriteQueue::threadMain(void* self) {
  static_cast<WriteQueue*>(self)->loop();
  return nullptr;
}

WriteQueue::~WriteQueue() {
  (void)wait();
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
  }
  m_work.notify_all();
  for (pthread_t t : m_threads) pthread_join(t, nullptr);
}

void WriteQueue::submit(const QueuedWrite& w) {
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_queue.push_back(w);
    ++m_pending;
  }
  m_work.notify_one();
}

WriteFailure WriteQueue::wait() {
  std::unique_lock<std::mutex> lock(m_mutex);
  m_idle.wait(lock, [this] { return m_pending == 0; });
  m_queue.clear();  // keeps its capacity
  m_next = 0;
  const WriteFailure f = m_failure;
  m_failure = {};
  return f;
}

bool WriteQueue::busy() const {
  const std::lock_guard<std::mutex> lock(m_mutex);
  return m_pending > 0;
}

void WriteQueue::loop() {
  for (;;) {
    QueuedWrite w;
    {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_work.wait(lock, [this] { return m_stop || m_next < m_queue.size(); });
      if (m_next == m_queue.size()) return;  // stopping, nothing left
      w = m_queue[m_next++];
    }
    run(w);
    {
      const std::lock_guard<std::mutex> lock(m_mutex);
      --m_pending;
    }
    m_idle.notify_all();
  }
}

void WriteQueue::run(const QueuedWrite& w) {
  std::size_t written = 0;
  int err = writeFully(w.fd, w.p, w.size, w.offset, written);
  if (w.writtenCounter) *w.writtenCounter += written;
  std::size_t done = written;
  if (err == EINVAL && w.fallbackFd >= 0) {
    m_refused = true;
    err = writeFully(w.fallbackFd, w.p + done, w.size - done, w.offset + static_cast<off_t>(done), written);
    if (w.fallbackCounter) *w.fallbackCounter += written;
    done += written;
  }
  if (err == 0) return;
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (m_failure.err == 0) m_failure = {err, w.offset + static_cast<off_t>(done), w.size - done};
}

}  // namespace mechscope::store::detail
