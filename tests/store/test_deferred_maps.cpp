// Attention maps formed beside the forward and cached (issue #24): store::streamForwardInto with
// MapsPlacement::Beside leaves the maps unhooked, the forward keeps its own attention path, and
// CacheWriter::writeDeferredMaps forms them on the writer's second thread. Checked from outside the writer:
// libhdf5 itself reads every map back (into NaN-filled buffers) and it must equal, bit for bit, the maps a
// deferring forward hands out for the same tokens; the cache holds every hook; the logits are the bare pass's.
// A failing formation surfaces at commit and leaves no file; the placement rules are those documented.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/resource.h>

#include <csignal>

#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/forward_streaming.hpp"
#include "h5_test_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;
using mechscope::store::testing::readRawFloats;

namespace {

bool sameBitsAs(const std::vector<float>& got, const at::Tensor& want) {
  const at::Tensor w = want.to(at::kFloat).contiguous();
  return got.size() == static_cast<size_t>(w.numel()) && std::memcmp(got.data(), w.data_ptr(), got.size() * sizeof(float)) == 0;
}

/// Random scores [1, heads, n, n] with −∞ above the diagonal, as a causal model's.
at::Tensor causalScores(int64_t heads, int64_t n) {
  const at::Tensor q = at::arange(n).view({n, 1}), k = at::arange(n).view({1, n});
  return at::randn({1, heads, n, n}).masked_fill(k > q, -std::numeric_limits<float>::infinity());
}

CacheOptions queued() {
  CacheOptions o;
  o.backgroundBytes = int64_t{64} << 20;
  return o;
}

}  // namespace

TEST(StoreDeferredMaps, CachedMapsAreTheDeferredOnesAndTheLogitsTheBarePasss) {
  ScratchDir dir;
  for (const std::string family : {"gpt2", "qwen3"}) {
    SCOPED_TRACE(family);
    synth::writeSynthFolder(dir / family, family, "tiny", 31, "fp32");
    auto m = HookedTransformer::load(dir / family);
    const int nLayers = m->config().nLayers;
    const at::Tensor ids = at::randint(0, m->config().dVocab, {1, 1100}, at::kLong);  // tiled maps (see deferred_maps_test)
    const ForwardResult bare = m->forward(ids);
    std::map<int, AttentionMaps> expected;
    ForwardOptions deferring;
    deferring.onDeferredMaps = [&expected](int layer, int64_t, std::function<AttentionMaps()> form) { expected[layer] = form(); };
    (void)m->forward(ids, deferring);
    ASSERT_EQ(expected.size(), static_cast<size_t>(nLayers));

    // A 64 MiB queue takes a layer's two maps (2 × 19.4 MB): formed on the maps thread; a 1 MiB one does not: formed
    // at once on the forward's thread. The same file either way.
    for (const int64_t queueBytes : {int64_t{64} << 20, int64_t{1} << 20}) {
      SCOPED_TRACE(queueBytes);
      const auto file = dir / (family + ".h5");
      ForwardResult cached;
      {
        CacheOptions options = queued();
        options.backgroundBytes = queueBytes;
        CacheWriter w(file, Provenance{}, options);
        ForwardOptions fo;
        HookSet hooks;
        streamForwardInto(w, {"*"}, m->hookNames(), fo, hooks, MapsPlacement::Beside);
        ASSERT_TRUE(static_cast<bool>(fo.onDeferredMaps));
        cached = m->forward(ids, fo, &hooks);
        w.writeLogits(cached.logits);
        w.commit();
      }
      EXPECT_TRUE(at::equal(cached.logits, bare.logits)) << "the cached pass's logits are the bare pass's";
      for (const auto& [layer, maps] : expected) {
        SCOPED_TRACE(layer);
        const auto scores = readRawFloats(file, fmt::format("/activations/blocks.{}.attn.hook_attn_scores", layer));
        const auto pattern = readRawFloats(file, fmt::format("/activations/blocks.{}.attn.hook_pattern", layer));
        EXPECT_TRUE(sameBitsAs(scores.values, maps.scores));
        EXPECT_TRUE(sameBitsAs(pattern.values, maps.pattern));
      }
      const auto r = CacheReader::open(file);
      for (const std::string& name : m->hookNames()) EXPECT_TRUE(r.has(name)) << name << " is cached";
      EXPECT_EQ(r.info("blocks.0.attn.hook_pattern").axes, r.info("blocks.0.attn.hook_attn_scores").axes);
    }
  }
}

