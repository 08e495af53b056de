#pragma once
// `mechscope-h5check --serve`: the fork server mechscope talks to (store/isolation/check_protocol.hpp).
// Starting the ASan-built checker costs ~10 ms (most of it AddressSanitizer and libhdf5 setting up); a
// fork of a server that has done so once costs well under one, and each file is still read by a fresh
// process that has never seen another file.
#include <functional>
#include <string>

namespace mechscope::h5check {

/// Checks `path` within `seconds`, writing the manifest to `manifestFd` on a pass; returns the exit status.
using CheckOne = std::function<int(const std::string& path, double seconds, int manifestFd)>;

/// Reads requests from stdin and answers on stdout until stdin closes; for each, forks a child that runs
/// `checkOne(path, seconds, 3)` with its stderr and fd 3 captured and exits with what it returns. 0 at EOF.
int serveChecks(const CheckOne& checkOne);

}  // namespace mechscope::h5check
