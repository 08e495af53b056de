#include "analysis/ablation/expert_ablation.hpp"

#include <ATen/ATen.h>

#include <map>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::analysis {

void checkExpertAblation(const HookedTransformer& m, const AblationParams& p) {
  if (p.experts.empty()) return;
  const ModelConfig& c = m.config();
  if (p.method != AblationMethod::Zero && p.method != AblationMethod::Mean)
    throw UnsupportedError(fmt::format("ablation: experts take zero or mean ablation, not {}", toString(p.method)));
  if (p.knockout) throw InputError("ablation: --knockout keeps a head set; it does not apply to --experts");
  for (const HeadRef& e : p.experts) {
    if (!c.isMoeLayer(e.layer))
      throw InputError(fmt::format("ablation: expert {}.{}: layer {} has no mixture of experts ({} model, {} layers)", e.layer, e.head,
                                   e.layer, c.modelType, c.nLayers));
    if (e.head < 0 || e.head >= c.moe.nExperts)
      throw InputError(fmt::format("ablation: expert {}.{} is outside the {} experts of layer {}", e.layer, e.head, c.moe.nExperts, e.layer));
  }
}

void addExpertAblationHooks(HookSet& hooks, const HookedTransformer& m, const at::Tensor& tokens, const AblationParams& p,
                            const ActivationCache& reference) {
  if (p.experts.empty()) return;
  checkExpertAblation(m, p);
  const int64_t P = tokens.size(1);
  at::Tensor posMask = at::zeros({P}, at::kBool);  // [pos]
  if (p.positions.empty()) posMask.fill_(true);
  for (int64_t q : p.positions) {
    const int64_t r = q < 0 ? P + q : q;
    if (r < 0 || r >= P) throw InputError(fmt::format("ablation: position {} is outside the {} prompt positions", q, P));
    posMask[r] = true;
  }
  const at::Tensor where = posMask.to(m.device()).view({1, P, 1});  // [1, pos, 1]
  std::map<int, std::vector<int64_t>> byLayer;
  for (const HeadRef& e : p.experts) byLayer[e.layer].push_back(e.head);
  for (const auto& [l, experts] : byLayer) {
    const std::string site = hook::name(l, "mlp.hook_expert_out");
    at::Tensor mean;  // [pos, expert, d_model] (mean ablation)
    if (p.method == AblationMethod::Mean) {
      if (!reference.has(site)) throw InputError(fmt::format("mean ablation of experts: the reference run has no {}", site));
      const at::Tensor& ref = reference.get(site);  // [n_ref, pos, expert, d_model]
      if (ref.size(1) != P)
        throw InputError(fmt::format("mean ablation of experts: reference prompts have {} tokens, the prompts {}", ref.size(1), P));
      mean = ref.to(at::kDouble).mean(0).to(m.device());
    }
    hooks.add(site, [experts = experts, where, mean](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
      at::Tensor out = t.clone();  // [batch, pos, expert, d_model]
      for (int64_t e : experts) {
        const at::Tensor repl = mean.defined() ? mean.select(1, e).to(t.dtype()).unsqueeze(0) : at::zeros({1}, t.options());
        out.select(2, e).copy_(at::where(where, repl, t.select(2, e)));
      }
      return out;
    });
  }
}

}  // namespace mechscope::analysis
