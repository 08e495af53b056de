// Scratch folders for tests and fuzz targets that are gone when the process ends.
//
// ctest runs every test case in a process of its own, so a folder named per process and never removed
// piles up: one full `bash .ci/run` used to leave ~1,400 copies of the 40 MB planted model in /tmp. Every
// scratch path now lives under one per-process root that is removed when the process exits normally.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "core/common/remove_tree.hpp"

namespace mechscope::test {

namespace detail {

/// Owns `<tmp>/mechscope-test-<pid>` and removes it at static destruction, only in the process that made
/// it: a forked child (death tests, crash-safety children) that exits must not delete its parent's files.
class ScratchRootOwner {
 public:
  ScratchRootOwner()
      : m_pid(::getpid()),
        m_path(std::filesystem::temp_directory_path() / ("mechscope-test-" + std::to_string(m_pid))) {
    std::error_code ec;
    mechscope::removeTree(m_path, ec);  // a stale root of a crashed process whose pid came round again
    std::filesystem::create_directories(m_path);
  }
  ~ScratchRootOwner() {
    if (::getpid() != m_pid) return;
    std::error_code ec;
    mechscope::removeTree(m_path, ec);
  }
  ScratchRootOwner(const ScratchRootOwner&) = delete;
  ScratchRootOwner& operator=(const ScratchRootOwner&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return m_path; }

 private:
  pid_t m_pid;
  std::filesystem::path m_path;
};

}  // namespace detail

/// The per-process scratch root `<tmp>/mechscope-test-<pid>`, created on first use and removed at exit.
inline const std::filesystem::path& scratchRoot() {
  static const detail::ScratchRootOwner owner;
  return owner.path();
}

/// A fresh, empty folder `scratchRoot()/name` (emptied if an earlier test of this process left it).
inline std::filesystem::path freshScratchDir(const std::string& name) {
  const auto dir = scratchRoot() / name;
  mechscope::removeTree(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace mechscope::test
