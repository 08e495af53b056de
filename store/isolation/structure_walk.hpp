#pragma once
// The child side of the isolated cache check: reads an HDF5 file the way CacheReader would (every
// object, every attribute, every dataset's metadata and, within limits, its data) so that a libhdf5
// bug triggered by a corrupt file crashes or hangs this process, mechscope-h5check, instead of the
// process that asked to open the cache. No LibTorch: the checker must start in milliseconds.
#include <cstdint>
#include <string>

#include "store/isolation/manifest.hpp"

namespace mechscope::store::isolation {

/// How much of a file the walk reads.
struct WalkLimits {
  /// Datasets (and first rows) up to this many bytes are read whole; larger ones at their first and last element.
  /// (Small: a 10 GB cache has ~150 datasets, and at 1 MiB the check read 237 MB of it, 0.4 s.)
  uint64_t maxReadBytes = uint64_t{64} << 10;
  /// The chunk index of a chunked dataset is listed entry by entry up to this many chunks.
  uint64_t maxChunksListed = 4096;
  /// Variable-length string datasets are read whole (into the manifest) up to this many strings.
  uint64_t maxStrings = uint64_t{1} << 24;
};

/// What the walk touched (for the checker's --verbose line and tests).
struct WalkReport {
  bool opened = false;         ///< libhdf5 opened the file (false: the reader will refuse it on its own)
  int64_t objects = 0;         ///< groups and datasets visited, the root included
  int64_t attributes = 0;      ///< attribute values read
  int64_t datasets = 0;        ///< datasets described
  uint64_t bytesRead = 0;      ///< data bytes read
  Manifest manifest;           ///< every attribute and variable-length string read, for the reader
};

/// Walks `path`. A file libhdf5 cannot open, or an attribute or dataset it cannot read, is not a failure here
/// (the reader meets the same error and refuses the file with its own message). InputError for what mechscope
/// refuses outright: links to other files (external and user-defined links), data kept outside the file
/// (external storage, virtual datasets), and groups, objects or attribute tables libhdf5 cannot list or open
/// (the reader would silently show part of the file). Returns what was read.
WalkReport walkCacheFile(const std::string& path, const WalkLimits& limits = {});

}  // namespace mechscope::store::isolation
