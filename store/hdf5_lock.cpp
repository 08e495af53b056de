#include "store/hdf5_lock.hpp"

#include <hdf5.h>

namespace mechscope::store {

std::recursive_mutex& hdf5Mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

namespace {
void silenceOnce() {
  // Under the lock already; a plain static flag is enough.
  static bool done = false;
  if (!done) {
    done = true;
    // No H5_term_library at exit: after a close that failed (disk full during the final flush) libhdf5 keeps a
    // half-closed file in its id table and segfaults closing it again at exit. Every file we write is closed
    // (committed) or discarded (.partial) explicitly, so nothing needs closing at exit. Must precede H5open.
    H5dont_atexit();
    H5open();
    // No dynamically loaded filter plugins: a cache naming an unknown filter would otherwise make libhdf5
    // dlopen whatever HDF5_PLUGIN_PATH holds. mechscope writes gzip and shuffle only, both built in.
    H5PLset_loading_state(0);
  }
  // No automatic printing of libhdf5's error stack: our messages carry it. Thread-safe builds (Debian's)
  // keep this setting per thread, so every thread that calls libhdf5 (the background cache writer's too)
  // turns it off once; otherwise a failed write on that thread also dumped an HDF5-DIAG trace on stderr.
  thread_local bool silenced = false;
  if (!silenced) {
    silenced = true;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
}
}  // namespace

Hdf5Lock::Hdf5Lock() : m_guard(hdf5Mutex()) { silenceOnce(); }

}  // namespace mechscope::store
