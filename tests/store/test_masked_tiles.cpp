// Masked tiles (store/masked_tiles.hpp, issue #24): attention patterns and scores are stored in square
// tiles and the tiles holding only the mask's value are never written. Checked from outside the store:
// libhdf5 itself says which chunks exist (H5Dget_num_chunks, against the count the tile arithmetic gives)
// and reads the datasets into NaN-filled buffers, so a skipped tile that did not come back as the fill
// value would show; every read is compared bit for bit with the tensor that was cached.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "core/common/errors.hpp"
#include "h5_test_cache.hpp"
#include "store/masked_tiles.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Causal scores [batch, head, n, n]: random below and on the diagonal, −∞ above it and, with a window w > 0,
/// −∞ for keys more than w − 1 behind the query (a sliding window).
at::Tensor maskedScores(int64_t batch, int64_t heads, int64_t n, int64_t window, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor s = at::randn({batch, heads, n, n}, gen, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor q = at::arange(n).view({n, 1}), k = at::arange(n).view({1, n});
  at::Tensor masked = k > q;
  if (window > 0) masked = masked.logical_or(k <= q - window);
  return s.masked_fill(masked, kNegInf);
}

/// Tiles of side `t` of an n × n causal (window 0) or banded map that hold an unmasked element, by arithmetic:
/// tile (i, j) covers queries [i·t, min(n, (i+1)·t)) and keys [j·t, …); a key k is unmasked for a query q iff
/// q − w < k ≤ q. The tile is live iff its smallest key ≤ its largest query and its largest key > smallest
/// query − w.
int64_t liveTilesPerHead(int64_t n, int64_t t, int64_t window) {
  int64_t live = 0;
  for (int64_t q0 = 0; q0 < n; q0 += t)
    for (int64_t k0 = 0; k0 < n; k0 += t) {
      const int64_t q1 = std::min(n, q0 + t) - 1, k1 = std::min(n, k0 + t) - 1;
      const bool belowTop = k0 <= q1;
      const bool insideBand = window <= 0 || k1 > q0 - window;
      live += (belowTop && insideBand) ? 1 : 0;
    }
  return live;
}

/// Reads an activation with libhdf5 alone: how many chunks exist, and every element as fp32.
mechscope::store::testing::RawFloats readRaw(const std::filesystem::path& file, const std::string& hook) {
  return mechscope::store::testing::readRawFloats(file, "/activations/" + hook);
}

bool sameBits(const std::vector<float>& got, const at::Tensor& want) {
  const at::Tensor w = want.to(at::kFloat).contiguous();
  return got.size() == static_cast<size_t>(w.numel()) &&
         std::memcmp(got.data(), w.data_ptr(), got.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(StoreMaskedTiles, LayoutOnlyForPatternsAndScores) {
  const std::vector<int64_t> shape{1, 12, 1024, 1024};
  const auto pattern = maskedTileLayout("/activations/blocks.3.attn.hook_pattern", shape, StorageDtype::Float32, 1 << 20);
  ASSERT_TRUE(pattern.has_value());
  EXPECT_EQ(pattern->chunk, (std::vector<int64_t>{1, 4, 256, 256}));  // 256 KiB tiles (a quarter of 1 MiB), 4 heads
  EXPECT_EQ(pattern->fill, (std::vector<unsigned char>{0, 0, 0, 0}));
  const auto scores = maskedTileLayout("blocks.0.attn.hook_attn_scores", shape, StorageDtype::Float32, 1 << 20);
  ASSERT_TRUE(scores.has_value());
  EXPECT_EQ(scores->fill, (std::vector<unsigned char>{0x00, 0x00, 0x80, 0xff}));  // IEEE −∞, little-endian
  const auto half = maskedTileLayout("x.hook_attn_scores", shape, StorageDtype::Float16, 1 << 20);
  ASSERT_TRUE(half.has_value());
  // 128 KiB tiles (512² would be 512 KiB); 8 heads would fill 1 MiB but pad 12 heads to 16: 4.
  EXPECT_EQ(half->chunk, (std::vector<int64_t>{1, 4, 256, 256}));
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", {1, 16, 1024, 1024}, StorageDtype::Float16, 1 << 20)->chunk,
            (std::vector<int64_t>{1, 8, 256, 256}));
  // 14 heads: 4 would pad to 16 (2 > 14/8), so 2; 25 heads: 4 pads to 28 (3 ≤ 25/8).
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", {1, 14, 1024, 1024}, StorageDtype::Float32, 1 << 20)->chunk,
            (std::vector<int64_t>{1, 2, 256, 256}));
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", {1, 25, 1024, 1024}, StorageDtype::Float32, 1 << 20)->chunk,
            (std::vector<int64_t>{1, 4, 256, 256}));
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", {1, 1, 1024, 1024}, StorageDtype::Float32, 1 << 20)->chunk,
            (std::vector<int64_t>{1, 1, 256, 256}));
  EXPECT_EQ(half->fill, (std::vector<unsigned char>{0x00, 0xfc}));
  const auto bf16 = maskedTileLayout("x.hook_attn_scores", shape, StorageDtype::BFloat16, 1 << 20);
  ASSERT_TRUE(bf16.has_value());
  EXPECT_EQ(bf16->fill, (std::vector<unsigned char>{0x80, 0xff}));
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", shape, StorageDtype::Float32, 64 << 10)->chunk,
            (std::vector<int64_t>{1, 4, 64, 64}));  // 64² · 4 = 16 KiB = 64 KiB / 4, 4 heads per chunk
  EXPECT_FALSE(maskedTileLayout("x.hook_pattern", shape, StorageDtype::Float32, 32 << 10));  // 64² would not fit
  EXPECT_EQ(maskedTileLayout("x.hook_pattern", {1, 2, 100, 40}, StorageDtype::Float32, 1 << 20)->chunk,
            (std::vector<int64_t>{1, 2, 100, 40}));  // every head: 2 · 16,000 bytes
  EXPECT_FALSE(maskedTileLayout("blocks.0.attn.hook_z", shape, StorageDtype::Float32, 1 << 20));
  EXPECT_FALSE(maskedTileLayout("x.hook_pattern", {12, 1024, 1024}, StorageDtype::Float32, 1 << 20));
  EXPECT_FALSE(maskedTileLayout("x.hook_pattern", shape, StorageDtype::Int64, 1 << 20));
  EXPECT_FALSE(maskedTileLayout("x.hook_pattern", {1, 12, 0, 0}, StorageDtype::Float32, 1 << 20));
}

