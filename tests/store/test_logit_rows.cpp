// Streamed logits (issue #24): CacheWriter::writeLogitRows writes unembed.hook_logits block by block while the
// forward computes the rest (ForwardOptions::onLogitRows), so the largest dataset no longer waits for the end of
// the pass. Checked from outside the writer: libhdf5 itself reads the dataset back (into a NaN-filled buffer, so a
// chunk never written would show) and every value is compared bit for bit with the tensor handed in; a hook that
// replaced or changed the logits after the stream must win; calls out of order and an unfinished stream are refused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/common/errors.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "h5_test_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

constexpr const char* kStreamedHook = "unembed.hook_logits";

/// /activations/unembed.hook_logits read by libhdf5 alone as fp32, into a NaN-filled buffer.
std::vector<float> readRawLogits(const std::filesystem::path& file) {
  return mechscope::store::testing::readRawFloats(file, "/activations/unembed.hook_logits").values;
}

bool sameLogitBits(const std::vector<float>& got, const at::Tensor& want) {
  const at::Tensor w = want.to(at::kFloat).contiguous();
  return got.size() == static_cast<size_t>(w.numel()) &&
         std::memcmp(got.data(), w.data_ptr(), got.size() * sizeof(float)) == 0;
}

CacheOptions queueOf(int64_t bytes) {
  CacheOptions o;
  o.backgroundBytes = bytes;
  return o;
}

/// Streams `logits` in the blocks of positions `cuts` (0 < c1 < … < pos), then hands the hook `hooked`.
void streamThenHook(CacheWriter& w, const at::Tensor& logits, const std::vector<int64_t>& cuts, const at::Tensor& hooked) {
  int64_t begin = 0;
  for (const int64_t end : cuts) {
    w.writeLogitRows(logits, begin, end);
    begin = end;
  }
  w.writeActivation(kStreamedHook, hooked);
}

}  // namespace

TEST(StoreLogitRows, BlocksThatCutChunksStillStoreEveryValueOnce) {
  ScratchDir dir;
  // 5,000 fp32 per position: 52 positions per 1 MiB chunk, so the cuts at 30 and 60 fall inside chunks
  // (the writer holds rows back until their chunk is whole) and the last chunk is short.
  const at::Tensor logits = at::randn({1, 100, 5000});
  for (const int64_t queue : {int64_t{0}, int64_t{64} << 20}) {
    SCOPED_TRACE(queue);
    const auto file = dir / "c.h5";
    {
      CacheWriter w(file, Provenance{}, queueOf(queue));
      streamThenHook(w, logits, {30, 60, 100}, logits);
      w.writeLogits(logits);
      w.commit();
    }
    EXPECT_TRUE(sameLogitBits(readRawLogits(file), logits));
    const CacheReader r = CacheReader::open(file);
    EXPECT_EQ(r.info(kStreamedHook).chunks, (std::vector<int64_t>{1, 52, 5000}));
    EXPECT_TRUE(at::equal(r.read("/logits"), logits));  // the link to the streamed dataset
    EXPECT_EQ(r.attributes("/activations/unembed.hook_logits").at("axes"), "batch,pos,vocab");
  }
}

TEST(StoreLogitRows, BatchesAndHalfStorage) {
  ScratchDir dir;
  const at::Tensor logits = at::randn({3, 40, 700});  // [batch, pos, vocab]: each block a strided slab
  CacheOptions o = queueOf(int64_t{16} << 20);
  o.dtype = StorageDtype::Float16;
  {
    CacheWriter w(dir / "c.h5", Provenance{}, o);
    streamThenHook(w, logits, {16, 32, 40}, logits);
    w.commit();
  }
  const at::Tensor got = CacheReader::open(dir / "c.h5").read(kStreamedHook);
  EXPECT_TRUE(at::equal(got, logits.to(at::kHalf)));
}

