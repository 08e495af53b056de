#pragma once
// Internal libhdf5 helpers of the store that know its storage dtypes (not a public header: it includes
// <hdf5.h>). Every function here expects the caller to hold Hdf5Lock.
#include <optional>
#include <string>

#include "store/detail/h5_basic.hpp"
#include "store/storage_dtype.hpp"

namespace mechscope::store::detail {

/// The file datatype for a storage dtype (a new copy for Float16; a predefined type otherwise).
hid_t fileType(StorageDtype dtype);
/// The in-memory datatype matching storageScalarType(dtype).
hid_t memType(StorageDtype dtype);
/// The IEEE little-endian half-precision type (libhdf5 1.10 has no predefined one; built as h5py does).
hid_t float16Type();
/// The storage dtype of an open dataset, from its datatype and its mechscope_dtype attribute's value
/// (`logicalDtype`, read by the caller); InputError naming `name` for types mechscope cannot read.
StorageDtype datasetStorageDtype(hid_t dset, const std::string& name, const std::optional<std::string>& logicalDtype);

}  // namespace mechscope::store::detail