TEST(StoreMaskedTiles, CausalAndWindowedMapsSkipExactlyTheMaskedTiles) {
  ScratchDir dir;
  struct Case {
    int64_t batch, heads, n, window, headsPerChunk;
  };
  // 600 = 2·256 + 88: edge tiles; window 200 < 256: lower-left tiles wholly outside the band; 25 heads of
  // 128² tiles: 4 per chunk, the last chunk one head and three of fill; 6 heads: 2 per chunk.
  for (const Case c : {Case{2, 3, 600, 0, 3}, Case{1, 2, 1024, 200, 2}, Case{1, 1, 5, 0, 1}, Case{1, 25, 128, 0, 4},
                       Case{1, 6, 300, 0, 2}}) {
    const at::Tensor scores = maskedScores(c.batch, c.heads, c.n, c.window, 7);
    at::Tensor pattern = at::softmax(scores, -1);  // exactly +0.0 where the score is −∞
    for (const bool background : {false, true}) {
      CacheOptions o;
      o.skipMaskedTiles = true;
      o.backgroundBytes = background ? (int64_t{64} << 20) : 0;
      const auto file = dir / "c.h5";
      {
        CacheWriter w(file, Provenance{}, o);
        w.writeActivation("blocks.0.attn.hook_attn_scores", scores);
        w.writeActivation("blocks.0.attn.hook_pattern", pattern);
        w.commit();
      }
      const int64_t t = std::min<int64_t>(256, c.n);
      const int64_t groups = (c.heads + c.headsPerChunk - 1) / c.headsPerChunk;
      const auto live = static_cast<hsize_t>(c.batch * groups * liveTilesPerHead(c.n, t, c.window));
      EXPECT_EQ(CacheReader::open(file).info("blocks.0.attn.hook_pattern").chunks,
                (std::vector<int64_t>{1, c.headsPerChunk, t, t}));
      for (const auto& [hook, want] : {std::pair{"blocks.0.attn.hook_attn_scores", scores},
                                       std::pair{"blocks.0.attn.hook_pattern", pattern}}) {
        const auto raw = readRaw(file, hook);
        EXPECT_EQ(raw.chunksWritten, live) << hook << " n=" << c.n << " window=" << c.window;
        EXPECT_TRUE(sameBits(raw.values, want)) << hook << ": libhdf5 read differs from the cached tensor";
        EXPECT_TRUE(at::equal(CacheReader::open(file).read(hook), want)) << hook;
      }
    }
  }
  EXPECT_EQ(liveTilesPerHead(1024, 256, 0), 10);  // the arithmetic itself: 4 + 3 + 2 + 1
  EXPECT_EQ(liveTilesPerHead(1024, 256, 200), 7);  // the diagonal and the tile below it, but for the first row
}

