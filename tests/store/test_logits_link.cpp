// /logits as a hard link to /activations/unembed.hook_logits (issue #24): when a cache holds every hook, the
// forward's logits are the tensor its last hook saw, and writing them again cost a second copy of the largest
// dataset ([1, 1024, 151936] fp32 is 622 MB for a Qwen3 vocabulary) at the very end of the run. The link must
// hold exactly the logits' values, must not be taken when the logits are another tensor (or were written to
// in place since the hook), and must cost no bytes: each file's size is compared with the same cache written
// with a copy.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

constexpr const char* kHook = "unembed.hook_logits";

/// A cache of one hook tensor `hooked` and the logits `logits`, written with `opts`; its size in bytes.
std::uintmax_t writeHookAndLogits(const std::filesystem::path& file, const at::Tensor& hooked, const at::Tensor& logits,
                                  const CacheOptions& opts) {
  CacheWriter w(file, Provenance{}, opts);
  w.writeActivation(kHook, hooked);
  w.writeLogits(logits);
  w.commit();
  return std::filesystem::file_size(file);
}

CacheOptions withQueue(int64_t bytes) {
  CacheOptions o;
  o.backgroundBytes = bytes;
  return o;
}

}  // namespace

TEST(StoreLogitsLink, TheHookedTensorIsStoredOnceUnderBothNames) {
  ScratchDir dir;
  const at::Tensor logits = at::randn({2, 64, 2048});  // [batch, pos, vocab], 1 MiB fp32
  const auto nbytes = static_cast<std::uintmax_t>(logits.nbytes());
  for (const int64_t queue : {int64_t{0}, int64_t{256} << 20}) {
    SCOPED_TRACE(queue);
    const std::uintmax_t linked = writeHookAndLogits(dir / "linked.h5", logits, logits, withQueue(queue));
    const std::uintmax_t copied = writeHookAndLogits(dir / "copied.h5", logits, logits.clone(), withQueue(queue));
    // A copy adds the 1 MiB of values (chunk index and header bytes aside); the link adds none of them.
    EXPECT_GE(copied, linked + nbytes) << "linked " << linked << " B, copied " << copied << " B";
    for (const char* name : {"linked.h5", "copied.h5"}) {
      const CacheReader r = CacheReader::open(dir / name);
      EXPECT_TRUE(at::equal(r.read("/logits"), logits)) << name;
      EXPECT_TRUE(at::equal(r.read(kHook), logits)) << name;
    }
  }
}

TEST(StoreLogitsLink, AnInPlaceWriteAfterTheHookGetsItsOwnCopy) {
  ScratchDir dir;
  at::Tensor logits = at::randn({1, 16, 512});
  const at::Tensor before = logits.clone();
  {
    CacheWriter w(dir / "c.h5", Provenance{});  // on the caller's thread: the hook's values are written at once
    w.writeActivation(kHook, logits);
    logits.mul_(2);  // bumps the version counter: same memory, new values
    w.writeLogits(logits);
    w.commit();
  }
  const CacheReader r = CacheReader::open(dir / "c.h5");
  EXPECT_TRUE(at::equal(r.read(kHook), before));
  EXPECT_TRUE(at::equal(r.read("/logits"), before * 2));
}

TEST(StoreLogitsLink, InferenceTensorsHaveNoVersionCounterAndAreWrittenTwice) {
  ScratchDir dir;
  at::Tensor logits;
  {
    c10::InferenceMode inference;  // an in-place write would leave no trace: the writer must not link
    logits = at::randn({1, 16, 4096});
  }
  const std::uintmax_t size = writeHookAndLogits(dir / "c.h5", logits, logits, withQueue(1 << 20));
  const at::Tensor plain = at::randn({1, 16, 4096});
  const std::uintmax_t linked = writeHookAndLogits(dir / "p.h5", plain, plain, withQueue(1 << 20));
  EXPECT_GE(size, linked + static_cast<std::uintmax_t>(logits.nbytes()));
  const CacheReader r = CacheReader::open(dir / "c.h5");
  EXPECT_TRUE(at::equal(r.read("/logits"), logits));
}

TEST(StoreLogitsLink, AnotherHookNameOrAStorageDtypeStillLinksOnlyTheLogitsHook) {
  ScratchDir dir;
  const at::Tensor logits = at::randn({1, 32, 1024});
  CacheOptions fp16 = withQueue(1 << 20);
  fp16.dtype = StorageDtype::Float16;
  {
    CacheWriter w(dir / "c.h5", Provenance{}, fp16);
    w.writeActivation("ln_final.hook_normalized", logits);  // same tensor under another name: not a link target
    w.writeLogits(logits);
    w.commit();
  }
  const std::uintmax_t withCopy = std::filesystem::file_size(dir / "c.h5");
  const std::uintmax_t linked = writeHookAndLogits(dir / "l.h5", logits, logits, fp16);
  EXPECT_GE(withCopy, linked + static_cast<std::uintmax_t>(logits.numel() * 2));
  const CacheReader r = CacheReader::open(dir / "l.h5");
  EXPECT_EQ(r.info("/logits").dtype, "float16");
  EXPECT_TRUE(at::equal(r.read("/logits"), logits.to(at::kHalf).to(at::kFloat)));
}

TEST(StoreLogitsLink, EveryHookCacheOfARealForwardStoresTheLogitsOnce) {
  ScratchDir dir;
  synth::writeSynthFolder(dir / "m", "gpt2", "tiny", 3, "fp32");
  auto model = HookedTransformer::load(dir / "m");
  const at::Tensor tokens = at::randint(0, model->config().dVocab, {1, 48}, at::kLong);
  std::uintmax_t sizes[2] = {0, 0};
  at::Tensor logits;
  for (const bool copy : {false, true}) {
    const auto file = dir / (copy ? "copy.h5" : "link.h5");
    CacheWriter w(file, Provenance{}, withQueue(64 << 20));
    HookSet hooks;
    hooks.add("*", [&w](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
      w.writeActivation(c.name, t);
      return std::nullopt;
    });
    const ForwardResult r = model->forward(tokens, {}, &hooks);
    w.writeTokens(tokens);
    w.writeLogits(copy ? r.logits.clone() : r.logits);
    w.commit();
    sizes[copy] = std::filesystem::file_size(file);
    logits = r.logits;
  }
  EXPECT_GE(sizes[1], sizes[0] + static_cast<std::uintmax_t>(logits.nbytes()));
  const CacheReader r = CacheReader::open(dir / "link.h5");
  EXPECT_TRUE(at::equal(r.read("/logits"), logits));
  EXPECT_TRUE(at::equal(r.read(kHook), logits));
}
