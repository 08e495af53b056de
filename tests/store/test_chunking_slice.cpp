// Chunk shapes (one head of a pattern reads alone) and numpy-like slice parsing/resolution.
#include <gtest/gtest.h>

#include "core/common/errors.hpp"
#include "store/chunking.hpp"
#include "store/hook_axes.hpp"
#include "store/slice.hpp"
#include "store/storage_dtype.hpp"

using namespace mechscope;
using namespace mechscope::store;

TEST(StoreChunking, PatternChunksHoldOneHead) {
  // [batch, head, query, key] fp32, 1 MiB target = 262144 elements: 256 query rows of 1024 keys.
  EXPECT_EQ(chooseChunkShape({2, 12, 1024, 1024}, 4), (std::vector<int64_t>{1, 1, 256, 1024}));
  // Small patterns: one chunk per (batch, head) still when the axes say so.
  EXPECT_EQ(chunkSingletonDims("batch,head,query,key"), 2);
  EXPECT_EQ(chooseChunkShape({2, 12, 24, 24}, 4, kDefaultChunkBytes, 2), (std::vector<int64_t>{1, 1, 24, 24}));
  // Without the hint only the batch row is split off.
  EXPECT_EQ(chooseChunkShape({2, 12, 24, 24}, 4), (std::vector<int64_t>{1, 12, 24, 24}));
  // fp16: twice the rows per chunk.
  EXPECT_EQ(chooseChunkShape({1, 8, 4096, 4096}, 2), (std::vector<int64_t>{1, 1, 128, 4096}));
  // 128K keys: one row is 512 KiB, two rows per chunk.
  EXPECT_EQ(chooseChunkShape({1, 32, 131072, 131072}, 4), (std::vector<int64_t>{1, 1, 2, 131072}));
  // A single row larger than the target is cut along keys.
  EXPECT_EQ(chooseChunkShape({1, 1, 4, 1 << 20}, 4), (std::vector<int64_t>{1, 1, 1, 262144}));
}

TEST(StoreChunking, ResidualAndQkvChunksByRowAndPositionBlock) {
  EXPECT_EQ(chooseChunkShape({2, 1024, 768}, 4), (std::vector<int64_t>{1, 341, 768}));
  EXPECT_EQ(chooseChunkShape({2, 10, 768}, 4), (std::vector<int64_t>{1, 10, 768}));
  EXPECT_EQ(chooseChunkShape({4, 2048, 12, 64}, 4), (std::vector<int64_t>{1, 341, 12, 64}));
  EXPECT_EQ(chooseChunkShape({3, 5}, 8), (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(chooseChunkShape({}, 4).empty());
  EXPECT_TRUE(chooseChunkShape({0, 5}, 4).empty());
  EXPECT_EQ(chooseChunkShape({2, 1024, 768}, 4, 4096), (std::vector<int64_t>{1, 1, 768}));
}

TEST(StoreSlice, ParsesNumpySyntax) {
  const auto s = parseSlice("0, 2,:,1:5, -3:, ::2, 1:-1:3");
  ASSERT_EQ(s.size(), 7u);
  EXPECT_TRUE(s[0].index);
  EXPECT_EQ(s[0].start, 0);
  EXPECT_TRUE(s[1].index);
  EXPECT_EQ(s[1].start, 2);
  EXPECT_FALSE(s[2].index);
  EXPECT_EQ(s[2].start, 0);
  EXPECT_FALSE(s[2].stop.has_value());
  EXPECT_EQ(s[3].start, 1);
  EXPECT_EQ(*s[3].stop, 5);
  EXPECT_EQ(s[4].start, -3);
  EXPECT_FALSE(s[4].stop.has_value());
  EXPECT_EQ(s[5].step, 2);
  EXPECT_EQ(s[6].start, 1);
  EXPECT_EQ(*s[6].stop, -1);
  EXPECT_EQ(s[6].step, 3);
  EXPECT_TRUE(parseSlice("").empty());
  EXPECT_THROW(parseSlice("0,,1"), InputError);
  EXPECT_THROW(parseSlice("a:b"), InputError);
  EXPECT_THROW(parseSlice("1:2:0"), InputError);
  EXPECT_THROW(parseSlice("1:2:3:4"), InputError);
}

TEST(StoreSlice, ResolvesLikePython) {
  const std::vector<int64_t> shape{2, 12, 10, 10};
  const auto r = resolveSlice(parseSlice("-1,3,2:,::3"), shape, "t");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].offset, 1);
  EXPECT_TRUE(r[0].dropped);
  EXPECT_EQ(r[1].offset, 3);
  EXPECT_EQ(r[2].offset, 2);
  EXPECT_EQ(r[2].count, 8);
  EXPECT_EQ(r[3].offset, 0);
  EXPECT_EQ(r[3].count, 4);  // 0,3,6,9
  EXPECT_EQ(r[3].stride, 3);
  // Missing trailing dims are whole; clamped ranges; empty ranges.
  const auto r2 = resolveSlice(parseSlice("0:100"), shape, "t");
  EXPECT_EQ(r2[0].count, 2);
  EXPECT_EQ(r2[3].count, 10);
  EXPECT_EQ(resolveSlice(parseSlice("5:3"), shape, "t")[0].count, 0);
  EXPECT_THROW(resolveSlice(parseSlice("2"), shape, "t"), InputError);
  EXPECT_THROW(resolveSlice(parseSlice("-3"), shape, "t"), InputError);
  EXPECT_THROW(resolveSlice(parseSlice("0,0,0,0,0"), shape, "t"), InputError);
}

TEST(StoreDtype, NamesAndAxes) {
  EXPECT_EQ(parseStorageDtype("fp16"), StorageDtype::Float16);
  EXPECT_EQ(parseStorageDtype("bfloat16"), StorageDtype::BFloat16);
  EXPECT_EQ(storageDtypeName(StorageDtype::Float32), "float32");
  EXPECT_THROW(parseStorageDtype("float8"), InputError);
  EXPECT_EQ(hookAxes("blocks.3.attn.hook_pattern", 4), "batch,head,query,key");
  EXPECT_EQ(hookAxes("blocks.3.attn.hook_z", 4), "batch,pos,head,d_head");
  EXPECT_EQ(hookAxes("blocks.3.hook_resid_post", 3), "batch,pos,d_model");
  EXPECT_EQ(hookAxes("blocks.3.mlp.hook_post", 3), "batch,pos,d_mlp");
}
