#include "core/model/families/moe_like.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::families {

void parseMoe(const ConfigReader& r, ModelConfig& c, int dExpert) {
  c.moe.nExperts = r.requireInt({"num_local_experts", "num_experts"});
  c.moe.topK = r.requireInt({"num_experts_per_tok"});
  c.moe.dExpert = dExpert;
  const int step = static_cast<int>(r.optInt({"decoder_sparse_step"}).value_or(1));
  if (step < 1) throw InputError(fmt::format("{}: decoder_sparse_step {} must be ≥ 1", r.source(), step));
  std::vector<int64_t> dense;
  if (auto it = r.json().find("mlp_only_layers"); it != r.json().end() && !it->is_null()) {
    if (!it->is_array()) throw InputError(fmt::format("{}: mlp_only_layers should be a list of layer indices", r.source()));
    for (const auto& x : *it) {
      if (!x.is_number_integer()) throw InputError(fmt::format("{}: mlp_only_layers holds {}, expected integers", r.source(), x.dump()));
      dense.push_back(x.get<int64_t>());
    }
  }
  c.moe.sparseLayers.assign(static_cast<size_t>(std::max(c.nLayers, 0)), false);
  for (int l = 0; l < c.nLayers; ++l)
    c.moe.sparseLayers[static_cast<size_t>(l)] =
        c.moe.nExperts > 0 && (l + 1) % step == 0 && std::find(dense.begin(), dense.end(), l) == dense.end();
}

MoeWeights loadSeparateExperts(const WeightSource& s, const ModelConfig& c, const std::string& b, const std::string& router,
                               const ExpertNames& names) {
  const int64_t d = c.dModel, m = c.moe.dExpert;
  MoeWeights w;
  w.wRouter = s.get(b + router + ".weight", {c.moe.nExperts, d});
  for (int e = 0; e < c.moe.nExperts; ++e) {
    const std::string x = fmt::format("{}experts.{}.", b, e);
    ExpertWeights E;
    E.wGate = s.get(x + names.gate + ".weight", {m, d});
    E.wIn = s.get(x + names.up + ".weight", {m, d});
    E.wOut = s.get(x + names.down + ".weight", {d, m});
    w.experts.push_back(std::move(E));
  }
  return w;
}

}  // namespace mechscope::families
