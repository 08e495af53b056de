#include "store/detail/h5_util.hpp"

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::store::detail {

hid_t float16Type() {
  static hid_t type = [] {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    // sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9: IEEE 754 binary16, as h5py builds it.
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    H5Tlock(t);
    return t;
  }();
  return type;
}

hid_t fileType(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float32: return H5T_IEEE_F32LE;
    case StorageDtype::Float16: return float16Type();
    case StorageDtype::BFloat16: return H5T_STD_U16LE;
    case StorageDtype::Float64: return H5T_IEEE_F64LE;
    case StorageDtype::Int64: return H5T_STD_I64LE;
    case StorageDtype::Int32: return H5T_STD_I32LE;
    case StorageDtype::UInt8: return H5T_STD_U8LE;
  }
  return H5T_IEEE_F32LE;
}

hid_t memType(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float32: return H5T_NATIVE_FLOAT;
    case StorageDtype::Float16: return float16Type();
    case StorageDtype::BFloat16: return H5T_NATIVE_UINT16;
    case StorageDtype::Float64: return H5T_NATIVE_DOUBLE;
    case StorageDtype::Int64: return H5T_NATIVE_INT64;
    case StorageDtype::Int32: return H5T_NATIVE_INT32;
    case StorageDtype::UInt8: return H5T_NATIVE_UINT8;
  }
  return H5T_NATIVE_FLOAT;
}

StorageDtype datasetStorageDtype(hid_t dset, const std::string& name, const std::optional<std::string>& logicalDtype) {
  Hid type = own(H5Dget_type(dset), fmt::format("dataset '{}': datatype", name), true);
  const H5T_class_t cls = H5Tget_class(type.get());
  const size_t size = H5Tget_size(type.get());
  if (cls == H5T_FLOAT) {
    if (size == 2) return StorageDtype::Float16;
    if (size == 4) return StorageDtype::Float32;
    if (size == 8) return StorageDtype::Float64;
  } else if (cls == H5T_INTEGER) {
    const bool isSigned = H5Tget_sign(type.get()) == H5T_SGN_2;
    if (size == 1 && !isSigned) return StorageDtype::UInt8;
    if (size == 2 && !isSigned && logicalDtype == std::optional<std::string>("bfloat16"))
      return StorageDtype::BFloat16;
    if (size < 4 || (size == 4 && isSigned)) return StorageDtype::Int32;
    return StorageDtype::Int64;
  }
  throw InputError(fmt::format("dataset '{}': datatype class {} of {} bytes is not a numeric type mechscope reads",
                               name, static_cast<int>(cls), size));
}
}  // namespace mechscope::store::detail
