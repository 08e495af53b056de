#pragma once
// Writeback: keeps a streamed cache out of the page cache. After each large dataset the new bytes of the
// .partial are sent to the disk at once (sync_file_range), and the bytes sent before are waited for and
// dropped from the page cache (posix_fadvise DONTNEED). The file's pages are then recycled instead of
// fresh ones taken for every byte: on the 2-core VM of docs/benchmarks.md a 3 GB buffered write costs
// 7.2 s of kernel time with fresh pages and 0.9 s with recycled ones, and commit's fsync has little left.
// Linux only; elsewhere every call does nothing.
#include <filesystem>
#include <mutex>

namespace mechscope::store {

/// Early write-back and page-cache release for one file being written (thread-safe).
class Writeback {
 public:
  /// Opens `file` read-only for the hints; on failure every call does nothing (hints are optional).
  explicit Writeback(const std::filesystem::path& file);
  Writeback(const Writeback&) = delete;
  Writeback& operator=(const Writeback&) = delete;
  ~Writeback();
  /// Starts writing the bytes added since the last call; waits for and drops those of the call before.
  void advance();

 private:
  std::mutex m_mutex;
  int m_fd = -1;
  long long m_started = 0;  // bytes [0, m_started) have been sent to the disk
};

}  // namespace mechscope::store
