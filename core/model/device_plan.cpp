#include "core/model/device_plan.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

namespace {

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

/// `t` on `device`: unchanged on the CPU (views of the mapping stay views), contiguous elsewhere.
at::Tensor moved(const at::Tensor& t, at::Device device) {
  if (!t.defined() || t.device() == device) return t;
  return device.is_cpu() ? t.to(device) : t.to(device).contiguous();
}


}  // namespace

bool DevicePlan::split() const {
  return std::any_of(layers.begin(), layers.end(), [&](const at::Device& d) { return d != home; });
}

std::vector<at::Device> DevicePlan::devices() const {
  std::vector<at::Device> out{home};
  for (const auto& d : layers)
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
  return out;
}

std::string DevicePlan::label() const {
  std::vector<std::string> names;
  for (const auto& d : devices()) names.push_back(d.str());
  return fmt::format("{}", fmt::join(names, ","));
}

std::string DevicePlan::describe() const {
  if (!split()) return home.str();
  std::vector<std::string> parts;
  for (size_t l = 0; l < layers.size();) {
    size_t e = l;
    while (e + 1 < layers.size() && layers[e + 1] == layers[l]) ++e;
    parts.push_back(fmt::format("{} layers {}-{}", layers[l].str(), l, e));
    l = e + 1;
  }
  return fmt::format("{} (embeddings and unembedding on {})", fmt::join(parts, ", "), home.str());
}

at::Device parseDevice(const std::string& name) {
  at::Device dev(at::kCPU);
  try {
    dev = at::Device(name);
  } catch (const std::exception&) {
    throw InputError(fmt::format("device '{}' is not valid (expected cpu, cuda, cuda:N, a comma list of them, or auto)", name));
  }
  if (dev.is_cpu()) return dev;
  if (!dev.is_cuda()) throw UnsupportedError(fmt::format("device '{}' is not supported (cpu, cuda, cuda:N)", name));
  if (!at::hasCUDA())
    throw UnsupportedError(fmt::format("device '{}' requested but this LibTorch build has no CUDA (or no GPU is visible)", name));
  if (!dev.has_index()) dev = at::Device(at::kCUDA, 0);
  try {
    (void)at::empty({1}, at::TensorOptions().device(dev));  // the same API in LibTorch 1.13 and 2.x
  } catch (const std::exception& e) {
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    throw InputError(fmt::format("device '{}' is not usable ({})", name, why));
  }
  return dev;
}

std::vector<at::Device> parseDeviceList(const std::string& spec) {
  const std::string s = trimmed(spec);
  if (s == "auto") return {};
  std::vector<at::Device> out;
  for (size_t start = 0; start <= s.size();) {
    const size_t comma = std::min(s.find(',', start), s.size());
    const std::string name = trimmed(s.substr(start, comma - start));
    start = comma + 1;
    if (name.empty()) throw InputError(fmt::format("device list '{}' has an empty entry", spec));
    const at::Device d = parseDevice(name);
    if (std::find(out.begin(), out.end(), d) != out.end())
      throw InputError(fmt::format("device list '{}' names {} twice", spec, d.str()));
    out.push_back(d);
  }
  if (out.empty()) throw InputError("device: empty (expected cpu, cuda, cuda:N, a comma list of them, or auto)");
  return out;
}

int64_t WeightBytes::total() const {
  int64_t t = home;
  for (int64_t b : layers) t += b;
  return t;
}

WeightBytes estimateWeightBytes(const ModelConfig& cfg, int64_t elementBytes) {
  const int64_t D = cfg.dModel, H = cfg.nHeads, KV = cfg.nKvHeads > 0 ? cfg.nKvHeads : cfg.nHeads, Dh = cfg.dHead;
  const int64_t Dm = cfg.dMlp, V = cfg.dVocab, E = elementBytes;
  // Per block: q/k/v/o + MLP (gated: three matrices) + norms. Sparse layers hold every expert (all of them
  // live in memory, whichever are routed to), the router and the shared expert; biases and sinks are
  // negligible beside them.
  const int64_t attnParams = D * (H * Dh + 2 * KV * Dh) + H * Dh * D + 4 * D;
  const int64_t denseMlp = (cfg.gatedMlp ? 3 : 2) * D * Dm;
  const auto& moe = cfg.moe;
  const int64_t sparseMlp = int64_t{moe.nExperts} * (3 * D * moe.dExpert + D) + 3 * D * moe.dShared + D;
  WeightBytes out;
  for (int l = 0; l < cfg.nLayers; ++l) out.layers.push_back(E * (attnParams + (cfg.isMoeLayer(l) ? sparseMlp : denseMlp)));
  const int64_t positional = cfg.positional == PositionalKind::Learned ? int64_t{cfg.nCtx} * D : 0;
  out.home = E * (V * D * (cfg.tiedEmbeddings ? 1 : 2) + positional + 2 * D);
  return out;
}

DevicePlan planLayerSplit(const std::vector<at::Device>& devices, const WeightBytes& bytes) {
  if (devices.empty()) throw InputError("device plan: no device");
  DevicePlan plan;
  plan.home = devices.front();
  const int L = static_cast<int>(bytes.layers.size());
  const int N = static_cast<int>(devices.size());
  plan.layers.assign(static_cast<size_t>(L), plan.home);
  if (N == 1 || L == 0) return plan;
  // Device k ends its run where the running total (home parts first) comes closest to (k + 1)/N of the
  // whole, keeping at least one block for every later device.
  const double total = static_cast<double>(bytes.total());
  int start = 0;
  double running = static_cast<double>(bytes.home);
  for (int k = 0; k < N; ++k) {
    int end = start;  // exclusive
    if (k == N - 1) {
      end = L;
    } else {
      const double target = total * (k + 1) / N;
      const int maxEnd = std::max(start + (start < L ? 1 : 0), L - (N - 1 - k));  // leave a block per later device
      while (end < maxEnd) {
        const double next = running + static_cast<double>(bytes.layers[static_cast<size_t>(end)]);
        // Take block `end` when that lands closer to the target than stopping here (always the first one).
        if (end > start && std::abs(next - target) >= std::abs(running - target)) break;
        running = next;
        ++end;
      }
    }
    for (int l = start; l < end; ++l) plan.layers[static_cast<size_t>(l)] = devices[static_cast<size_t>(k)];
    start = end;
  }
  return plan;
}

int64_t bytesOnDevice(const DevicePlan& plan, const WeightBytes& bytes, at::Device device) {
  int64_t b = plan.home == device ? bytes.home : 0;
  for (size_t l = 0; l < plan.layers.size() && l < bytes.layers.size(); ++l)
    if (plan.layers[l] == device) b += bytes.layers[l];
  return b;
}

void placeWeights(ModelWeights& w, const DevicePlan& plan) {
  const bool tied = w.wU.defined() && w.wU.is_same(w.wE);
  for (at::Tensor* t : {&w.wE, &w.wPos, &w.lnFinalW, &w.lnFinalB, &w.bU}) *t = moved(*t, plan.home);
  w.wU = tied ? w.wE : moved(w.wU, plan.home);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const at::Device d = plan.layers.at(l);
    forEachLayerTensor(w.layers[l], [d](const std::string&, at::Tensor& t) { t = moved(t, d); });
  }
}

}  // namespace mechscope
