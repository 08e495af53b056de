#include "store/storage_dtype.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::store {

std::string storageDtypeName(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float32: return "float32";
    case StorageDtype::Float16: return "float16";
    case StorageDtype::BFloat16: return "bfloat16";
    case StorageDtype::Float64: return "float64";
    case StorageDtype::Int64: return "int64";
    case StorageDtype::Int32: return "int32";
    case StorageDtype::UInt8: return "uint8";
  }
  return "unknown";
}

StorageDtype parseStorageDtype(const std::string& name, const std::string& what) {
  if (name == "float32" || name == "fp32" || name == "f32") return StorageDtype::Float32;
  if (name == "float16" || name == "fp16" || name == "f16" || name == "half") return StorageDtype::Float16;
  if (name == "bfloat16" || name == "bf16") return StorageDtype::BFloat16;
  if (name == "float64" || name == "fp64" || name == "double") return StorageDtype::Float64;
  if (name == "int64") return StorageDtype::Int64;
  if (name == "int32") return StorageDtype::Int32;
  if (name == "uint8") return StorageDtype::UInt8;
  throw InputError(fmt::format("{}: expected float32, float16, bfloat16, float64, int64, int32 or uint8, got '{}'",
                               what, name));
}

at::ScalarType storageScalarType(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float32: return at::kFloat;
    case StorageDtype::Float16: return at::kHalf;
    case StorageDtype::BFloat16: return at::kBFloat16;
    case StorageDtype::Float64: return at::kDouble;
    case StorageDtype::Int64: return at::kLong;
    case StorageDtype::Int32: return at::kInt;
    case StorageDtype::UInt8: return at::kByte;
  }
  return at::kFloat;
}

int storageElementSize(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float32: return 4;
    case StorageDtype::Float16: return 2;
    case StorageDtype::BFloat16: return 2;
    case StorageDtype::Float64: return 8;
    case StorageDtype::Int64: return 8;
    case StorageDtype::Int32: return 4;
    case StorageDtype::UInt8: return 1;
  }
  return 4;
}

StorageDtype naturalStorageDtype(at::ScalarType type) {
  switch (type) {
    case at::kDouble: return StorageDtype::Float64;
    case at::kInt: return StorageDtype::Int32;
    case at::kByte:
    case at::kBool: return StorageDtype::UInt8;
    case at::kLong:
    case at::kShort:
    case at::kChar: return StorageDtype::Int64;
    default: return StorageDtype::Float32;
  }
}

at::Tensor toStorage(const at::Tensor& t, StorageDtype dtype) {
  if (!t.defined()) throw InputError("toStorage: the tensor is undefined");
  if (t.is_complex()) throw InputError(fmt::format("toStorage: complex tensors are not storable (got {})",
                                                   std::string(c10::toString(t.scalar_type()))));
  // .to() is a no-op when device and dtype already match; contiguous() likewise.
  return t.detach().to(at::kCPU, storageScalarType(dtype)).contiguous();
}

}  // namespace mechscope::store
