// Environment switches: the MECHSCOPE_PROBE_* and forward-kernel switches that turn a faster path off for comparison.
#pragma once

#include <cstdlib>
#include <cstring>

namespace mechscope {

/// Whether environment variable `name` is set to exactly `value`.
inline bool envEquals(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

/// Whether switch `name` is set to "0" (every such switch is on unless turned off).
inline bool switchedOff(const char* name) { return envEquals(name, "0"); }

}  // namespace mechscope
