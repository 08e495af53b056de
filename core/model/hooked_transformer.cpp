#include "core/model/hooked_transformer.hpp"

#include <ATen/ATen.h>


#include <fmt/format.h>

#include "core/common/device_memory.hpp"
#include "core/common/errors.hpp"
#include "core/common/threads.hpp"
#include "core/model/family_spec.hpp"
#include "core/model/hooked_transformer_impl.hpp"
#include "core/model/memory_estimate.hpp"
#include "core/safetensors/safetensors_file.hpp"

namespace mechscope {

namespace {

/// The plan for a --device value: one device, a list split in order, or "auto" (cuda:0 when the weights
/// fit it, every visible GPU when they do not, the CPU without a GPU).
DevicePlan planDevices(const std::string& folder, const std::string& spec, const WeightBytes& bytes) {
  std::vector<at::Device> devices = parseDeviceList(spec);
  if (devices.empty()) {  // auto
    const int gpus = cudaDeviceCount();
    if (gpus == 0) {
      devices = {at::Device(at::kCPU)};
    } else {
      const int64_t free0 = cudaAvailableBytes(0);
      const bool fitsOne = free0 < 0 || bytes.total() <= free0;
      for (int i = 0; i < (fitsOne ? 1 : gpus); ++i) devices.push_back(parseDevice(fmt::format("cuda:{}", i)));
    }
  }
  if (devices.size() > 1 && static_cast<int>(devices.size()) > static_cast<int>(bytes.layers.size()))
    throw InputError(fmt::format("{}: --device {} lists {} devices for {} blocks; list at most one device per block",
                                 folder, spec, devices.size(), bytes.layers.size()));
  return planLayerSplit(devices, bytes);
}

std::string fnvHex(const std::vector<const SafetensorsFile*>& files) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](const std::string& s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ULL;
    }
  };
  for (const auto* f : files) {
    mix(f->path().filename().string());
    mix(std::to_string(f->fileSize()));
    mix(f->headerBytes());
  }
  return fmt::format("{:016x}", h);
}

}  // namespace

at::ScalarType parseDtype(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "f32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "f16" || name == "half") return at::kHalf;
  if (name == "fp64" || name == "float64") return at::kDouble;  // reference computations on CPU
  throw InputError(fmt::format("dtype '{}' is not supported (expected fp32, bf16, fp16 or fp64)", name));
}

std::string dtypeName(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    case at::kDouble: return "fp64";
    default: return c10::toString(type);
  }
}

namespace {
DevicePlan oneDevice(const ModelConfig& config, at::Device device) {
  DevicePlan plan;
  plan.home = device;
  plan.layers.assign(static_cast<size_t>(config.nLayers), device);
  return plan;
}
}  // namespace

HookedTransformer::HookedTransformer(ModelConfig config, ModelWeights weights, at::Device device, at::ScalarType dtype,
                                     std::filesystem::path folder)
    : HookedTransformer(config, std::move(weights), oneDevice(config, device), dtype, std::move(folder)) {}

HookedTransformer::HookedTransformer(ModelConfig config, ModelWeights weights, DevicePlan plan, at::ScalarType dtype,
                                     std::filesystem::path folder)
    : m_config(std::move(config)),
      m_weights(std::move(weights)),
      m_plan(std::move(plan)),
      m_dtype(dtype),
      m_folder(std::move(folder)) {
  if (static_cast<int>(m_plan.layers.size()) != m_config.nLayers)
    throw InputError(fmt::format("device plan: {} block devices for {} blocks", m_plan.layers.size(), m_config.nLayers));
  configureThreads();
  ForwardPass::prepare(*this);
}

HookedTransformer::~HookedTransformer() = default;

std::unique_ptr<HookedTransformer> HookedTransformer::load(const std::filesystem::path& folder, const LoadOptions& options) {
  configureThreads();
  if (!std::filesystem::is_directory(folder))
    throw InputError(fmt::format("{}: model folder does not exist or is not a directory", folder.string()));
  ModelConfig config = ModelConfig::fromJsonFile(folder / "config.json");
  const at::ScalarType dtype = parseDtype(options.dtype);
  const WeightBytes bytes = estimateWeightBytes(config, static_cast<int64_t>(c10::elementSize(dtype)));
  const DevicePlan plan = planDevices(folder.string(), options.device, bytes);
  for (const auto& d : plan.devices()) {
    if (d.is_cpu() && dtype == at::kHalf)
      throw UnsupportedError("dtype fp16 is not supported on device cpu (use fp32 or bf16 on CPU, fp16 on cuda)");
    if (d.is_cuda())  // refuse before reading any weight, not with an out-of-memory halfway through
      checkWeightsFit(folder.string(), d.str(), dtypeName(dtype), bytesOnDevice(plan, bytes, d), cudaAvailableBytes(d.index()));
  }
  const SafetensorsSet set = SafetensorsSet::openFolder(folder);
  // Split models load on the CPU (views of the mapping where the dtype allows) and move block by block.
  const WeightSource source(set, dtype, plan.split() ? at::Device(at::kCPU) : plan.home);
  ModelWeights weights = findFamily(config.modelType)->loadWeights(source, config);
  if (plan.split()) placeWeights(weights, plan);
  std::vector<const SafetensorsFile*> files;
  for (const auto& f : set.files()) files.push_back(&f);
  auto model = std::make_unique<HookedTransformer>(std::move(config), std::move(weights), plan, dtype, folder);
  model->m_weightsHash = fnvHex(files);
  return model;
}

