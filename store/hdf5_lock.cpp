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
  if (done) return;
  done = true;
  H5open();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
}  // namespace

Hdf5Lock::Hdf5Lock() : m_guard(hdf5Mutex()) { silenceOnce(); }

}  // namespace mechscope::store
