#include "store/conversion_buffer.hpp"

#include <ATen/ATen.h>
#include <c10/util/Half.h>
#include <sys/mman.h>

#include <cstdint>
#include <new>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MECHSCOPE_HAVE_F16C_PATH 1
#endif

namespace mechscope::store {

namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

void floatToHalfScalar(const float* src, uint16_t* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = c10::Half(src[i]).x;
}

#ifdef MECHSCOPE_HAVE_F16C_PATH
/// Eight floats at a time with VCVTPS2PH (round to nearest even, as c10::Half); a group holding a NaN is
/// converted by c10::Half, whose NaN bits (sign | 0x7E00) differ from the instruction's (payload kept).
__attribute__((target("avx,f16c"))) void floatToHalfF16c(const float* src, uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      floatToHalfScalar(src + i, dst + i, 8);
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  floatToHalfScalar(src + i, dst + i, n - i);
}

bool cpuHasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}
#endif

}  // namespace

void floatToHalf(const float* src, uint16_t* dst, std::size_t n) {
#ifdef MECHSCOPE_HAVE_F16C_PATH
  if (cpuHasF16c()) {
    floatToHalfF16c(src, dst, n);
    return;
  }
#endif
  floatToHalfScalar(src, dst, n);
}

ConversionBuffer::ConversionBuffer(std::size_t capBytes) : m_cap(capBytes) {}

ConversionBuffer::~ConversionBuffer() {
  if (m_data) ::munmap(m_data, m_bytes);
}

std::size_t ConversionBuffer::capacity() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_bytes;
}

void ConversionBuffer::reserve(std::size_t bytes) {
  if (bytes <= m_bytes) return;
  const std::size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = MAP_FAILED;
#if defined(__linux__)
  if (m_data) p = ::mremap(m_data, m_bytes, size, MREMAP_MAYMOVE);  // the pages already touched move along
#endif
  if (p == MAP_FAILED) {
    p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (m_data) ::munmap(m_data, m_bytes);
  }
  (void)::madvise(p, size, MADV_HUGEPAGE);
  m_data = p;
  m_bytes = size;
}

ConversionBuffer& sharedConversionBuffer() {
  static auto* buffer = new ConversionBuffer();  // never destroyed: a writer may convert during static destruction
  return *buffer;
}

ConversionBuffer::Converted ConversionBuffer::convert(const at::Tensor& t, StorageDtype dtype) {
  Converted out;
  const at::ScalarType target = storageScalarType(dtype);
  const bool lowPrecision = dtype == StorageDtype::Float16 || dtype == StorageDtype::BFloat16;
  const auto bytes = static_cast<std::size_t>(t.defined() ? t.numel() : 0) * static_cast<std::size_t>(storageElementSize(dtype));
  if (!t.defined() || !lowPrecision || !t.device().is_cpu() || !t.is_floating_point() || t.scalar_type() == target ||
      bytes == 0 || bytes > m_cap) {
    out.tensor = toStorage(t, dtype);
    return out;
  }
  out.hold = std::unique_lock<std::mutex>(m_mutex);
  reserve(bytes);
  at::Tensor dst = at::from_blob(m_data, t.sizes(), at::TensorOptions().dtype(target));
  const at::Tensor src = t.detach();
  if (target == at::kHalf && src.scalar_type() == at::kFloat && src.is_contiguous()) {
    floatToHalf(src.data_ptr<float>(), static_cast<uint16_t*>(m_data), static_cast<std::size_t>(src.numel()));
  } else {
    dst.copy_(src);
  }
  out.tensor = std::move(dst);
  return out;
}

}  // namespace mechscope::store
