#pragma once
// A hand-made cache for tests that need HDF5 structures the writer never makes (corrupt shapes,
// external links, external storage). Includes <hdf5.h>: only for tests that call libhdf5 themselves.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

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

/// A dataset read by libhdf5 alone: how many chunks exist, and every element as fp32, read into a NaN-filled
/// buffer (an element libhdf5 did not return shows as NaN).
struct RawFloats {
  hsize_t chunksWritten = 0;
  std::vector<float> values;
};
inline RawFloats readRawFloats(const std::filesystem::path& file, const std::string& datasetPath) {
  RawFloats out;
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  const hid_t d = H5Dopen2(f, datasetPath.c_str(), H5P_DEFAULT);
  EXPECT_GE(d, 0) << datasetPath;
  const hid_t space = H5Dget_space(d);
  EXPECT_GE(H5Dget_num_chunks(d, space, &out.chunksWritten), 0);
  out.values.assign(static_cast<size_t>(H5Sget_simple_extent_npoints(space)), std::nanf(""));
  EXPECT_GE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.values.data()), 0);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

}  // namespace mechscope::store::testing
