#pragma once
// State shared by a CacheWriter and the DatasetWriters it hands out (internal).
#include "store/conversion_buffer.hpp"
#include "store/detail/h5_util.hpp"

namespace mechscope::store::detail {

/// The open .partial file; `open` turns false on commit or abort, after which writes throw.
struct WriterState {
  Hid file;
  bool open = false;
  std::string partialName;  ///< for messages
  ConversionBuffer conversion;  ///< whole-dataset writes convert fp32 → fp16/bf16 into this (reused) memory
};

}  // namespace mechscope::store::detail
