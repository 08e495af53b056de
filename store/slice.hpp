#pragma once
// numpy-like slices for reading part of a dataset: "0,2,:,:" = batch 0, head 2, every query and key.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mechscope::store {

/// One dimension of a slice: an integer index (drops the dimension, as numpy) or a range start:stop:step.
/// Negative values count from the end, as in Python.
struct SliceRange {
  int64_t start = 0;            ///< first index (negative: from the end)
  std::optional<int64_t> stop;  ///< one past the last; nullopt = to the end
  int64_t step = 1;             ///< stride, ≥ 1
  bool index = false;           ///< true: select `start` only and drop the dimension

  /// Every element of the dimension (":").
  static SliceRange all() { return {}; }
  /// One element, dimension dropped ("3", "-1").
  static SliceRange at(int64_t i) { return {i, std::nullopt, 1, true}; }
  /// Elements [a, b) with a step ("a:b", "a:b:s").
  static SliceRange range(int64_t a, std::optional<int64_t> b, int64_t step = 1) { return {a, b, step, false}; }
};

/// One dimension resolved against its extent: `count` elements from `offset` every `stride`.
struct ResolvedRange {
  int64_t offset = 0;
  int64_t count = 0;
  int64_t stride = 1;
  bool dropped = false;  ///< was an integer index
};

/// Parses "0,2,:,:", "1:5", "-1", "::2", "" (= everything). InputError naming the text on bad syntax.
std::vector<SliceRange> parseSlice(const std::string& text);

/// Resolves ranges against a shape (missing trailing ranges = ":"). InputError naming `what` when there
/// are more ranges than dims, an index is out of bounds or a step is < 1. Ranges clamp as in Python.
std::vector<ResolvedRange> resolveSlice(const std::vector<SliceRange>& ranges, const std::vector<int64_t>& shape,
                                        const std::string& what);

}  // namespace mechscope::store
