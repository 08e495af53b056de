// The background cache writer (issue 11): a cache written with CacheOptions::backgroundBytes > 0 holds exactly
// the bytes of one written on the forward's thread (every dataset bit-identical, same attributes) for real
// forwards of the synth families; the queue respects its byte bound; a failing write surfaces unchanged at
// the next write and at commit, and leaves no file.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "store/background_writer.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/recycling_allocator.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

/// Writes every hook of one forward of `model` over `tokens` into `file` with `opts`.
void cacheForward(HookedTransformer& model, const at::Tensor& tokens, const std::filesystem::path& file,
                  const CacheOptions& opts) {
  Provenance prov;
  prov.family = model.config().modelType;
  CacheWriter w(file, prov, opts);
  HookSet hooks;
  hooks.add("*", [&w](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
    w.writeActivation(c.name, t);
    return std::nullopt;
  });
  const ForwardResult r = model.forward(tokens, {}, &hooks);
  w.writeTokens(tokens);
  w.writeLogits(r.logits);
  w.setAttribute("/", "attention_path", r.attentionPath);
  if (opts.backgroundBytes > 0) {
    EXPECT_LE(w.peakQueuedBytes(), std::max<int64_t>(opts.backgroundBytes, 1 << 20));
  }
  w.commit();
}

/// Bit-level equality of two tensors of the same dtype (NaN-safe: compares bytes).
bool sameBits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0;
}

void expectSameCaches(const std::filesystem::path& x, const std::filesystem::path& y) {
  const CacheReader a = CacheReader::open(x), b = CacheReader::open(y);
  const auto da = a.datasets(), db = b.datasets();
  ASSERT_EQ(da.size(), db.size());
  int compared = 0;
  for (std::size_t i = 0; i < da.size(); ++i) {
    ASSERT_EQ(da[i].path, db[i].path);
    EXPECT_EQ(da[i].axes, db[i].axes) << da[i].path;
    if (da[i].path == "/token_strings") continue;
    EXPECT_TRUE(sameBits(a.read(da[i].path), b.read(db[i].path))) << da[i].path << " differs";
    EXPECT_EQ(a.attributes(da[i].path), b.attributes(db[i].path)) << da[i].path;
    ++compared;
  }
  EXPECT_GT(compared, 20);
}

}  // namespace

TEST(StoreBackgroundWriter, AsyncCacheEqualsSyncCacheForEverySynthFamily) {
  ScratchDir dir;
  for (const std::string family : {"gpt2", "llama", "qwen3", "gpt_neox"}) {
    SCOPED_TRACE(family);
    synth::writeSynthFolder(dir / family, family, "tiny", 7, "fp32");
    auto model = HookedTransformer::load(dir / family);
    const at::Tensor tokens = at::randint(0, model->config().dVocab, {2, 24}, at::kLong);
    for (const StorageDtype dtype : {StorageDtype::Float32, StorageDtype::Float16, StorageDtype::BFloat16}) {
      CacheOptions sync;
      sync.dtype = dtype;
      cacheForward(*model, tokens, dir / "sync.h5", sync);
      for (const int64_t bound : {int64_t{1}, int64_t{4} << 10, int64_t{256} << 20}) {  // 1 B: one job at a time
        CacheOptions async = sync;
        async.backgroundBytes = bound;
        cacheForward(*model, tokens, dir / "async.h5", async);
        expectSameCaches(dir / "sync.h5", dir / "async.h5");
        std::filesystem::remove(dir / "async.h5");
      }
      std::filesystem::remove(dir / "sync.h5");
    }
  }
}

