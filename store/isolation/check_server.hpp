#pragma once
// The parent's handle on `mechscope-h5check --serve` (store/isolation/check_protocol.hpp): started on
// the first check, restarted when it dies or when another checker executable is asked for, killed with
// every child it forked when a check runs past its time.
#include <sys/types.h>

#include <filesystem>
#include <string>

#include "store/isolation/check_protocol.hpp"

namespace mechscope::store::isolation {

/// One running checker server. Not thread-safe: the caller serialises checks.
class CheckServer {
 public:
  CheckServer() = default;
  CheckServer(const CheckServer&) = delete;
  CheckServer& operator=(const CheckServer&) = delete;
  ~CheckServer() { stop(); }

  /// Checks `file` with the server of `exe` (started as needed). The outcome has killedForTime set when no
  /// answer came within `seconds` + 5 s. Error when the server cannot be started or dies twice in a row.
  CheckOutcome check(const std::filesystem::path& exe, const std::string& file, double seconds);

 private:
  enum class Exchange { Answered, ServerGone, TimedOut };
  void start(const std::filesystem::path& exe);
  void stop() noexcept;
  Exchange exchange(const std::string& request, double seconds, CheckOutcome& out);

  pid_t m_pid = -1;
  int m_socket = -1;
  std::filesystem::path m_exe;
};

}  // namespace mechscope::store::isolation
