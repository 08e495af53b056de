#include "store/export.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include <fstream>

#include "core/common/errors.hpp"

namespace mechscope::store {
namespace {

const char* npyDescr(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "<f4";
    case at::kHalf: return "<f2";
    case at::kDouble: return "<f8";
    case at::kLong: return "<i8";
    case at::kInt: return "<i4";
    case at::kShort: return "<i2";
    case at::kChar: return "|i1";
    case at::kByte: return "|u1";
    case at::kBool: return "|b1";
    default: return nullptr;
  }
}

}  // namespace

void writeNpy(const std::filesystem::path& path, const at::Tensor& tensor) {
  if (!tensor.defined()) throw InputError(fmt::format("npy '{}': the tensor is undefined", path.string()));
  at::Tensor t = tensor.detach().to(at::kCPU);
  if (!npyDescr(t.scalar_type())) t = t.to(at::kFloat);  // bf16 and others: float32
  t = t.contiguous();
  std::string shape;
  for (int64_t d = 0; d < t.dim(); ++d) shape += fmt::format("{}, ", t.size(d));
  if (t.dim() > 1) shape.resize(shape.size() - 2);  // "(2, 3)"; a 1-d shape keeps its comma: "(5,)"
  else if (t.dim() == 1) shape.resize(shape.size() - 1);
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", npyDescr(t.scalar_type()), shape);
  // magic(6) + version(2) + header length(2) + header + '\n' is padded with spaces to a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("npy '{}': cannot open for writing", path.string()));
  const auto len = static_cast<uint16_t>(header.size());
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(magic, 8);
  const char lenBytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(lenBytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  if (!out) throw InputError(fmt::format("npy '{}': write failed (disk full?)", path.string()));
}

void writeCsv(std::ostream& out, const at::Tensor& tensor) {
  if (!tensor.defined()) throw InputError("csv: the tensor is undefined");
  at::Tensor t = tensor.detach().to(at::kCPU);
  const bool isFloat = t.is_floating_point();
  t = (isFloat ? t.to(at::kDouble) : t.to(at::kLong)).contiguous();
  const int64_t cols = t.dim() >= 2 ? t.size(-1) : 1;
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  const bool wasFloat32OrLess = isFloat && tensor.scalar_type() != at::kDouble;
  std::string line;
  for (int64_t r = 0; r < rows; ++r) {
    line.clear();
    for (int64_t c = 0; c < cols; ++c) {
      if (c) line.push_back(',');
      const int64_t i = r * cols + c;
      if (isFloat) {
        const double v = t.data_ptr<double>()[i];
        // Shortest text that reads back to the same value in the tensor's own precision.
        line += wasFloat32OrLess ? fmt::format("{}", static_cast<float>(v)) : fmt::format("{}", v);
      } else {
        line += fmt::format("{}", t.data_ptr<int64_t>()[i]);
      }
    }
    line.push_back('\n');
    out << line;
  }
}

void writeCsv(const std::filesystem::path& path, const at::Tensor& t) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw InputError(fmt::format("csv '{}': cannot open for writing", path.string()));
  writeCsv(out, t);
  out.flush();
  if (!out) throw InputError(fmt::format("csv '{}': write failed (disk full?)", path.string()));
}

}  // namespace mechscope::store