TEST(StoreDeferredMaps, WrittenNowWithoutAQueueAndOnlyTheNamedOnes) {
  ScratchDir dir;
  const at::Tensor s = at::randn({1, 2, 8, 8});
  const at::Tensor p = at::softmax(s, -1);
  for (const bool background : {false, true}) {
    SCOPED_TRACE(background ? "background queue" : "no queue");
    const auto file = dir / "c.h5";
    {
      CacheWriter w(file, Provenance{}, background ? queued() : CacheOptions{});
      int formed = 0;
      w.writeDeferredMaps("", "blocks.0.attn.hook_pattern", [&] { ++formed; return std::pair{s, p}; }, 2 * s.nbytes());
      if (!background) {
        EXPECT_EQ(formed, 1) << "formed at once without a queue";
      }
      EXPECT_THROW(w.writeDeferredMaps("", "blocks.0.attn.hook_pattern", [&] { return std::pair{s, p}; }, 0), InputError)
          << "a name written twice";
      w.commit();
      EXPECT_EQ(formed, 1);
    }
    const auto r = CacheReader::open(file);
    EXPECT_FALSE(r.has("blocks.0.attn.hook_attn_scores")) << "not named: not written";
    EXPECT_TRUE(at::equal(r.read("blocks.0.attn.hook_pattern"), p));
    std::filesystem::remove(file);
  }
}

TEST(StoreDeferredMaps, MapsFormedBesideAreStoredInMaskedTiles) {
  // Causal maps [1, 6, 600, 600]: 256-wide tiles (3 per side, the last 88 wide, 6 live per group of heads); fp32 at
  // 1 MiB: 2 heads per chunk (4 would pad 6 heads to 8, more than 6/8 of padding), fp16: all 6 (8 fit). Read back by
  // libhdf5 alone into NaN-filled buffers: the tiles never written must come back as the fill value.
  ScratchDir dir;
  const at::Tensor scores = causalScores(6, 600);
  const at::Tensor pattern = at::softmax(scores, -1);
  struct Case {
    StorageDtype dtype;
    bool tiles;
    std::vector<int64_t> chunk;
    hsize_t chunks;
  };
  for (const Case& c : {Case{StorageDtype::Float32, true, {1, 2, 256, 256}, 3 * 6}, Case{StorageDtype::Float16, true, {1, 6, 256, 256}, 6},
                       Case{StorageDtype::Float32, false, {}, 0}}) {
    SCOPED_TRACE(fmt::format("{} tiles={}", storageDtypeName(c.dtype), c.tiles));
    const auto file = dir / "c.h5";
    CacheOptions o = queued();
    o.dtype = c.dtype;
    o.maskedTilesBesideForward = c.tiles;
    {
      CacheWriter w(file, Provenance{}, o);
      w.writeDeferredMaps("blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern", [&] { return std::pair{scores, pattern}; },
                          2 * scores.nbytes());
      w.commit();
    }
    const auto r = CacheReader::open(file);
    for (const auto& [hook, map] : {std::pair{"blocks.0.attn.hook_attn_scores", scores}, std::pair{"blocks.0.attn.hook_pattern", pattern}}) {
      SCOPED_TRACE(hook);
      const at::Tensor want = c.dtype == StorageDtype::Float16 ? map.to(at::kHalf) : map;
      const auto raw = readRawFloats(file, std::string("/activations/") + hook);
      EXPECT_TRUE(sameBitsAs(raw.values, want));
      EXPECT_TRUE(at::equal(r.read(hook), want));
      EXPECT_EQ(r.info(hook).axes, "batch,head,query,key");
      if (c.tiles) {
        EXPECT_EQ(r.info(hook).chunks, c.chunk);
        EXPECT_EQ(raw.chunksWritten, c.chunks);
      } else {
        EXPECT_NE(r.info(hook).chunks, (std::vector<int64_t>{1, 2, 256, 256})) << "row bands";
        EXPECT_GT(raw.chunksWritten, 0u);
      }
    }
    std::filesystem::remove(file);
  }
}