TEST(StoreMaskedTiles, AnyBitOtherThanTheFillValueKeepsItsTile) {
  ScratchDir dir;
  // Two heads in one chunk; the stray bits are in the second head only, so the chunk of both is kept.
  at::Tensor pattern = at::softmax(maskedScores(1, 2, 512, 0, 3), -1);
  pattern.index_put_({0, 1, 10, 400}, -0.0f);  // upper-right tile: −0.0 is not the fill value +0.0
  at::Tensor scores = maskedScores(1, 2, 512, 0, 4);
  scores.index_put_({0, 1, 3, 300}, 1.5f);  // a hook that wrote into the masked region
  CacheOptions o;
  o.skipMaskedTiles = true;
  {
    CacheWriter w(dir / "c.h5", Provenance{}, o);
    w.writeActivation("blocks.0.attn.hook_pattern", pattern);
    w.writeActivation("blocks.0.attn.hook_attn_scores", scores);
    w.commit();
  }
  for (const auto& [hook, want] : {std::pair{"blocks.0.attn.hook_pattern", pattern},
                                   std::pair{"blocks.0.attn.hook_attn_scores", scores}}) {
    const auto raw = readRaw(dir / "c.h5", hook);
    EXPECT_EQ(raw.chunksWritten, 4u) << hook << ": 3 live chunks (two heads each) + the upper one the second head keeps";
    EXPECT_TRUE(sameBits(raw.values, want)) << hook;
  }
  const std::vector<float> stored = readRaw(dir / "c.h5", "blocks.0.attn.hook_pattern").values;
  EXPECT_TRUE(std::signbit(stored[(512 + 10) * 512 + 400]));
  EXPECT_FALSE(std::signbit(stored[10 * 512 + 400]));  // the first head's +0.0 in the same chunk
}

TEST(StoreMaskedTiles, HalfAndBfloat16ScoresKeepTheirInfinities) {
  ScratchDir dir;
  const at::Tensor scores = maskedScores(1, 2, 300, 0, 5);
  for (const auto dtype : {StorageDtype::Float16, StorageDtype::BFloat16}) {
    CacheOptions o;
    o.dtype = dtype;
    o.skipMaskedTiles = true;
    {
      CacheWriter w(dir / "c.h5", Provenance{}, o);
      w.writeActivation("blocks.1.attn.hook_attn_scores", scores);
      w.commit();
    }
    const at::Tensor want = scores.to(dtype == StorageDtype::Float16 ? at::kHalf : at::kBFloat16);
    const at::Tensor got = CacheReader::open(dir / "c.h5").read("blocks.1.attn.hook_attn_scores");
    ASSERT_EQ(got.scalar_type(), want.scalar_type());
    EXPECT_TRUE(at::equal(got, want)) << storageDtypeName(dtype);
    EXPECT_EQ(got.isinf().sum().item<int64_t>(), 2 * 300 * 299 / 2) << storageDtypeName(dtype);
    if (dtype == StorageDtype::Float16) {  // libhdf5 converts IEEE fp16 itself: a reader without mechscope
      EXPECT_TRUE(sameBits(readRaw(dir / "c.h5", "blocks.1.attn.hook_attn_scores").values, want));
    }
  }
}

TEST(StoreMaskedTiles, OffByDefaultEveryElementIsWrittenInRowBands) {
  ScratchDir dir;
  const at::Tensor pattern = at::softmax(maskedScores(1, 2, 1024, 0, 6), -1);
  const CacheOptions o;
  ASSERT_FALSE(o.skipMaskedTiles);
  {
    CacheWriter w(dir / "c.h5", Provenance{}, o);
    w.writeActivation("blocks.0.attn.hook_pattern", pattern);
    w.commit();
  }
  const auto raw = readRaw(dir / "c.h5", "blocks.0.attn.hook_pattern");
  EXPECT_EQ(raw.chunksWritten, 2u * 4u);  // [1, 1, 256, 1024] row bands, every one written
  EXPECT_TRUE(sameBits(raw.values, pattern));
  EXPECT_EQ(CacheReader::open(dir / "c.h5").info("blocks.0.attn.hook_pattern").chunks,
            (std::vector<int64_t>{1, 1, 256, 1024}));
}

