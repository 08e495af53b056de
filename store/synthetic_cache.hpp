#pragma once
// A synthetic model's activations, produced layer by layer in TransformerLens layouts and streamed into
// a cache: the harness for memory-bounded streaming tests (run it under `prlimit --as` in a child) and
// for the benchmark. Values are deterministic, so a test can regenerate any hook and compare.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/common/run_context.hpp"
#include "core/common/tensor.hpp"
#include "store/cache_writer.hpp"

namespace mechscope::store {

/// Shape of the synthetic model.
struct SyntheticShape {
  int nLayers = 2;
  int64_t batch = 1;
  int64_t pos = 16;
  int64_t heads = 4;
  int64_t dModel = 32;  ///< must be a multiple of heads; d_mlp = 4 × dModel
};

/// The hooks written before the blocks (hook_embed, hook_pos_embed).
std::vector<std::string> syntheticPreHooks();
/// The hooks of block `layer` in forward order (resid_pre, ln1, q, k, v, attn_scores, pattern, z, attn_out,
/// resid_mid, ln2, mlp pre/post, mlp_out, resid_post).
std::vector<std::string> syntheticLayerHooks(int layer);
/// The hooks after the blocks (ln_final.hook_normalized).
std::vector<std::string> syntheticPostHooks();

/// The deterministic fp32 tensor for a hook name (same name and shape → same values), in its TransformerLens
/// layout: patterns are causal and row-stochastic, scores causal with -inf above the diagonal.
at::Tensor syntheticActivation(const std::string& hookName, const SyntheticShape& shape);

/// Bytes of activations streamSyntheticCache writes at `elementSize` bytes per element.
int64_t syntheticCacheBytes(const SyntheticShape& shape, int elementSize = 4);

/// What streamSyntheticCache did.
struct SyntheticStats {
  int64_t datasets = 0;
  int64_t bytes = 0;  ///< activation bytes in storage dtype
  double seconds = 0;
};

/// Writes tokens, token strings and every synthetic hook of every layer into `path` (commit at the end),
/// holding only one hook's tensor at a time. `ctx` (optional) is checked after each hook (Cancelled leaves
/// no file); `afterLayer` (optional) runs after each layer's hooks are written.
SyntheticStats streamSyntheticCache(const std::filesystem::path& path, const SyntheticShape& shape,
                                    const CacheOptions& options = {}, const RunContext* ctx = nullptr,
                                    const std::function<void(int layer)>& afterLayer = {});

/// Shorthand: streamSyntheticCache(path, {nLayers, batch, pos, heads, dModel}).
SyntheticStats streamSyntheticCache(const std::filesystem::path& path, int nLayers, int64_t batch, int64_t pos,
                                    int64_t heads, int64_t dModel);

}  // namespace mechscope::store
