#pragma once
// `mechscope-h5check --serve`: the fork server mechscope talks to (store/isolation/check_protocol.hpp).
// Starting the ASan-built checker costs ~10 ms (most of it AddressSanitizer and libhdf5 setting up); a
// fork of a server that has done so once costs well under one, and each file is still read by a fresh
// process that has never seen another file.
#include <functional>
#include <string>

namespace mechscope::h5check {

/// Reads requests from stdin and answers on stdout until stdin closes; for each, forks a child that runs
/// `checkOne(path, seconds)` with its stderr captured and exits with what it returns. Returns 0 at EOF.
int serveChecks(const std::function<int(const std::string& path, double seconds)>& checkOne);

}  // namespace mechscope::h5check
