// Attention maps formed beside the forward and cached (issue #24): store::streamForwardInto with
// MapsPlacement::Beside leaves the maps unhooked, the forward keeps its own attention path, and
// CacheWriter::writeDeferredMaps forms them on the writer's second thread. Checked from outside the writer:
// libhdf5 itself reads every map back (into NaN-filled buffers) and it must equal, bit for bit, the maps a
// deferring forward hands out for the same tokens; the cache holds every hook; the logits are the bare pass's.
// A failing formation surfaces at commit and leaves no file; the placement rules are those documented.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstring>
#include <filesystem>
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