std::vector<std::string> HookedTransformer::hookNames() const {
  std::vector<std::string> out{"hook_embed"};
  if (m_config.positional == PositionalKind::Learned) out.push_back("hook_pos_embed");
  int layer = -1;
  for (const auto& n : m_impl->names) {
    ++layer;
    out.push_back(n.residPre);
    if (m_config.preNorms) out.push_back(n.ln1);
    out.insert(out.end(), {n.q, n.k, n.v});
    if (m_config.positional == PositionalKind::Rotary) out.insert(out.end(), {n.rotQ, n.rotK});
    out.insert(out.end(), {n.scores, n.pattern, n.z, n.result});
    if (m_config.postAttnNorm) out.push_back(n.ln1Post);
    out.push_back(n.attnOut);
    if (!m_config.parallelAttnMlp) out.push_back(n.residMid);
    if (m_config.preNorms) out.push_back(n.ln2);
    if (m_config.isMoeLayer(layer)) {  // core/model/moe_mlp.hpp
      out.insert(out.end(), {n.routerLogits, n.expertWeights, n.expertIndices, n.expertOut});
      if (m_config.moe.dShared > 0) out.push_back(n.sharedExpertOut);
    } else {
      out.push_back(n.mlpPre);
      if (m_config.gatedMlp) out.push_back(n.mlpPreLinear);
      out.push_back(n.mlpPost);
    }
    if (m_config.postMlpNorm) out.push_back(n.ln2Post);
    out.insert(out.end(), {n.mlpOut, n.residPost});
  }
  out.insert(out.end(), {"ln_final.hook_normalized", "unembed.hook_logits"});
  return out;
}

int64_t HookedTransformer::parameterCount() const {
  int64_t n = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined()) n += t.numel();
  };
  add(m_weights.wE);
  add(m_weights.wPos);
  for (const auto& L : m_weights.layers)  // every block tensor, learned sinks and every expert included
    forEachLayerTensor(L, [&](const std::string&, const at::Tensor& t) { add(t); });
  add(m_weights.lnFinalW);
  add(m_weights.lnFinalB);
  if (!m_weights.wU.is_same(m_weights.wE)) add(m_weights.wU);
  add(m_weights.bU);
  return n;
}

at::Tensor HookedTransformer::checkTokens(const at::Tensor& tokens, int64_t past) const {
  if (!tokens.defined() || tokens.dim() != 2)
    throw InputError(fmt::format("tokens: expected a [batch, pos] tensor, found {} dimension(s)", tokens.defined() ? tokens.dim() : 0));
  if (at::isFloatingType(tokens.scalar_type()) || tokens.scalar_type() == at::kBool)
    throw InputError(fmt::format("tokens: expected integer ids, found dtype {}", c10::toString(tokens.scalar_type())));
  if (tokens.size(0) == 0 || tokens.size(1) == 0)
    throw InputError(fmt::format("tokens: empty batch [{}, {}]", tokens.size(0), tokens.size(1)));
  const int64_t len = past + tokens.size(1);
  if (len > m_config.nCtx)
    throw InputError(fmt::format("sequence of {} tokens is longer than the model context n_ctx = {}", len, m_config.nCtx));
  at::Tensor t = tokens.to(at::kLong);
  at::Tensor bad = (t < 0).logical_or(t >= m_config.dVocab);
  if (bad.any().item<bool>()) {
    at::Tensor idx = bad.nonzero()[0].to(at::kCPU);  // [2]
    const int64_t b = idx[0].item<int64_t>(), p = idx[1].item<int64_t>();
    throw InputError(fmt::format("token id {} at [{}, {}] is outside the vocabulary (vocab size {})",
                                 t.index({b, p}).item<int64_t>(), b, p, m_config.dVocab));
  }
  return t.to(m_plan.home);
}

