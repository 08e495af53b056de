#pragma once
// Chunk shapes: trailing dimensions kept whole, leading ones cut to 1, so one head of a pattern
// [batch, head, query, key] or one batch row of a residual [batch, pos, d_model] reads alone.
#include <cstdint>
#include <string>
#include <vector>

namespace mechscope::store {

/// Default chunk size target: 1 MiB (fits libhdf5's default chunk cache).
inline constexpr int64_t kDefaultChunkBytes = int64_t{1} << 20;

/// The chunk shape for a dataset: the first `singletonDims` dims are 1 (-1 = auto: 1, the batch row, for
/// rank ≥ 3, else 0); further dims from the left are set to 1 until the rest fits `targetBytes`, and the first
/// dim that fits is cut to fill it. E.g. pattern [2, 12, 1024, 1024] fp32 → [1, 1, 256, 1024];
/// residual [2, 1024, 768] → [1, 341, 768]; q [2, 1024, 12, 64] → [1, 341, 12, 64].
/// Empty when the dataset cannot be chunked (rank 0 or a zero dim).
std::vector<int64_t> chooseChunkShape(const std::vector<int64_t>& shape, int elementSize,
                                      int64_t targetBytes = kDefaultChunkBytes, int singletonDims = -1);

/// How many leading dims to keep at 1 for a dataset with these axes: 2 for "batch,head,..." (one head of
/// one batch row per chunk, even when a whole pattern would fit), -1 (auto) otherwise.
int chunkSingletonDims(const std::string& axes);

}  // namespace mechscope::store
