#pragma once
// Writing one tensor (e.g. a slice read from a cache) as CSV or NumPy .npy.
#include <filesystem>
#include <ostream>

#include "core/common/tensor.hpp"

namespace mechscope::store {

/// NumPy .npy (format 1.0, little-endian, C order). fp32/fp16/fp64/int64/int32/uint8/bool keep their dtype;
/// bf16 (no NumPy dtype) is written as float32. InputError when the file cannot be written.
void writeNpy(const std::filesystem::path& path, const at::Tensor& t);

/// CSV: a 0-d or 1-d tensor one value per line; 2-d as rows × columns; higher ranks flattened to
/// [prod(leading dims), last dim]. Floats in the shortest form that reads back to the same value.
void writeCsv(std::ostream& out, const at::Tensor& t);
/// writeCsv to a file; InputError when it cannot be written.
void writeCsv(const std::filesystem::path& path, const at::Tensor& t);

}  // namespace mechscope::store