namespace {
at::Tensor checkMask(const at::Tensor& mask, int64_t batch, int64_t pos, at::Device device) {
  if (!mask.defined()) return {};
  if (mask.dim() != 2 || mask.size(0) != batch || mask.size(1) != pos)
    throw InputError(fmt::format("attention mask: expected shape [{}, {}], found [{}]", batch, pos, fmt::join(mask.sizes(), ", ")));
  at::Tensor m = mask.to(device) != 0;
  if (m.all().item<bool>()) return {};  // no padding: the cheaper causal path
  return m;
}
}  // namespace

ForwardResult HookedTransformer::forward(const at::Tensor& tokens, const ForwardOptions& opts, const HookSet* hooks,
                                         const RunContext* ctx) const {
  const at::Tensor t = checkTokens(tokens);
  PassInput in;
  in.keyMask = checkMask(opts.attentionMask, t.size(0), t.size(1), m_plan.home);
  in.positions = ForwardPass::positionIds(in.keyMask, t.size(0), t.size(1), 0, m_plan.home);
  in.resid = ForwardPass::embed(*this, t, in.positions, hooks, -1);
  return ForwardPass::run(*this, std::move(in), opts, hooks, ctx);
}

ForwardResult HookedTransformer::forwardFrom(int layer, const at::Tensor& resid, const ForwardOptions& opts,
                                             const HookSet* hooks, const RunContext* ctx) const {
  if (layer < 0 || layer > m_config.nLayers)
    throw InputError(fmt::format("forwardFrom: layer {} is outside [0, {}]", layer, m_config.nLayers));
  if (!resid.defined() || resid.dim() != 3 || resid.size(2) != m_config.dModel)
    throw InputError(fmt::format("forwardFrom: residual must be [batch, pos, {}]", m_config.dModel));
  if (resid.size(1) > m_config.nCtx)
    throw InputError(fmt::format("sequence of {} tokens is longer than the model context n_ctx = {}", resid.size(1), m_config.nCtx));
  PassInput in;
  in.keyMask = checkMask(opts.attentionMask, resid.size(0), resid.size(1), m_plan.home);
  in.positions = ForwardPass::positionIds(in.keyMask, resid.size(0), resid.size(1), 0, m_plan.home);
  in.resid = resid.to(m_plan.home, m_dtype);
  in.startLayer = layer;
  return ForwardPass::run(*this, std::move(in), opts, hooks, ctx);
}

ForwardResult HookedTransformer::forwardCached(const at::Tensor& tokens, KVCache& cache, int step, const ForwardOptions& opts,
                                               const HookSet* hooks, const RunContext* ctx) const {
  const at::Tensor t = checkTokens(tokens, cache.length);
  const int64_t B = t.size(0), P = t.size(1);
  if (cache.length > 0 && !cache.keys.empty() && cache.keys[0].defined() && cache.keys[0].size(0) != B)
    throw InputError(fmt::format("KV cache holds batch {}, tokens have batch {}", cache.keys[0].size(0), B));
  at::Tensor newMask = opts.attentionMask.defined() ? checkMask(opts.attentionMask, B, P, m_plan.home) : at::Tensor();
  if (newMask.defined() || cache.attentionMask.defined()) {
    auto ones = [&](int64_t n) { return at::ones({B, n}, at::TensorOptions().dtype(at::kBool).device(m_plan.home)); };
    at::Tensor pastMask = cache.attentionMask.defined() ? cache.attentionMask : ones(cache.length);
    cache.attentionMask = at::cat({pastMask, newMask.defined() ? newMask : ones(P)}, 1);
  }
  PassInput in;
  in.keyMask = cache.attentionMask;
  in.positions = ForwardPass::positionIds(in.keyMask, B, P, cache.length, m_plan.home);
  in.resid = ForwardPass::embed(*this, t, in.positions, hooks, step);
  in.cache = &cache;
  in.step = step;
  ForwardOptions o = opts;
  o.stopAtLayer = -1;
  return ForwardPass::run(*this, std::move(in), o, hooks, ctx);
}

ActivationCache HookedTransformer::runWithCache(const at::Tensor& tokens, const std::vector<std::string>& nameGlobs,
                                                const ForwardOptions& opts, std::optional<at::Device> device,
                                                ForwardResult* result, const HookSet* hooks, const RunContext* ctx) const {
  ActivationCache cache;
  const at::Device dev = device.value_or(m_plan.home);
  HookSet all = hooks ? *hooks : HookSet();  // user hooks first: the cache holds what flows downstream
  for (const auto& glob : nameGlobs)
    all.add(glob, [&cache, dev](const at::Tensor& t, const HookContext& hc) -> std::optional<at::Tensor> {
      cache.tensors[hc.name] = t.detach().to(dev);
      return std::nullopt;
    });
  ForwardResult r = forward(tokens, opts, &all, ctx);
  cache.tokens = checkTokens(tokens).to(dev);
  if (result) *result = std::move(r);
  return cache;
}

}  // namespace mechscope
