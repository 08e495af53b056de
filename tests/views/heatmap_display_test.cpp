#include <gtest/gtest.h>

#include <cmath>

#include "core/common/errors.hpp"
#include "views/heatmap_display.hpp"

using namespace mechscope::views;

namespace {
HeatmapData small() {
  HeatmapData d;
  d.rows = 3;
  d.cols = 3;
  d.values = {1.0f, 0.0f, 0.0f,  //
              0.75f, 0.25f, 0.0f,  //
              0.5f, 0.3f, 0.2f};
  d.title = "L0H0";
  return d;
}
}  // namespace

TEST(HeatmapDisplay, CausalMaskAndRange) {
  const HeatmapDisplay out = computeHeatmapDisplay(small(), {});
  EXPECT_TRUE(std::isnan(out.values[1]));
  EXPECT_TRUE(std::isnan(out.values[2]));
  EXPECT_TRUE(std::isnan(out.values[5]));
  EXPECT_FLOAT_EQ(out.values[3], 0.75f);
  EXPECT_FLOAT_EQ(out.low, 0.2f);  // masked zeros do not count
  EXPECT_DOUBLE_EQ(out.high, 1.0);
  EXPECT_TRUE(out.note.isEmpty());
}

TEST(HeatmapDisplay, ExcludeFirstKAndRowNormalise) {
  HeatmapOptions o;
  o.excludeFirstK = 1;
  o.rowNormalise = true;
  const HeatmapDisplay out = computeHeatmapDisplay(small(), o);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(std::isnan(out.values[static_cast<std::size_t>(r) * 3])) << r;
  EXPECT_FLOAT_EQ(out.values[4], 1.0f);        // 0.25 / 0.25
  EXPECT_FLOAT_EQ(out.values[7], 1.0f);        // 0.3 / 0.3
  EXPECT_FLOAT_EQ(out.values[8], 0.2f / 0.3f);  // 0.2 / 0.3
  EXPECT_NEAR(out.low, 2.0 / 3.0, 1e-6);
  EXPECT_DOUBLE_EQ(out.high, 1.0);
  EXPECT_EQ(out.note, "first key excluded · row-normalised");
}

TEST(HeatmapDisplay, ClipAndLog) {
  HeatmapOptions o;
  o.clipHigh = 0.5;
  o.logScale = true;
  const HeatmapDisplay out = computeHeatmapDisplay(small(), o);
  EXPECT_DOUBLE_EQ(out.high, 0.5);
  EXPECT_FLOAT_EQ(out.low, 0.2f);  // smallest positive visible value
  EXPECT_TRUE(out.note.contains("clipped"));
}

TEST(HeatmapDisplay, SignedIsSymmetric) {
  HeatmapData d;
  d.rows = 1;
  d.cols = 3;
  d.values = {-0.5f, 2.0f, 1.0f};
  d.causal = false;
  d.signedValues = true;
  const HeatmapDisplay out = computeHeatmapDisplay(d, {});
  EXPECT_DOUBLE_EQ(out.low, -2.0);
  EXPECT_DOUBLE_EQ(out.high, 2.0);
}

TEST(HeatmapDisplay, InconsistentDataThrowsInputError) {
  HeatmapData d = small();
  d.values.pop_back();
  EXPECT_THROW(computeHeatmapDisplay(d, {}), mechscope::InputError);
  try {
    validateHeatmap(d);
  } catch (const mechscope::InputError& e) {
    EXPECT_STREQ(e.what(), "heatmap 'L0H0': values has 8 entries, expected rows×cols = 3×3 = 9");
  }
  d = small();
  d.rowLabels = {"a", "b"};
  EXPECT_THROW(validateHeatmap(d), mechscope::InputError);
}

TEST(HeatmapDisplay, LastQueriesOnlyUseFirstRowForTheMask) {
  // The last 2 queries (positions 3 and 4) of a 5-token prompt over all 5 keys.
  HeatmapData d;
  d.rows = 2;
  d.cols = 5;
  d.firstRow = 3;
  d.values = {0.1f, 0.2f, 0.3f, 0.4f, 0.9f,  //
              0.1f, 0.2f, 0.3f, 0.2f, 0.2f};
  const HeatmapDisplay out = computeHeatmapDisplay(d, {});
  EXPECT_FLOAT_EQ(out.values[3], 0.4f);     // key 3 ≤ query 3
  EXPECT_TRUE(std::isnan(out.values[4]));   // key 4 > query 3
  EXPECT_FLOAT_EQ(out.values[9], 0.2f);     // key 4 ≤ query 4
  EXPECT_FLOAT_EQ(static_cast<float>(out.high), 0.4f);
  d.firstRow = -1;
  EXPECT_THROW(validateHeatmap(d), mechscope::InputError);
}
