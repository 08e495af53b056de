#pragma once
// A hand-made cache for tests that need HDF5 structures the writer never makes (corrupt shapes,
// external links, external storage). Includes <hdf5.h>: only for tests that call libhdf5 themselves.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>

#include "store/detail/h5_basic.hpp"

namespace mechscope::store::testing {

/// A minimal complete cache at `path` (schema_version 1, complete); `fill` adds to the open file.
template <class Fill>
void makeCache(const std::filesystem::path& path, Fill fill) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  detail::writeIntAttr(f, "/", "schema_version", 1);
  detail::writeIntAttr(f, "/", "mechscope_complete", 1);
  fill(f);
  H5Fclose(f);
}

}  // namespace mechscope::store::testing
