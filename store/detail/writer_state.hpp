#pragma once
// State shared by a CacheWriter and the DatasetWriters it hands out (internal).
#include "store/detail/h5_util.hpp"

namespace mechscope::store::detail {

/// The open .partial file; `open` turns false on commit or abort, after which writes throw.
struct WriterState {
  Hid file;
  bool open = false;
  std::string partialName;  ///< for messages
  int directWriteThreads = 1;  ///< CacheOptions::directWriteThreads (1 without the direct-write driver)
};

}  // namespace mechscope::store::detail
