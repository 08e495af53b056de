#include "core/model/weight_source.hpp"

#include <ATen/ATen.h>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/safetensors/safetensors_file.hpp"

namespace mechscope {

WeightSource::WeightSource(const SafetensorsSet& set, at::ScalarType dtype, at::Device device)
    : m_set(&set), m_dtype(dtype), m_device(device) {}

WeightSource::WeightSource(TensorFactory factory, at::ScalarType dtype)
    : m_factory(std::move(factory)), m_dtype(dtype), m_device(at::kCPU) {}

bool WeightSource::has(const std::string& name) const { return m_factory ? true : m_set->has(name); }

at::Tensor WeightSource::getCpu(const std::string& name, const std::vector<int64_t>& shape) const {
  if (m_factory) return m_factory(name, shape);
  const SafetensorsSet& set = *m_set;
  if (!set.has(name))
    throw InputError(fmt::format("{}: tensor '{}' is missing (expected shape {})", set.label(), name, shapeString(shape)));
  const auto& info = set.info(name);
  if (info.shape != shape)
    throw InputError(fmt::format("{}: tensor '{}' has shape {}, expected {}", set.fileOf(name).path().filename().string(),
                                 name, shapeString(info.shape), shapeString(shape)));
  if (info.dtype == SafetensorsDType::I64 || info.dtype == SafetensorsDType::I32 || info.dtype == SafetensorsDType::BOOL ||
      info.dtype == SafetensorsDType::I8 || info.dtype == SafetensorsDType::U8)
    throw InputError(fmt::format("{}: tensor '{}' has dtype {}, expected a floating-point weight",
                                 set.fileOf(name).path().filename().string(), name, toString(info.dtype)));
  // On CPU the conversion happens straight from the mapping; for another device the stored dtype
  // travels first (half the bytes for bf16) and converts there.
  if (m_device.is_cpu()) return set.tensor(name, m_dtype);
  return set.tensor(name);
}

at::Tensor WeightSource::get(const std::string& name, const std::vector<int64_t>& shape) const {
  return place(getCpu(name, shape));
}

at::Tensor WeightSource::placeKeepingDtype(const at::Tensor& cpu) const {
  return m_device.is_cpu() ? cpu : cpu.to(m_device).contiguous();
}

at::Tensor WeightSource::place(const at::Tensor& cpu) const {
  if (m_device.is_cpu()) return cpu.scalar_type() == m_dtype ? cpu : cpu.to(m_dtype);
  return cpu.to(m_device).to(m_dtype).contiguous();
}

}  // namespace mechscope