TEST(StoreDeferredMaps, AFailedTileWriteSurfacesAtCommitAndLeavesNoFile) {
  // Files may not grow past 4 MiB (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, as on a full disk): the
  // maps' 5.7 MB of kept fp32 tiles cannot be written, and commit reports it in the driver's words.
  ScratchDir dir;
  const at::Tensor scores = causalScores(6, 600);
  const auto file = dir / "c.h5";
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = rlim_t{4} << 20;
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < small.rlim_cur) GTEST_SKIP() << "the hard file-size limit is below 4 MiB";
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  {
    CacheWriter w(file, Provenance{}, queued());
    w.writeDeferredMaps("blocks.0.attn.hook_attn_scores", "", [&] { return std::pair{scores, at::Tensor()}; }, scores.nbytes());
    try {
      w.commit();
    } catch (const Error& e) {
      message = e.what();
    }
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(message.find("errno = 27"), std::string::npos) << "commit must fail with EFBIG, got: '" << message << "'";
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(file.string() + ".partial"));
}

TEST(StoreDeferredMaps, AFailedFormationSurfacesAtCommitAndLeavesNoFile) {
  ScratchDir dir;
  const auto file = dir / "c.h5";
  {
    CacheWriter w(file, Provenance{}, queued());
    w.writeDeferredMaps("blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern",
                        []() -> std::pair<at::Tensor, at::Tensor> { throw Error("maps thread: out of memory"); }, 1024);
    try {
      w.commit();
      ADD_FAILURE() << "commit succeeded";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "maps thread: out of memory");
    }
  }
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(file.string() + ".partial"));
}

TEST(StoreDeferredMaps, PlacementRules) {
  ScratchDir dir;
  synth::writeSynthFolder(dir / "m", "gpt2", "tiny", 32, "fp32");
  auto m = HookedTransformer::load(dir / "m");
  auto placed = [&](const CacheOptions& o, MapsPlacement placement, const std::vector<std::string>& patterns, HookSet hooks) {
    CacheWriter w(dir / "p.h5", Provenance{}, o);
    ForwardOptions fo;
    streamForwardInto(w, patterns, m->hookNames(), fo, hooks, placement);
    const bool beside = static_cast<bool>(fo.onDeferredMaps);
    EXPECT_EQ(hooks.active("blocks.0.attn.hook_pattern"), !beside && HookSet::matches(patterns.front(), "blocks.0.attn.hook_pattern"));
    return beside;
  };
  EXPECT_TRUE(placed(queued(), MapsPlacement::Beside, {"*"}, {}));
  EXPECT_FALSE(placed(queued(), MapsPlacement::InForward, {"*"}, {}));
  EXPECT_FALSE(placed(CacheOptions{}, MapsPlacement::Beside, {"*"}, {})) << "no queue: nothing to form them beside";
  EXPECT_FALSE(placed(queued(), MapsPlacement::Beside, {"blocks.*.hook_resid_pre"}, {})) << "no map cached";
  HookSet reader;
  reader.add("blocks.1.attn.hook_pattern", [](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return std::nullopt; });
  EXPECT_FALSE(placed(queued(), MapsPlacement::Beside, {"*"}, reader)) << "another hook on a map sees it in the forward";
}
