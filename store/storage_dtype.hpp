#pragma once
// How a tensor is stored on disk. Activations default to Float32; Float16 halves the file.
// bf16 tensors are stored as Float32 unless StorageDtype::BFloat16 is asked for, which keeps the raw
// bits as uint16 with the dataset attribute mechscope_dtype = "bfloat16" (see docs/hdf5-schema.md).
#include <string>

#include "core/common/tensor.hpp"

namespace mechscope::store {

/// On-disk element type of a dataset.
enum class StorageDtype {
  Float32,   ///< IEEE little-endian f4 (h5py: float32)
  Float16,   ///< IEEE little-endian f2 (h5py: float16)
  BFloat16,  ///< raw bf16 bits as uint16 LE + attribute mechscope_dtype="bfloat16"
  Float64,   ///< IEEE little-endian f8
  Int64,     ///< signed 64-bit LE
  Int32,     ///< signed 32-bit LE
  UInt8,     ///< unsigned 8-bit (bool tensors are stored as 0/1 here)
};

/// "float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8".
std::string storageDtypeName(StorageDtype dtype);
/// Parses storageDtypeName() output (also "fp32", "fp16", "bf16"); InputError naming `what` otherwise.
StorageDtype parseStorageDtype(const std::string& name, const std::string& what = "dtype");
/// The ATen scalar type a dataset of this storage dtype reads back as.
at::ScalarType storageScalarType(StorageDtype dtype);
/// Bytes per element on disk.
int storageElementSize(StorageDtype dtype);
/// The natural storage dtype for a tensor's own dtype (floats → Float32 except double → Float64,
/// integers → Int64 except int32 → Int32, uint8/bool → UInt8).
StorageDtype naturalStorageDtype(at::ScalarType type);
/// `t` detached, on the CPU, contiguous, converted to what `dtype` stores (bf16 bits for BFloat16).
at::Tensor toStorage(const at::Tensor& t, StorageDtype dtype);

}  // namespace mechscope::store
