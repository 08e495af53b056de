#include "store/hdf5_version.hpp"

#include <hdf5.h>

#include <fmt/format.h>

namespace mechscope::store {

std::string hdf5Version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return fmt::format("{}.{}.{}", major, minor, release);
}

}  // namespace mechscope::store
