#pragma once
// The masking experiment's control (Wu et al. §4): K random heads that are not retrieval heads,
// masked next to the top-K retrieval heads, so a drop in needle recall can be told from the cost of
// masking any K heads.
#include <cstdint>
#include <utility>
#include <vector>

#include <string>

#include "core/common/head_ref.hpp"
#include "core/common/tensor.hpp"
#include "core/model/model_config.hpp"

namespace mechscope::analysis {

/// K heads drawn with `seed` (mt19937_64, partial Fisher–Yates; the same on every platform) from the
/// heads of `score` [layer, head] that are not in `exclude` and whose score is ≤ `retrievalThreshold`
/// (not retrieval heads); sorted by (layer, head). InputError when fewer than K heads qualify.
std::vector<HeadRef> randomControlHeads(const at::Tensor& score, const std::vector<HeadRef>& exclude, int k,
                                                    double retrievalThreshold, uint64_t seed);

/// The [layer, head] fp64 `retrieval_score` of an earlier `retrieval --json` file (for --mask-top);
/// InputError naming the file when it cannot be read or is not [n_layers][n_heads] for `cfg`.
at::Tensor readRetrievalScores(const std::string& path, const ModelConfig& cfg);

}  // namespace mechscope::analysis
