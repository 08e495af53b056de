#pragma once
// Chunk shapes: trailing dimensions kept whole, leading ones cut to 1, so one head of a pattern
// [batch, head, query, key] or one batch row of a residual [batch, pos, d_model] reads alone.
#include <cstdint>
#include <vector>

namespace mechscope::store {

/// Default chunk size target: 1 MiB (fits libhdf5's default chunk cache).
inline constexpr int64_t kDefaultChunkBytes = int64_t{1} << 20;

/// The chunk shape for a dataset: dims from the left are set to 1 until the rest fits `targetBytes`,
/// the first dim that fits is cut to fill it. E.g. pattern [2, 12, 1024, 1024] fp32 → [1, 1, 256, 1024];
/// residual [2, 1024, 768] → [1, 341, 768]. Empty when the dataset cannot be chunked (rank 0 or a zero dim).
std::vector<int64_t> chooseChunkShape(const std::vector<int64_t>& shape, int elementSize,
                                      int64_t targetBytes = kDefaultChunkBytes);

}  // namespace mechscope::store
