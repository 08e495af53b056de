#include "core/probe/probe_tiles.hpp"

#include <algorithm>

namespace mechscope {

namespace {
constexpr int64_t kMinTile = 16;
constexpr int64_t kScoreBytes = 4;  // fp32 scores
}  // namespace

int64_t probeScoreBlockBudget(bool cuda) { return cuda ? (int64_t{256} << 20) : (int64_t{64} << 20); }

ProbeTiles chooseProbeTiles(int64_t nHeads, int64_t nQueries, int64_t nKeys, int64_t tileQ, int64_t tileK,
                            bool cuda) {
  ProbeTiles t;
  t.tileQ = std::clamp<int64_t>(tileQ, 1, std::max<int64_t>(nQueries, 1));
  t.tileK = std::clamp<int64_t>(tileK, 1, std::max<int64_t>(nKeys, 1));
  const int64_t budget = probeScoreBlockBudget(cuda);
  const int64_t heads = std::max<int64_t>(nHeads, 1);
  // Halve the larger side first: square-ish tiles waste the least on the causal diagonal.
  while (heads * t.tileQ * t.tileK * kScoreBytes > budget && (t.tileQ > kMinTile || t.tileK > kMinTile)) {
    if (t.tileK >= t.tileQ && t.tileK > kMinTile) {
      t.tileK = std::max(kMinTile, t.tileK / 2);
    } else {
      t.tileQ = std::max(kMinTile, t.tileQ / 2);
    }
  }
  // On a GPU every tile costs ~20 kernel launches: grow the tiles into the budget (rows first, then
  // keys, e.g. a decode step's single row takes all keys at once). CPU tiles stay cache-sized.
  if (cuda) {
    auto fits = [&](int64_t q, int64_t k) { return heads * q * k * kScoreBytes <= budget; };
    while (t.tileQ < nQueries && fits(std::min(2 * t.tileQ, nQueries), t.tileK))
      t.tileQ = std::min(2 * t.tileQ, nQueries);
    while (t.tileK < nKeys && fits(t.tileQ, std::min(2 * t.tileK, nKeys))) t.tileK = std::min(2 * t.tileK, nKeys);
  }
  return t;
}

int64_t probeWorkspaceBytes(int64_t nHeads, int64_t nKvHeads, int64_t dHead, int64_t nQueries, int64_t nKeys,
                            const ProbeRequest& request, int64_t tileQ, int64_t tileK, bool cuda) {
  const ProbeTiles t = chooseProbeTiles(nHeads, nQueries, nKeys, tileQ, tileK, cuda);
  const int64_t cs = kScoreBytes;
  const int64_t k = std::max<int64_t>(request.topK, 0);
  const int64_t tileElems = t.tileQ * t.tileK;
  // Per tile: scores, probabilities and up to two products/top-k temporaries of one score block;
  // int64 position differences, bool masks and one float distance matrix of [tileQ, tileK];
  // the fp32 copies of the q and k tiles (cast, then permuted contiguous).
  int64_t bytes = 4 * nHeads * tileElems * cs;
  bytes += tileElems * (3 * 8 + 3 * 1 + cs);
  bytes += 2 * (t.tileQ * nHeads * dHead + t.tileK * nKvHeads * dHead) * cs;
  // Per query tile: running max / sum / log-sum-exp / row statistics and the top-k merge buffers.
  bytes += nHeads * t.tileQ * (8 * cs + 6 * k * (cs + 8));
  // Results and per-call vectors (positions, padding, key-set indicator, column counts).
  int64_t rowStats = (request.distance || request.distanceTotal ? 1 : 0) + (request.window > 0 ? 1 : 0) + (request.keySet.empty() ? 0 : 1) +
                     (request.entropy ? 1 : 0);
  bytes += nHeads * nQueries * (rowStats * cs + k * (cs + 8));
  if (request.columnSums) bytes += nHeads * nKeys * cs;
  bytes += nKeys * (4 * 8 + cs + 2);
  // Allocator rounding and small bookkeeping tensors.
  bytes += int64_t{1} << 20;
  return bytes;
}

}  // namespace mechscope
