// The cache writer's O_DIRECT file driver (store/detail/direct_vfd.hpp, issue #24): large chunks go around
// the page cache, from the tensor's memory when it is aligned and through the copy buffer when it is not,
// the unaligned ends buffered; the file reads back bit for bit, exactly as one written by libhdf5's
// default driver, and keeps its chunk shapes.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/detail/direct_vfd.hpp"
#include "store/heap_policy.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

at::Tensor dioRandn(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

/// Whether files in `dir` can be opened with O_DIRECT (tmpfs on older kernels cannot).
bool dioWorksIn(const std::filesystem::path& dir) {
  const auto probe = dir / "probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
  std::filesystem::remove(probe);
  return fd >= 0;
}

struct DioTensors {
  at::Tensor pattern;   // [1, 4, 512, 1024] fp32: 1 MiB chunks at page-aligned memory
  at::Tensor resid;     // [1, 1024, 768]: 1,047,552-byte chunks (512-byte multiples, not 4 KiB)
  at::Tensor shifted;   // same shape, memory 12 bytes past an allocation: the copy buffer
  at::Tensor logits;    // [1, 64, 5001]: rows of 20,004 bytes, chunks with unaligned ends
};

DioTensors dioSample() {
  boundHeapGrowthForStreaming();  // as a run: the writer exists before the forward allocates its tensors
  DioTensors t;
  t.pattern = at::softmax(dioRandn({1, 4, 512, 1024}, 1), -1);
  t.resid = dioRandn({1, 1024, 768}, 2);
  t.shifted = dioRandn({1024 * 768 + 3}, 3).narrow(0, 3, 1024 * 768).view({1, 1024, 768});
  t.logits = dioRandn({1, 64, 5001}, 4);
  return t;
}

void dioWriteCache(const std::filesystem::path& path, const DioTensors& t, CacheOptions options) {
  CacheWriter w(path, Provenance{}, options);
  w.writeActivation("blocks.0.attn.hook_pattern", t.pattern);
  w.writeActivation("blocks.0.hook_resid_pre", t.resid);
  w.writeActivation("blocks.1.hook_resid_pre", t.shifted);
  w.writeLogits(t.logits);
  w.commit();
}

unsigned long long dioDirectTotal(const store::detail::DirectWriteCounters& c) { return c.directBytes + c.bouncedBytes; }

}  // namespace

TEST(StoreDirectWrites, ChunksGoAroundThePageCacheAndReadBackBitForBit) {
  ScratchDir dir;
  const DioTensors t = dioSample();
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(t.pattern.data_ptr()) % 4096, 0u);  // the recycling allocator's pages
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(t.resid.data_ptr()) % 4096, 0u);
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(t.shifted.data_ptr()) % 512, 0u);
  for (const bool background : {false, true}) {
    CacheOptions direct;
    direct.backgroundBytes = background ? (int64_t{64} << 20) : 0;
    CacheOptions buffered = direct;
    buffered.directWrites = false;
    const auto before = store::detail::directWriteCounters();
    dioWriteCache(dir / "direct.h5", t, direct);
    const auto between = store::detail::directWriteCounters();
    dioWriteCache(dir / "buffered.h5", t, buffered);
    const auto after = store::detail::directWriteCounters();

    EXPECT_EQ(dioDirectTotal(after), dioDirectTotal(between)) << "the default driver wrote nothing with O_DIRECT";
    if (dioWorksIn(dir.path())) {
      EXPECT_GE(between.directBytes - before.directBytes, (8u << 20) + (3u << 20)) << "pattern and resid: aligned memory";
      EXPECT_GE(between.bouncedBytes - before.bouncedBytes, 3u << 20) << "the shifted view: through the copy buffer";
      EXPECT_GT(between.bufferedBytes - before.bufferedBytes, 0u) << "the logits chunks' unaligned ends";
    } else {
      EXPECT_EQ(dioDirectTotal(between), dioDirectTotal(before)) << "no O_DIRECT here: every write buffered";
    }

    const auto d = CacheReader::open(dir / "direct.h5");
    const auto b = CacheReader::open(dir / "buffered.h5");
    EXPECT_TRUE(at::equal(d.read("blocks.0.attn.hook_pattern"), t.pattern));
    EXPECT_TRUE(at::equal(d.read("blocks.0.hook_resid_pre"), t.resid));
    EXPECT_TRUE(at::equal(d.read("blocks.1.hook_resid_pre"), t.shifted));
    EXPECT_TRUE(at::equal(d.read("logits"), t.logits));
    for (const auto& name : {"blocks.0.attn.hook_pattern", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"}) {
      EXPECT_EQ(d.info(name).chunks, b.info(name).chunks) << name;
      EXPECT_TRUE(at::equal(d.read(name), b.read(name))) << name;
    }
    EXPECT_EQ(d.info("blocks.0.attn.hook_pattern").chunks, (std::vector<int64_t>{1, 1, 256, 1024}));
    EXPECT_EQ(d.info("blocks.0.hook_resid_pre").chunks, (std::vector<int64_t>{1, 341, 768}));
  }
}

TEST(StoreDirectWrites, Float16AndBlockWritesKeepTheirValues) {
  ScratchDir dir;
  const at::Tensor x = dioRandn({1, 2048, 1024}, 5);
  const at::Tensor values = dioRandn({1, 1024, 1024}, 6);
  CacheOptions o;
  o.dtype = StorageDtype::Float16;
  {
    CacheWriter w(dir / "c.h5", Provenance{}, o);
    w.writeActivation("blocks.0.hook_resid_post", x);
    // Filled block by block through libhdf5's chunk cache, in blocks that straddle the 256-row chunks.
    DatasetWriter dw = w.beginDataset("/analyses/blocks/values", {1, 1024, 1024}, StorageDtype::Float32);
    dw.write({0, 300, 0}, values.narrow(1, 300, 724));
    dw.write({0, 0, 0}, values.narrow(1, 0, 300));
    w.commit();
  }
  const auto r = CacheReader::open(dir / "c.h5");
  EXPECT_TRUE(at::equal(r.read("blocks.0.hook_resid_post"), x.to(at::kHalf)));
  EXPECT_TRUE(at::equal(r.read("/analyses/blocks/values"), values));
}
