#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "views/heatmap_pyramid.hpp"

using namespace mechscope::views;

namespace {

std::vector<float> randomMasked(int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 3.0f);
  std::vector<float> v(static_cast<std::size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) v[static_cast<std::size_t>(r) * cols + c] = c > r ? NAN : u(rng);
  return v;
}

void expectLevelsMatchBruteForce(int rows, int cols, PoolMode mode) {
  const auto values = randomMasked(rows, cols, 7u + static_cast<unsigned>(rows));
  HeatmapPyramid p;
  p.build(values, rows, cols, mode);
  const int expectedLevels = static_cast<int>(std::ceil(std::log2(std::max(rows, cols)))) + 1;
  ASSERT_EQ(p.levelCount(), expectedLevels);
  for (int i = 0; i < p.levelCount(); ++i) {
    const PyramidLevel& got = p.level(i);
    const PyramidLevel want = poolDirect(values, rows, cols, 1 << i, mode);
    ASSERT_EQ(got.factor, 1 << i);
    ASSERT_EQ(got.rows, want.rows);
    ASSERT_EQ(got.cols, want.cols);
    for (std::size_t k = 0; k < want.values.size(); ++k) {
      if (std::isnan(want.values[k])) {
        EXPECT_TRUE(std::isnan(got.values[k])) << "level " << i << " cell " << k;
      } else if (mode == PoolMode::Max) {
        EXPECT_EQ(got.values[k], want.values[k]) << "level " << i << " cell " << k;
      } else {
        EXPECT_NEAR(got.values[k], want.values[k], 1e-5 * (1.0 + std::abs(want.values[k]))) << "level " << i << " cell " << k;
      }
    }
  }
  EXPECT_EQ(p.level(p.levelCount() - 1).rows, 1);
  EXPECT_EQ(p.level(p.levelCount() - 1).cols, 1);
}

}  // namespace

TEST(HeatmapPyramid, MaxLevelsEqualBruteForce) { expectLevelsMatchBruteForce(37, 53, PoolMode::Max); }
TEST(HeatmapPyramid, MeanLevelsEqualBruteForce) { expectLevelsMatchBruteForce(37, 53, PoolMode::Mean); }
TEST(HeatmapPyramid, SquarePowerOfTwo) {
  expectLevelsMatchBruteForce(64, 64, PoolMode::Max);
  expectLevelsMatchBruteForce(64, 64, PoolMode::Mean);
}

TEST(HeatmapPyramid, HandComputedBlock) {
  // [[1, NaN], [2, 4]] → max 4, mean (1+2+4)/3.
  const std::vector<float> v = {1, NAN, 2, 4};
  HeatmapPyramid p;
  p.build(v, 2, 2, PoolMode::Mean);
  ASSERT_EQ(p.levelCount(), 2);
  EXPECT_NEAR(p.level(1).values[0], 7.0f / 3.0f, 1e-6);
  p.build(v, 2, 2, PoolMode::Max);
  EXPECT_EQ(p.level(1).values[0], 4.0f);
}

TEST(HeatmapPyramid, LevelForPicksAtMostOneBlockPerPixel) {
  HeatmapPyramid p;
  p.build(std::vector<float>(1024 * 1024, 0.5f), 1024, 1024, PoolMode::Max);
  EXPECT_EQ(p.levelCount(), 11);
  EXPECT_EQ(p.levelFor(0.5), 0);
  EXPECT_EQ(p.levelFor(1.0), 0);
  EXPECT_EQ(p.levelFor(2.0), 1);
  EXPECT_EQ(p.levelFor(8.0), 3);
  EXPECT_EQ(p.levelFor(1.04), 0);  // within the 5 % slack
  EXPECT_EQ(p.levelFor(1.28), 1);  // 1024 cells on 800 px: 2×2 blocks, none dropped
  EXPECT_EQ(p.levelFor(8.4), 3);
  EXPECT_EQ(p.levelFor(9.0), 4);
  EXPECT_EQ(p.levelFor(1e9), 10);
}
