#include "store/writeback.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mechscope::store {

Writeback::Writeback(const std::filesystem::path& file) {
#if defined(__linux__)
  m_fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
#else
  (void)file;
#endif
}

Writeback::~Writeback() {
  if (m_fd >= 0) ::close(m_fd);
}

void Writeback::advance() {
#if defined(__linux__)
  std::lock_guard<std::mutex> lock(m_mutex);
  if (m_fd < 0) return;
  struct stat st {};
  if (::fstat(m_fd, &st) != 0) return;
  const off_t end = st.st_size;
  const off_t before = static_cast<off_t>(m_started);
  if (end > before) (void)::sync_file_range(m_fd, before, end - before, SYNC_FILE_RANGE_WRITE);  // start, no wait
  if (before > 0) {
    // Sent one call ago, so mostly on disk by now: wait for the rest, then release the clean pages.
    (void)::sync_file_range(m_fd, 0, before,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    (void)::posix_fadvise(m_fd, 0, before, POSIX_FADV_DONTNEED);
  }
  if (end > before) m_started = static_cast<long long>(end);
#endif
}

}  // namespace mechscope::store
