#include "core/synth/loader_inverse.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::planted {
namespace {

/// Checkpoint tensors made by a WeightSource factory, each once (a name asked twice gets the same tensor).
struct Made {
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  std::map<std::string, size_t> byName;
};

/// Runs the loader on tensors from `make(name, shape, firstElement)`, recording what it asked for.
ModelWeights runLoader(const FamilySpec& spec, const ModelConfig& config, at::ScalarType dtype, Made& made,
                       const std::function<at::Tensor(const std::string&, const std::vector<int64_t>&, int64_t)>& make) {
  int64_t next = 0;
  auto factory = [&](const std::string& name, const std::vector<int64_t>& shape) {
    if (auto it = made.byName.find(name); it != made.byName.end()) return made.tensors[it->second];
    at::Tensor t = make(name, shape, next);
    next += t.numel();
    made.byName[name] = made.names.size();
    made.names.push_back(name);
    made.tensors.push_back(t);
    return t;
  };
  return spec.loadWeights(WeightSource(factory, dtype), config);
}

/// [numel] fp64 copy of a canonical tensor.
at::Tensor flat(const at::Tensor& t) { return t.detach().to(at::kDouble).contiguous().reshape({-1}); }

}  // namespace

void forEachCanonical(ModelWeights& w, const std::function<void(const std::string& name, at::Tensor& t)>& fn) {
  auto visit = [&](const std::string& name, at::Tensor& t) {
    if (t.defined()) fn(name, t);
  };
  visit("wE", w.wE);
  visit("wPos", w.wPos);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = fmt::format("layers.{}.", l);
    forEachLayerTensor(w.layers[l], [&](const std::string& name, at::Tensor& t) { visit(p + name, t); });
  }
  visit("lnFinalW", w.lnFinalW);
  visit("lnFinalB", w.lnFinalB);
  visit("wU", w.wU);
  visit("bU", w.bU);
}

LoaderInverse::LoaderInverse(const FamilySpec& spec, const ModelConfig& config) : m_spec(spec), m_config(config) {
  // Probe p (1 or 2) holds p·(k + 1) at global checkpoint element k, in fp64 (exact up to 2^53 elements).
  auto probe = [&](double scale, Made& made) {
    return runLoader(spec, config, at::kDouble, made, [&](const std::string&, const std::vector<int64_t>& shape, int64_t first) {
      int64_t n = 1;
      for (int64_t s : shape) n *= s;
      return ((at::arange(n, at::kDouble) + static_cast<double>(first + 1)) * scale).reshape(shape);
    });
  };
  Made one, two;
  ModelWeights a = probe(1.0, one), b = probe(2.0, two);
  m_names = one.names;
  for (const auto& t : one.tensors) {
    m_offsets.push_back(m_total);
    m_shapes.push_back(t.sizes().vec());
    m_total += t.numel();
  }
  std::vector<at::Tensor> second;
  forEachCanonical(b, [&](const std::string&, at::Tensor& t) { second.push_back(t); });
  size_t i = 0;
  forEachCanonical(a, [&](const std::string& name, at::Tensor& t) {
    // canonical = base + stored element: probe 1 gives base + (k + 1), probe 2 gives base + 2(k + 1).
    const at::Tensor fa = flat(t), fb = flat(second.at(i++));
    const at::Tensor diff = fb - fa;  // k + 1, or 0 where no checkpoint element is read
    const at::Tensor rounded = diff.round();
    if ((diff - rounded).abs().max().item<double>() > 1e-6 || rounded.min().item<double>() < 0 ||
        rounded.max().item<double>() > static_cast<double>(m_total))
      throw Error(fmt::format("plant: the {} loader is not element-wise on canonical '{}' (it mixes or scales "
                              "checkpoint elements); it cannot be inverted", spec.modelType, name));
    m_sources.push_back({name, rounded.to(at::kLong) - 1, 2 * fa - fb, t.sizes().vec()});
  });
}

ModelWeights LoaderInverse::zeroCanonical() const {
  Made made;
  ModelWeights w = runLoader(m_spec, m_config, at::kFloat, made, [](const std::string&, const std::vector<int64_t>& shape, int64_t) {
    return at::zeros(shape, at::kFloat);
  });
  forEachCanonical(w, [](const std::string&, at::Tensor& t) { t = at::zeros(t.sizes(), at::kFloat); });
  return w;
}

std::vector<std::pair<std::string, at::Tensor>> LoaderInverse::checkpointFor(const ModelWeights& target) const {
  at::Tensor stored = at::zeros({m_total}, at::kDouble);          // [total]
  at::Tensor written = at::zeros({m_total}, at::kBool);           // [total]
  double* st = stored.data_ptr<double>();
  bool* wr = written.data_ptr<bool>();
  ModelWeights t = target;
  size_t i = 0;
  forEachCanonical(t, [&](const std::string& name, at::Tensor& tensor) {
    if (i >= m_sources.size() || m_sources[i].name != name || tensor.sizes().vec() != m_sources[i].shape)
      throw InputError(fmt::format("plant: canonical '{}' does not match the {} layout", name, m_spec.modelType));
    const Source& src = m_sources[i++];
    const at::Tensor want = flat(tensor);
    const double* v = want.data_ptr<double>();
    const double* base = src.base.data_ptr<double>();
    const int64_t* index = src.index.data_ptr<int64_t>();
    for (int64_t e = 0; e < want.numel(); ++e) {
      const double value = v[e] - base[e];
      const int64_t k = index[e];
      if (k < 0) {
        if (std::abs(value) > 1e-9)
          throw InputError(fmt::format("plant: {} has no checkpoint element for {}[{}] (wanted {}, fixed at {})",
                                       m_spec.modelType, name, e, v[e], base[e]));
        continue;
      }
      if (wr[k] && std::abs(st[k] - value) > 1e-9)
        throw InputError(fmt::format("plant: {}[{}] shares its checkpoint element with another canonical weight set "
                                     "to a different value ({} vs {})", name, e, value, st[k]));
      st[k] = value;
      wr[k] = true;
    }
  });
  if (i != m_sources.size()) throw InputError(fmt::format("plant: canonical weights miss tensors of the {} layout", m_spec.modelType));

  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t n = 0; n < m_names.size(); ++n) {
    int64_t numel = 1;
    for (int64_t s : m_shapes[n]) numel *= s;
    out.emplace_back(m_names[n], stored.narrow(0, m_offsets[n], numel).to(at::kFloat).reshape(m_shapes[n]).contiguous());
  }
  // Round trip: the family's loader must give `target` back from what is written.
  Made made;
  size_t next = 0;
  ModelWeights loaded = runLoader(m_spec, m_config, at::kFloat, made, [&](const std::string& name, const std::vector<int64_t>& shape, int64_t) {
    const auto& [n, tensor] = out.at(next++);
    if (n != name || tensor.sizes().vec() != shape)
      throw Error(fmt::format("plant: the {} loader asked for '{}' out of order", m_spec.modelType, name));
    return tensor.clone();
  });
  std::vector<at::Tensor> back;
  forEachCanonical(loaded, [&](const std::string&, at::Tensor& x) { back.push_back(x); });
  i = 0;
  forEachCanonical(t, [&](const std::string& name, at::Tensor& x) {
    if (!at::allclose(flat(back.at(i++)), flat(x), 1e-5, 1e-6))
      throw Error(fmt::format("plant: {} does not load back as written ({}): the loader is not inverted", name, m_spec.modelType));
  });
  return out;
}

}  // namespace mechscope::planted
