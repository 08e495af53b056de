// The writer's reused conversion buffer (issue #24): every conversion equals toStorage bit for bit (the
// F16C path included: rounding, overflow, subnormals, NaNs, odd lengths), and the buffer is reused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "store/conversion_buffer.hpp"

using namespace mechscope;
using namespace mechscope::store;

namespace {

bool conversionBitsEqual(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

}  // namespace

TEST(StoreConversion, HalfBitsEqualLibTorchForEveryKindOfValue) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 5.96e-8f, 2.9e-8f,
                          1e-30f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                          -std::numeric_limits<float>::quiet_NaN(), 1.00048828125f /* a tie: rounds to even */};
  uint32_t payloadNan = 0x7fc12345;
  float f;
  std::memcpy(&f, &payloadNan, sizeof f);
  v.push_back(f);
  auto gen = at::detail::createCPUGenerator(7);
  const at::Tensor r = at::randn({100003}, gen) * 3000;  // odd length: the scalar tail too
  v.insert(v.end(), r.data_ptr<float>(), r.data_ptr<float>() + r.numel());
  const at::Tensor src = at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
  at::Tensor ours = at::empty({src.numel()}, at::kHalf);
  floatToHalf(src.data_ptr<float>(), reinterpret_cast<uint16_t*>(ours.data_ptr()), static_cast<std::size_t>(src.numel()));
  EXPECT_TRUE(conversionBitsEqual(ours, src.to(at::kHalf)));
}

TEST(StoreConversion, BufferIsReusedAndEqualsToStorage) {
  ConversionBuffer buffer(std::size_t{8} << 20);
  auto gen = at::detail::createCPUGenerator(8);
  const at::Tensor a = at::randn({4, 256, 1024}, gen);  // 1M floats → 2 MiB fp16
  const at::Tensor b = at::randn({2, 256, 1024}, gen);
  {
    const auto c = buffer.convert(a, StorageDtype::Float16);
    EXPECT_TRUE(conversionBitsEqual(c.tensor, toStorage(a, StorageDtype::Float16)));
  }
  const std::size_t grown = buffer.capacity();
  EXPECT_GE(grown, a.numel() * 2u);
  {
    const auto c = buffer.convert(b, StorageDtype::Float16);  // smaller: same memory
    EXPECT_TRUE(conversionBitsEqual(c.tensor, toStorage(b, StorageDtype::Float16)));
    ConversionBuffer other(std::size_t{8} << 20);
    const auto bf = other.convert(a.transpose(0, 2), StorageDtype::BFloat16);
    EXPECT_TRUE(conversionBitsEqual(bf.tensor, toStorage(a.transpose(0, 2), StorageDtype::BFloat16)));  // strided, bf16
  }
  EXPECT_EQ(buffer.capacity(), grown);
  {
    const at::Tensor c = at::randn({6, 256, 1024}, gen);  // 3 MiB fp16: the buffer grows (mremap)
    const auto converted = buffer.convert(c, StorageDtype::Float16);
    EXPECT_TRUE(conversionBitsEqual(converted.tensor, toStorage(c, StorageDtype::Float16)));
  }
  EXPECT_GT(buffer.capacity(), grown);
  // Nothing to convert, or over the cap: toStorage itself (the same storage when already in place).
  const auto same = buffer.convert(a, StorageDtype::Float32);
  EXPECT_EQ(same.tensor.data_ptr(), a.data_ptr());
  EXPECT_FALSE(same.hold.owns_lock());
  const at::Tensor big = at::randn({5, 1024, 1024}, gen);  // 10 MiB fp16 > the 8 MiB cap
  const auto fresh = buffer.convert(big, StorageDtype::Float16);
  EXPECT_FALSE(fresh.hold.owns_lock());
  EXPECT_TRUE(conversionBitsEqual(fresh.tensor, toStorage(big, StorageDtype::Float16)));
}
