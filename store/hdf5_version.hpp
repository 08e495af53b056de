#pragma once
#include <string>

namespace mechscope::store {
/// The libhdf5 version this build links, e.g. "1.10.8" (for About boxes and provenance).
std::string hdf5Version();
}  // namespace mechscope::store
