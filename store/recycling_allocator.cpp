#include "store/recycling_allocator.hpp"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

namespace mechscope::store {

namespace {

constexpr std::size_t kMinBytes = std::size_t{1} << 20;
constexpr std::size_t kHuge = std::size_t{2} << 20;

/// Size classes: 64 KiB steps below 2 MiB, 2 MiB steps above (shapes that differ slightly share blocks).
std::size_t sizeClass(std::size_t n) {
  const std::size_t step = n >= kHuge ? kHuge : (std::size_t{64} << 10);
  return (n + step - 1) / step * step;
}

class RecyclingCpuAllocator final : public c10::Allocator {
 public:
  RecyclingCpuAllocator(c10::Allocator* base, std::size_t cap)
      : m_base(base), m_baseDeleter(base->raw_deleter()), m_cap(cap) {}

  // c10::Allocator::allocate is `const` in LibTorch 1.13 and not const in 2.x, which also adds a pure virtual
  // copy_data. Defining both allocate signatures (and copy_data) without `override` builds with either: the
  // one that matches the base overrides it, the other is a plain overload.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Winconsistent-missing-override"
#pragma clang diagnostic ignored "-Woverloaded-virtual"
#endif
  c10::DataPtr allocate(size_t n) const { return allocateBlock(n); }  // LibTorch 1.13
  c10::DataPtr allocate(size_t n) { return allocateBlock(n); }        // LibTorch 2.x
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
#if defined(__clang__)
#pragma clang diagnostic pop
#endif

  c10::DataPtr allocateBlock(size_t n) const {
    if (n < kMinBytes) return m_base->allocate(n);
    const std::size_t size = sizeClass(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      auto it = m_free.find(size);
      if (it != m_free.end()) {
        p = it->second;
        m_free.erase(it);
        m_kept -= size;
        ++m_reused;
      } else {
        ++m_fresh;
      }
    }
    if (!p) {
      p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        release(size);  // give kept blocks back and try once more
        p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
      }
      if (size >= kHuge) (void)::madvise(p, size, MADV_HUGEPAGE);
    }
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_sizes.emplace(p, size);
    }
    return c10::DataPtr(p, p, &RecyclingCpuAllocator::free, c10::Device(c10::DeviceType::CPU));
  }

  // LibTorch's raw_allocate/raw_deallocate (TensorIterator buffers) need ctx == data and a raw deleter that
  // also frees the small blocks the default allocator handed out.
  c10::DeleterFnPtr raw_deleter() const override { return &RecyclingCpuAllocator::free; }

  static void free(void* p) {
    RecyclingCpuAllocator* a = instance();
    std::size_t size = 0;
    {
      std::lock_guard<std::mutex> lock(a->m_mutex);
      auto it = a->m_sizes.find(p);
      if (it != a->m_sizes.end()) {
        size = it->second;
        a->m_sizes.erase(it);
      }
    }
    if (size == 0) {
      a->m_baseDeleter(p);  // one of the default allocator's blocks
      return;
    }
    a->keep(p, size);
  }

  static RecyclingCpuAllocator*& instance() {
    static RecyclingCpuAllocator* a = nullptr;
    return a;
  }

  RecyclingStats stats() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return RecyclingStats{m_reused, m_fresh, static_cast<int64_t>(m_kept), static_cast<int64_t>(m_cap)};
  }

 private:
  void keep(void* p, std::size_t size) const {
    if (size > m_cap) {  // too large to keep: unmap it alone, leaving the kept blocks for the next tensors
      ::munmap(p, size);
      return;
    }
    std::unique_lock<std::mutex> lock(m_mutex);
    // Make room by unmapping the largest kept blocks first.
    while (m_kept + size > m_cap && !m_free.empty()) {
      auto last = std::prev(m_free.end());
      ::munmap(last->second, last->first);
      m_kept -= last->first;
      m_free.erase(last);
    }
    if (m_kept + size > m_cap) {
      lock.unlock();
      ::munmap(p, size);
      return;
    }
    m_free.emplace(size, p);
    m_kept += size;
  }

  /// Unmaps kept blocks until `need` more bytes could be mapped (best effort under an address-space cap).
  void release(std::size_t need) const {
    std::lock_guard<std::mutex> lock(m_mutex);
    std::size_t freed = 0;
    while (freed < need && !m_free.empty()) {
      auto last = std::prev(m_free.end());
      ::munmap(last->second, last->first);
      freed += last->first;
      m_kept -= last->first;
      m_free.erase(last);
    }
  }

  c10::Allocator* m_base;
  c10::DeleterFnPtr m_baseDeleter;
  const std::size_t m_cap;
  mutable std::mutex m_mutex;
  mutable std::multimap<std::size_t, void*> m_free;        // kept blocks by size
  mutable std::unordered_map<void*, std::size_t> m_sizes;  // blocks in use by address
  mutable std::size_t m_kept = 0;
  mutable int64_t m_reused = 0, m_fresh = 0;
};

}  // namespace

void installRecyclingCpuAllocator(std::size_t capBytes) {
  static std::once_flag once;
  std::call_once(once, [capBytes] {
    std::size_t cap = capBytes;
    if (const char* env = std::getenv("MECHSCOPE_RECYCLE_MIB"); env && *env) cap = std::strtoull(env, nullptr, 10) << 20;
    if (cap == 0 || !c10::GetDefaultCPUAllocator()->raw_deleter()) return;  // its small blocks need a raw deleter
    // Never destroyed: tensors freed during static destruction still find it.
    auto* a = new RecyclingCpuAllocator(c10::GetDefaultCPUAllocator(), cap);
    RecyclingCpuAllocator::instance() = a;
    c10::SetAllocator(c10::DeviceType::CPU, a, /*priority=*/1);
  });
}

RecyclingStats recyclingStats() {
  const auto* a = RecyclingCpuAllocator::instance();
  return a ? a->stats() : RecyclingStats{};
}

}  // namespace mechscope::store
