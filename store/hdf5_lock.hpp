#pragma once
// Debian's libhdf5 is the serial build, not thread-safe: every libhdf5 call in the process goes
// through one lock. The store takes it internally; code elsewhere that calls libhdf5 directly must too.
#include <mutex>

namespace mechscope::store {

/// The process-wide lock that serialises every libhdf5 call (recursive: store calls nest).
std::recursive_mutex& hdf5Mutex();

/// RAII guard for hdf5Mutex(); also silences libhdf5's automatic error printing on first use
/// (errors become exceptions with the library's own message instead).
class Hdf5Lock {
 public:
  Hdf5Lock();
  Hdf5Lock(const Hdf5Lock&) = delete;
  Hdf5Lock& operator=(const Hdf5Lock&) = delete;

 private:
  std::lock_guard<std::recursive_mutex> m_guard;
};

}  // namespace mechscope::store
