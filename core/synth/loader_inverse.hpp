#pragma once
// Writing chosen canonical weights (core/model/model_weights.hpp) as a family's Hugging Face tensors by
// inverting that family's own loader: the loader is run twice on index probes (checkpoint element k holds
// k + 1, then 2(k + 1)), which shows for every canonical element the checkpoint element it came from and
// the constant the loader adds (Gemma's 1 + w norms). Views, transposes, de-interleaving copies (GPT-NeoX's
// fused QKV) and expert slices are all covered; the result is checked by loading it once more.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/family_spec.hpp"

namespace mechscope::planted {

/// Calls `fn` on every defined tensor of `w` with a stable name ("wE", "layers.1.wQ",
/// "layers.0.moe.experts.2.wOut"); `fn` may replace the tensor.
void forEachCanonical(ModelWeights& w, const std::function<void(const std::string& name, at::Tensor& t)>& fn);

/// The map from one family's checkpoint tensors to its canonical weights, for one config.
class LoaderInverse {
 public:
  /// Runs `spec`'s loader on the probes; throws Error when the loader is not element-wise (a canonical
  /// element that mixes several checkpoint elements or scales one).
  LoaderInverse(const FamilySpec& spec, const ModelConfig& config);

  /// Canonical weights of this family and config, every tensor zero, fp32 and contiguous: what a recipe fills.
  [[nodiscard]] ModelWeights zeroCanonical() const;

  /// The checkpoint tensors (fp32, HF names, in the loader's order) that load as exactly `target`
  /// (a filled zeroCanonical()). Throws InputError when `target` sets an element the checkpoint cannot hold
  /// (e.g. a bias the family has no tensor for, or tied tensors set differently), and Error when
  /// loading the result does not give `target` back (rtol 1e-5).
  [[nodiscard]] std::vector<std::pair<std::string, at::Tensor>> checkpointFor(const ModelWeights& target) const;

 private:
  struct Source {
    std::string name;
    at::Tensor index;  // [numel] int64: checkpoint element (global) each canonical element reads, −1: none
    at::Tensor base;   // [numel] fp64: the constant the loader adds
    std::vector<int64_t> shape;
  };
  const FamilySpec& m_spec;
  ModelConfig m_config;
  std::vector<std::string> m_names;            // checkpoint tensors, in the loader's order
  std::vector<std::vector<int64_t>> m_shapes;  // their shapes
  std::vector<int64_t> m_offsets;              // first global element of each
  int64_t m_total = 0;
  std::vector<Source> m_sources;  // one per canonical tensor, forEachCanonical order
};

}  // namespace mechscope::planted