TEST(StoreLogitRows, AHookThatReplacedOrChangedTheLogitsWins) {
  ScratchDir dir;
  for (const int64_t queue : {int64_t{0}, int64_t{64} << 20}) {
    SCOPED_TRACE(queue);
    at::Tensor logits = at::randn({1, 64, 3000});
    const at::Tensor replacement = at::randn({1, 64, 3000});
    {
      CacheWriter w(dir / "replaced.h5", Provenance{}, queueOf(queue));
      streamThenHook(w, logits, {20, 64}, replacement);
      w.writeLogits(replacement);
      w.commit();
    }
    EXPECT_TRUE(sameLogitBits(readRawLogits(dir / "replaced.h5"), replacement));
    EXPECT_TRUE(at::equal(CacheReader::open(dir / "replaced.h5").read("/logits"), replacement));
    if (queue > 0) continue;  // a tensor handed to the background queue must not change until written
    const at::Tensor before = logits.clone();
    {
      CacheWriter w(dir / "changed.h5", Provenance{}, queueOf(queue));
      w.writeLogitRows(logits, 0, 64);  // written now, on this thread
      logits.mul_(-1);                  // same memory, new values: the version counter tells
      w.writeActivation(kStreamedHook, logits);
      w.commit();
    }
    EXPECT_TRUE(sameLogitBits(readRawLogits(dir / "changed.h5"), before * -1));
  }
}

TEST(StoreLogitRows, OutOfOrderCallsAndUnfinishedStreamsAreRefused) {
  ScratchDir dir;
  const at::Tensor logits = at::randn({1, 32, 100});
  CacheWriter w(dir / "c.h5", Provenance{});
  EXPECT_THROW(w.writeLogitRows(logits, 8, 16), InputError);  // must start at 0
  w.writeLogitRows(logits, 0, 8);
  EXPECT_THROW(w.writeLogitRows(logits, 9, 16), InputError);                 // a gap
  EXPECT_THROW(w.writeLogitRows(logits.clone(), 8, 16), InputError);         // another tensor
  EXPECT_THROW(w.writeLogitRows(logits, 8, 40), InputError);                 // past the end
  try {
    w.commit();
    ADD_FAILURE() << "a cache whose logits stopped at position 8 of 32 was committed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("streamed up to position 8 of 32"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "c.h5"));
}

TEST(StoreLogitRows, AForwardThatStreamsIntoAnEveryHookCache) {
  ScratchDir dir;
  synth::writeSynthFolder(dir / "m", "gpt2", "tiny", 21, "fp32");
  auto model = HookedTransformer::load(dir / "m");
  const at::Tensor tokens = at::randint(model->config().dVocab, {1, 70}, at::TensorOptions().dtype(at::kLong));
  for (const int64_t queue : {int64_t{0}, int64_t{64} << 20}) {
    SCOPED_TRACE(queue);
    std::vector<std::pair<int64_t, int64_t>> calls;
    at::Tensor returned;
    {
      CacheWriter w(dir / "c.h5", Provenance{}, queueOf(queue));
      HookSet hooks;
      hooks.add("*", [&w](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
        w.writeActivation(hc.name, t);
        return std::nullopt;
      });
      ForwardOptions fo;
      fo.logitBlockPositions = 16;
      fo.onLogitRows = [&](const at::Tensor& l, int64_t b, int64_t e) {
        calls.emplace_back(b, e);
        w.writeLogitRows(l, b, e);
      };
      const ForwardResult r = model->forward(tokens, fo, &hooks);
      returned = r.logits;
      w.writeLogits(r.logits);
      w.commit();
    }
    EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 16}, {16, 32}, {32, 48}, {48, 64}, {64, 70}}));
    // The cache holds what the forward returned, under both names, every chunk written (raw read into NaNs).
    EXPECT_TRUE(sameLogitBits(readRawLogits(dir / "c.h5"), returned));
    EXPECT_TRUE(at::equal(CacheReader::open(dir / "c.h5").read("/logits"), returned));
  }
}
