#include "core/probe/cpu_memory_meter.hpp"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <atomic>
#include <cstdint>

#include "core/common/errors.hpp"

// LibTorch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define MECHSCOPE_ALLOCATOR_CONST
#define MECHSCOPE_ALLOCATOR_COPY_DATA 1
#else
#define MECHSCOPE_ALLOCATOR_CONST const
#define MECHSCOPE_ALLOCATOR_COPY_DATA 0
#endif

namespace mechscope {

namespace {

// Counters outlive every meter: tensors allocated under a meter may be freed after it is gone.
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};

void addBytes(int64_t n) {
  const int64_t now = g_current.fetch_add(n, std::memory_order_relaxed) + n;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

/// What the wrapped DataPtr carries: the inner allocation and its size.
struct CountedBlock {
  c10::DataPtr inner;
  int64_t bytes;
};

void freeCounted(void* ctx) {
  auto* block = static_cast<CountedBlock*>(ctx);
  g_current.fetch_sub(block->bytes, std::memory_order_relaxed);
  delete block;  // frees through the inner allocator's deleter
}

class CountingAllocator final : public c10::Allocator {
 public:
  c10::Allocator* inner = nullptr;

  c10::DataPtr allocate(size_t n) MECHSCOPE_ALLOCATOR_CONST override {
    c10::DataPtr ptr = inner->allocate(n);
    void* data = ptr.get();
    const c10::Device device = ptr.device();
    auto* block = new CountedBlock{std::move(ptr), static_cast<int64_t>(n)};
    addBytes(static_cast<int64_t>(n));
    return {data, block, &freeCounted, device};
  }
#if MECHSCOPE_ALLOCATOR_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    inner->copy_data(dest, src, count);
  }
#endif
};

CountingAllocator& countingAllocator() {
  static CountingAllocator allocator;  // static lifetime, as SetAllocator requires
  return allocator;
}

constexpr uint8_t kPriority = 255;  // above the default CPU allocator's registration

}  // namespace

CpuMemoryMeter::CpuMemoryMeter() {
  if (g_installed.exchange(true)) throw Error("CpuMemoryMeter: another meter is already installed");
  CountingAllocator& a = countingAllocator();
  a.inner = c10::GetCPUAllocator();
  g_current.store(0);
  g_peak.store(0);
  c10::SetCPUAllocator(&a, kPriority);
}

CpuMemoryMeter::~CpuMemoryMeter() {
  c10::SetCPUAllocator(countingAllocator().inner, kPriority);
  g_installed.store(false);
}

int64_t CpuMemoryMeter::currentBytes() const { return g_current.load(std::memory_order_relaxed); }

int64_t CpuMemoryMeter::peakBytes() const { return g_peak.load(std::memory_order_relaxed); }

void CpuMemoryMeter::resetPeak() { g_peak.store(g_current.load(std::memory_order_relaxed)); }

}  // namespace mechscope
