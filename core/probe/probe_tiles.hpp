#pragma once
// Tile sizes of the attention probe and the memory they imply: the O(tile² + n) contract of §11,
// exposed so callers (and tests) can check it without running the probe.
#include <cstdint>

#include "core/probe/attention_probe.hpp"

namespace mechscope {

/// Effective tile sizes for one probe call.
struct ProbeTiles {
  int64_t tileQ = 0;  ///< query rows per tile
  int64_t tileK = 0;  ///< keys per tile
};

/// Bytes one fp32 score block [heads, tileQ, tileK] may take: 256 MB on GPU, 64 MB on CPU.
int64_t probeScoreBlockBudget(bool cuda);

/// Tile sizes actually used: the requested ones clipped to the sequence, then halved (the larger side
/// first, not below 16) until nHeads·tileQ·tileK·4 bytes fits probeScoreBlockBudget(cuda); on CUDA
/// they then grow (rows, then keys, doubling) while the block still fits, to save kernel launches.
ProbeTiles chooseProbeTiles(int64_t nHeads, int64_t nQueries, int64_t nKeys, int64_t tileQ, int64_t tileK,
                            bool cuda);

/// Upper bound on the bytes probeAttention allocates for these sizes (score-block temporaries, masks,
/// q/k tile copies, per-row accumulators and the results): O(heads·tileQ·tileK + heads·n·(k + stats)).
int64_t probeWorkspaceBytes(int64_t nHeads, int64_t nKvHeads, int64_t dHead, int64_t nQueries, int64_t nKeys,
                            const ProbeRequest& request, int64_t tileQ = 512, int64_t tileK = 2048,
                            bool cuda = false);

}  // namespace mechscope
