#pragma once
// Axis names of TransformerLens activations, stored as the `axes` attribute of each dataset.
#include <cstdint>
#include <string>

namespace mechscope::store {

/// Whether `s` ends with `suffix`.
bool hasSuffix(const std::string& s, const std::string& suffix);

/// Whether `name` (a hook name, or a dataset path ending in one) is an attention map: …hook_pattern or
/// …hook_attn_scores, stored [batch, head, query, key].
bool isAttentionMapHook(const std::string& name);

/// "batch,head,query,key" for patterns/scores, "batch,pos,head,d_head" for q/k/v/z/result,
/// "batch,pos,d_mlp" for mlp pre/post, "batch,pos,d_model" for other rank-3 hooks, "dim0,dim1,..." otherwise.
std::string hookAxes(const std::string& hookName, int64_t rank);

}  // namespace mechscope::store
