#include "store/synthetic_cache.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>

#include <chrono>
#include <limits>

#include "core/common/errors.hpp"
#include "store/hook_axes.hpp"

namespace mechscope::store {
namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void checkShape(const SyntheticShape& s) {
  if (s.nLayers < 0 || s.batch < 1 || s.pos < 1 || s.heads < 1 || s.dModel < 1 || s.dModel % s.heads != 0)
    throw InputError(fmt::format("synthetic cache: need layers ≥ 0, batch, pos, heads, d_model ≥ 1 and d_model a "
                                 "multiple of heads; got layers {}, batch {}, pos {}, heads {}, d_model {}",
                                 s.nLayers, s.batch, s.pos, s.heads, s.dModel));
}

std::vector<int64_t> hookShape(const std::string& name, const SyntheticShape& s) {
  const int64_t dHead = s.dModel / s.heads;
  if (isAttentionMapHook(name)) return {s.batch, s.heads, s.pos, s.pos};
  if (hasSuffix(name, "hook_q") || hasSuffix(name, "hook_k") || hasSuffix(name, "hook_v") || hasSuffix(name, "hook_z"))
    return {s.batch, s.pos, s.heads, dHead};
  if (hasSuffix(name, "mlp.hook_pre") || hasSuffix(name, "mlp.hook_post")) return {s.batch, s.pos, 4 * s.dModel};
  return {s.batch, s.pos, s.dModel};
}

}  // namespace

std::vector<std::string> syntheticPreHooks() { return {"hook_embed", "hook_pos_embed"}; }

std::vector<std::string> syntheticLayerHooks(int layer) {
  std::vector<std::string> out;
  for (const char* h : {"hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                        "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
                        "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"})
    out.push_back(fmt::format("blocks.{}.{}", layer, h));
  return out;
}

std::vector<std::string> syntheticPostHooks() { return {"ln_final.hook_normalized"}; }

at::Tensor syntheticActivation(const std::string& hookName, const SyntheticShape& shape) {
  checkShape(shape);
  auto gen = at::detail::createCPUGenerator(fnv1a(hookName));
  const auto dims = hookShape(hookName, shape);
  at::Tensor t = at::randn(dims, gen, at::TensorOptions().dtype(at::kFloat));  // TL layout of the hook
  if (isAttentionMapHook(hookName)) {
    // [batch, head, query, key]: causal, as a real model's
    const auto future = at::ones({shape.pos, shape.pos}, at::TensorOptions().dtype(at::kBool)).triu(1);
    t.masked_fill_(future, -std::numeric_limits<float>::infinity());
    if (hasSuffix(hookName, "hook_pattern")) {
      // softmax in place: a pattern is the largest tensor of a layer, keep one copy of it alive
      t.sub_(std::get<0>(t.max(-1, true))).exp_();
      t.div_(t.sum(-1, true));
    }
  }
  return t;
}

int64_t syntheticCacheBytes(const SyntheticShape& shape, int elementSize) {
  checkShape(shape);
  auto elems = [&](const std::string& h) {
    int64_t n = 1;
    for (auto d : hookShape(h, shape)) n *= d;
    return n;
  };
  int64_t total = 0;
  for (const auto& h : syntheticPreHooks()) total += elems(h);
  for (int l = 0; l < shape.nLayers; ++l)
    for (const auto& h : syntheticLayerHooks(l)) total += elems(h);
  for (const auto& h : syntheticPostHooks()) total += elems(h);
  return total * elementSize;
}

SyntheticStats streamSyntheticCache(const std::filesystem::path& path, const SyntheticShape& shape,
                                    const CacheOptions& options, const RunContext* ctx,
                                    const std::function<void(int layer)>& afterLayer) {
  checkShape(shape);
  const auto t0 = std::chrono::steady_clock::now();
  Provenance prov;
  prov.modelFolder = "<synthetic>";
  prov.family = "synthetic";
  prov.configJson = fmt::format(R"({{"model_type": "synthetic", "n_layers": {}, "d_model": {}, "n_heads": {}}})",
                                shape.nLayers, shape.dModel, shape.heads);
  prov.dtype = "float32";
  prov.device = "cpu";
  prov.attentionPath = "explicit";
  prov.bosHandling = "none";
  prov.padding = "none";
  prov.commandLine = "streamSyntheticCache";
  CacheWriter writer(path, prov, options);

  const at::Tensor tokens = at::arange(shape.batch * shape.pos, at::TensorOptions().dtype(at::kLong))
                                .remainder(1000)
                                .reshape({shape.batch, shape.pos});  // [batch, pos]
  std::vector<std::vector<std::string>> strings(static_cast<size_t>(shape.batch));
  for (int64_t b = 0; b < shape.batch; ++b)
    for (int64_t p = 0; p < shape.pos; ++p) strings[b].push_back(fmt::format("t{}", tokens[b][p].item<int64_t>()));
  writer.writeTokens(tokens, strings);

  SyntheticStats stats;
  auto emit = [&](const std::string& hook) {
    const at::Tensor t = syntheticActivation(hook, shape);  // the only activation alive at a time
    writer.writeActivation(hook, t);
    stats.datasets += 1;
    stats.bytes += t.numel() * storageElementSize(options.dtype);
    if (ctx) ctx->check();
  };
  for (const auto& h : syntheticPreHooks()) emit(h);
  for (int l = 0; l < shape.nLayers; ++l) {
    for (const auto& h : syntheticLayerHooks(l)) emit(h);
    if (ctx) ctx->step(l + 1, shape.nLayers, "caching layers");
    if (afterLayer) afterLayer(l);
  }
  for (const auto& h : syntheticPostHooks()) emit(h);
  writer.commit();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

SyntheticStats streamSyntheticCache(const std::filesystem::path& path, int nLayers, int64_t batch, int64_t pos,
                                    int64_t heads, int64_t dModel) {
  return streamSyntheticCache(path, SyntheticShape{nLayers, batch, pos, heads, dModel});
}

}  // namespace mechscope::store