namespace {

/// A hand-made cache with one [1, 1, 4096, 4096] fp32 pattern in 64-wide tiles of which only the first
/// `tiles` diagonal tiles hold data (value 0.5); `userFill`: whether the dataset records its fill value.
void writeSparsePattern(const std::filesystem::path& path, int tiles, bool userFill) {
  mechscope::store::testing::makeCache(path, [&](hid_t f) {
    const hid_t group = H5Gcreate2(f, "activations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const std::vector<hsize_t> dims{1, 1, 4096, 4096}, chunk{1, 1, 64, 64};
    const hid_t space = H5Screate_simple(4, dims.data(), nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk.data());
    const float zero = 0.0f;
    if (userFill) H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &zero);
    const hid_t d = H5Dcreate2(group, "blocks.0.attn.hook_pattern", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    const std::vector<float> tile(64 * 64, 0.5f);
    for (int i = 0; i < tiles; ++i) {
      const std::vector<hsize_t> at{0, 0, static_cast<hsize_t>(64 * i), static_cast<hsize_t>(64 * i)};
      EXPECT_GE(H5Dwrite_chunk(d, H5P_DEFAULT, 0, at.data(), tile.size() * sizeof(float), tile.data()), 0);
    }
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(group);
  });
}

}  // namespace

TEST(StoreMaskedTiles, ReaderBoundsHowSparseAMaskedTileDatasetMayBe) {
  ScratchDir dir;
  // 16 of 4,096 tiles: 1/256 of the logical 64 MiB stored, within the 1/1024 bound.
  writeSparsePattern(dir / "ok.h5", 16, true);
  const at::Tensor p = CacheReader::open(dir / "ok.h5").read("blocks.0.attn.hook_pattern");
  EXPECT_DOUBLE_EQ(p.sum().item<double>(), 16 * 64 * 64 * 0.5);
  EXPECT_EQ(p[0][0][15 * 64][15 * 64].item<float>(), 0.5f);
  EXPECT_EQ(p[0][0][0][64].item<float>(), 0.0f);
  // 2 tiles: 1/2048 stored, beyond the bound — refused as a corrupt header would be.
  writeSparsePattern(dir / "thin.h5", 2, true);
  try {
    (void)CacheReader::open(dir / "thin.h5").read("blocks.0.attn.hook_pattern");
    ADD_FAILURE() << "a pattern with 1/2048 of its bytes stored was read";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 67108864 bytes but only 32768 are stored in masked tiles"), std::string::npos)
        << e.what();
  }
  // Without a recorded fill value the tiles are not masked tiles: every byte must be stored.
  writeSparsePattern(dir / "nofill.h5", 16, false);
  try {
    (void)CacheReader::open(dir / "nofill.h5").read("blocks.0.attn.hook_pattern");
    ADD_FAILURE() << "a sparse pattern without a fill value was read";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 67108864 bytes but only 262144 are stored (corrupt file)"),
              std::string::npos)
        << e.what();
  }
}

TEST(StoreMaskedTiles, PackedChunksAreTheMapsTilesPaddedWithTheFillValue) {
  // Two batch rows, 5 heads in chunks of 2 (the last chunk one head and one of fill), 300 = 256 + 44 positions: the
  // packed chunks are the live tiles in storage order, each the map's slice padded with the fill value (−∞ here).
  const at::Tensor scores = maskedScores(2, 5, 300, 0, 9);
  MaskedTileLayout layout;
  layout.chunk = {1, 2, 256, 256};
  layout.fill = {0x00, 0x00, 0x80, 0xff};
  const PackedTiles packed = packUnmaskedTiles(scores, layout);
  EXPECT_EQ(packed.shape, scores.sizes().vec());
  EXPECT_EQ(packed.stride, size_t{2 * 256 * 256 * 4});
  EXPECT_EQ(packed.bytes(), static_cast<int64_t>(packed.offsets.size()) * 2 * 256 * 256 * 4);
  std::vector<std::vector<int64_t>> expected;  // [b, h0, q0, k0] of the live tiles: key tile ≤ query tile
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h0 = 0; h0 < 5; h0 += 2)
      for (int64_t q0 = 0; q0 < 300; q0 += 256)
        for (int64_t k0 = 0; k0 <= q0; k0 += 256) expected.push_back({b, h0, q0, k0});
  ASSERT_EQ(packed.offsets, expected);
  for (size_t i = 0; i < expected.size(); ++i) {
    const int64_t b = expected[i][0], h0 = expected[i][1], q0 = expected[i][2], k0 = expected[i][3];
    const int64_t heads = std::min<int64_t>(2, 5 - h0), rows = std::min<int64_t>(256, 300 - q0),
                  cols = std::min<int64_t>(256, 300 - k0);
    at::Tensor want = at::full({2, 256, 256}, kNegInf, at::kFloat);
    want.slice(0, 0, heads).slice(1, 0, rows).slice(2, 0, cols)
        .copy_(scores[b].slice(0, h0, h0 + heads).slice(1, q0, q0 + rows).slice(2, k0, k0 + cols));
    EXPECT_EQ(std::memcmp(packed.chunk(i), want.data_ptr(), want.nbytes()), 0) << "chunk " << i;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(packed.chunk(i)) % 4096, 0u) << "chunk " << i << " aligned for O_DIRECT";
  }
}