TEST(StoreBackgroundWriter, QueueRunsInOrderWithinItsByteBound) {
  BackgroundWriter bg(100);
  std::vector<int> order;
  std::atomic<int64_t> maxSeen{0};
  for (int i = 0; i < 20; ++i) {
    bg.submit(30, [&, i] {
      order.push_back(i);
      maxSeen = std::max<int64_t>(maxSeen, bg.pendingBytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  bg.submit(500, [&] { order.push_back(99); });  // larger than the bound: waits for an empty queue, runs alone
  bg.drain();
  ASSERT_EQ(order.size(), 21u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(order.back(), 99);
  EXPECT_LE(maxSeen.load(), 90);  // three 30-byte jobs fit in 100
  EXPECT_EQ(bg.peakPendingBytes(), 500);
  EXPECT_EQ(bg.pendingBytes(), 0);
}

TEST(StoreBackgroundWriter, FirstErrorIsStickyAndLaterJobsAreDropped) {
  BackgroundWriter bg(1 << 20);
  int ran = 0;
  bg.submit(1, [] { throw Error("disk full (errno = 28)"); });
  bg.submit(1, [&] { ++ran; });  // may be queued before the failure is seen: then it is dropped
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      bg.drain();
      FAIL() << "drain should rethrow";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "disk full (errno = 28)");
    }
  }
  EXPECT_THROW(bg.submit(1, [&] { ++ran; }), Error);
  EXPECT_EQ(ran, 0);
}

TEST(StoreBackgroundWriter, WriterErrorSurfacesAtTheNextWriteAndLeavesNoFile) {
  ScratchDir dir;
  const auto file = dir / "c.h5";
  CacheOptions opts;
  opts.backgroundBytes = 1 << 20;
  {
    CacheWriter w(file, Provenance{}, opts);
    // A complex tensor passes the caller-side checks; converting it fails on the writer thread.
    w.writeActivation("blocks.0.hook_resid_pre", at::zeros({1, 4, 8}, at::kComplexFloat));
    std::string first;
    try {
      for (int i = 0; i < 1000; ++i) {  // the failure is seen at the first write after it happened
        w.writeActivation(fmt::format("blocks.0.x{}", i), at::ones({1, 4, 8}));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      FAIL() << "the writer thread's error never surfaced";
    } catch (const InputError& e) {
      first = e.what();
    }
    EXPECT_NE(first.find("complex"), std::string::npos) << first;
    try {
      w.commit();
      FAIL() << "commit should rethrow the writer's error";
    } catch (const InputError& e) {
      EXPECT_EQ(first, e.what());
    }
    EXPECT_FALSE(w.committed());
  }
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(dir / "c.h5.partial"));
}

TEST(StoreBackgroundWriter, DuplicateNameIsRefusedAtOnceAndDestructorDropsTheQueue) {
  ScratchDir dir;
  CacheOptions opts;
  opts.backgroundBytes = int64_t{64} << 20;
  {
    CacheWriter w(dir / "d.h5", Provenance{}, opts);
    w.writeActivation("blocks.0.hook_resid_pre", at::ones({1, 512, 512}));
    EXPECT_THROW(w.writeActivation("blocks.0.hook_resid_pre", at::ones({1, 4, 8})), InputError);
    for (int i = 0; i < 8; ++i) w.writeActivation(fmt::format("blocks.{}.hook_resid_post", i), at::ones({1, 512, 512}));
  }  // not committed: queued tensors dropped, the .partial removed
  EXPECT_FALSE(std::filesystem::exists(dir / "d.h5"));
  EXPECT_FALSE(std::filesystem::exists(dir / "d.h5.partial"));
}

TEST(StoreRecyclingAllocator, ReusesFreedLargeBlocksAndKeepsAtMostItsCap) {
  if (std::getenv("MECHSCOPE_RECYCLE_MIB")) GTEST_SKIP() << "MECHSCOPE_RECYCLE_MIB is set";
  installRecyclingCpuAllocator(int64_t{64} << 20);  // the first install wins (a CacheWriter installs 512 MiB)
  const RecyclingStats s0 = recyclingStats();
  ASSERT_GT(s0.capBytes, 0);
  {
    at::Tensor a = at::full({2 << 20}, 3.0f);  // 8 MiB
    EXPECT_FLOAT_EQ(a.sum().item<float>(), 3.0f * (2 << 20));
  }
  const RecyclingStats s1 = recyclingStats();
  {
    at::Tensor b = at::empty({2 << 20});  // the same size class: the block just freed
    b.fill_(2.0f);
    EXPECT_FLOAT_EQ(b.sum().item<float>(), 2.0f * (2 << 20));
  }
  const RecyclingStats s2 = recyclingStats();
  EXPECT_EQ(s2.reused, s1.reused + 1);
  EXPECT_GE(s2.keptBytes, int64_t{8} << 20);
  {
    at::Tensor big = at::ones({s0.capBytes / 4 + (1 << 20)});  // larger than the cap: never kept
    EXPECT_EQ(big.sum().item<double>(), static_cast<double>(big.numel()));
  }
  EXPECT_LE(recyclingStats().keptBytes, s0.capBytes);
  // Freeing a block larger than the cap must not flush the kept ones (it used to unmap every kept block
  // first: at Qwen3's 622 MB logits, one per forward, the next forward's tensors were all fresh pages).
  const RecyclingStats s3 = recyclingStats();
  EXPECT_GE(s3.keptBytes, int64_t{8} << 20);
  {
    at::Tensor c = at::empty({2 << 20});
    c.fill_(1.0f);
    EXPECT_FLOAT_EQ(c.sum().item<float>(), 1.0f * (2 << 20));
  }
  EXPECT_EQ(recyclingStats().reused, s3.reused + 1);
  at::Tensor small = at::ones({1000});  // below 1 MiB: the default allocator, freed by it
  EXPECT_EQ(small.sum().item<float>(), 1000.0f);
}
