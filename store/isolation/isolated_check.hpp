#pragma once
// The parent side of the isolated cache check. Debian bookworm's libhdf5 (1.10.8) crashes or loops on
// some corrupt files (docs/reliability.md), and mechscope cannot stop it from inside: the bugs are in the
// library's own decoding of object headers, attributes and the global heap. So before a cache is opened
// in this process, mechscope-h5check reads it in a child process (store/isolation/structure_walk.hpp); a
// crash, a hang or an out-of-memory there becomes a one-line InputError here, and the cache is opened
// in-process only once the same libhdf5 has read it without harm.
#include <cstdint>
#include <filesystem>

#include "store/isolation/manifest.hpp"

namespace mechscope::store::isolation {

/// Exit status of mechscope-h5check when it refuses a structure outright (message on stderr).
inline constexpr int kExitRefused = 3;
/// Exit status of mechscope-h5check for a usage or internal error.
inline constexpr int kExitError = 4;
/// Exit status of mechscope-h5check when AddressSanitizer caught libhdf5 making a memory error.
inline constexpr int kExitMemoryError = 86;

/// Runs mechscope-h5check on `path` and returns when libhdf5 read the whole file there without harm. A file
/// that passed before and is unchanged since (same device, inode, size and modification time, last written
/// more than 2 s before that check) is not read again.
/// InputError naming the file when the checker refused it, crashed (the signal is named), ran past its time
/// limit (MECHSCOPE_H5CHECK_TIMEOUT seconds, fractions allowed, default 60) or cannot be found or started.
/// Returns what the checker read of the file's attributes and strings (the reader shows those, and never
/// decodes them itself).
Manifest checkCacheInChildProcess(const std::filesystem::path& path);

/// The checker this process runs: $MECHSCOPE_H5CHECK, else mechscope-h5check next to the running
/// executable, else the one in the build tree this library was built in. InputError when none exists.
std::filesystem::path h5checkExecutable();

/// Counts of verdicts since the process started (fuzzing statistics; thread-safe).
struct CheckCounts {
  int64_t passed = 0;    ///< read without harm
  int64_t refused = 0;   ///< a structure mechscope refuses (external link, external storage)
  int64_t crashed = 0;   ///< libhdf5 crashed or ran out of memory in the checker
  int64_t timedOut = 0;  ///< the checker ran past its time limit
  int64_t reused = 0;    ///< passed earlier and unchanged since: not read again
};
/// The verdicts counted so far.
CheckCounts checkCounts();

}  // namespace mechscope::store::isolation
