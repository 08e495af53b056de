#pragma once
// The canonical weights every family maps onto. Linear weights use the torch.nn.Linear layout
// [out, in] (views of the mapping where the stored layout allows it); absent optional tensors are
// undefined at::Tensor.
#include <string>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

/// One routed expert (Linear layout [out, in]; views of the checkpoint where its layout allows).
struct ExpertWeights {
  at::Tensor wGate, bGate;  // [d_expert, d_model], [d_expert] (undefined when wGateUp holds both)
  at::Tensor wIn, bIn;      // [d_expert, d_model], [d_expert]: the "up" projection
  at::Tensor wGateUp, bGateUp;  // [2 · d_expert, d_model], [2 · d_expert]: gpt-oss's fused rows, gate = even, up = odd
  at::Tensor wOut, bOut;    // [d_model, d_expert], [d_model]
};

/// The mixture of experts of a sparse layer (ModelConfig::moe).
struct MoeWeights {
  at::Tensor wRouter, bRouter;  // [n_experts, d_model], [n_experts]
  std::vector<ExpertWeights> experts;  // n_experts
  ExpertWeights shared;         // the shared expert (dShared > 0), wGate/wIn [d_shared, d_model]
  at::Tensor wSharedGate;       // [1, d_model] (sharedGate only)
};

/// Weights of one transformer block.
struct LayerWeights {
  at::Tensor ln1W, ln1B;      // [d_model]
  at::Tensor wQ, bQ;          // [n_heads * d_head, d_model], [n_heads * d_head]
  at::Tensor wK, bK;          // [n_kv_heads * d_head, d_model], [n_kv_heads * d_head]
  at::Tensor wV, bV;          // [n_kv_heads * d_head, d_model], [n_kv_heads * d_head]
  at::Tensor wO, bO;          // [d_model, n_heads * d_head], [d_model]
  at::Tensor qNormW, kNormW;  // [d_head] (qk-norm only; [n_heads·d_head] and [n_kv_heads·d_head] with qkNormWhole)
  at::Tensor ln1PostW;        // [d_model] norm of the attention output (postAttnNorm only)
  at::Tensor ln2W, ln2B;      // [d_model]
  at::Tensor wIn, bIn;        // [d_mlp, d_model], [d_mlp]  (the "up" projection when gated)
  at::Tensor wGate, bGate;    // [d_mlp, d_model], [d_mlp] (gated MLP only)
  at::Tensor wOut, bOut;      // [d_model, d_mlp], [d_model]
  at::Tensor ln2PostW;        // [d_model] norm of the MLP output (postMlpNorm only)
  at::Tensor sinks;           // [n_heads] learned sink logits (attnSinks only)
  MoeWeights moe;             // sparse layers only (ModelConfig::isMoeLayer); the dense MLP weights are then undefined
};

/// All weights of a model.
struct ModelWeights {
  at::Tensor wE;                    // [d_vocab, d_model]
  at::Tensor wPos;                  // [n_ctx, d_model] (learned positions only)
  std::vector<LayerWeights> layers;
  at::Tensor lnFinalW, lnFinalB;    // [d_model]
  at::Tensor wU, bU;                // [d_vocab, d_model], [d_vocab] (wU aliases wE when tied)
};

/// Calls fn(name, tensor) on every tensor slot of one expert, defined or not ("wGate", "bGate", …, "bOut").
template <class Expert, class Fn>  // Expert = ExpertWeights or const ExpertWeights
void forEachExpertTensor(Expert& e, Fn&& fn) {
  fn("wGate", e.wGate);
  fn("bGate", e.bGate);
  fn("wIn", e.wIn);
  fn("bIn", e.bIn);
  fn("wGateUp", e.wGateUp);
  fn("bGateUp", e.bGateUp);
  fn("wOut", e.wOut);
  fn("bOut", e.bOut);
}

/// Calls fn(name, tensor) on every tensor slot of one block, defined or not, in one fixed order: attention and
/// MLP weights and norms, sinks, the router, each routed expert ("moe.experts.{e}.wOut"), the shared expert
/// ("moe.shared.wGate"). The one list of a block's tensors (parameter counts, device moves, planted writers).
template <class Layer, class Fn>  // Layer = LayerWeights or const LayerWeights; fn may replace a non-const block's tensor
void forEachLayerTensor(Layer& L, Fn&& fn) {
  fn("ln1W", L.ln1W);
  fn("ln1B", L.ln1B);
  fn("wQ", L.wQ);
  fn("bQ", L.bQ);
  fn("wK", L.wK);
  fn("bK", L.bK);
  fn("wV", L.wV);
  fn("bV", L.bV);
  fn("wO", L.wO);
  fn("bO", L.bO);
  fn("qNormW", L.qNormW);
  fn("kNormW", L.kNormW);
  fn("ln1PostW", L.ln1PostW);
  fn("ln2W", L.ln2W);
  fn("ln2B", L.ln2B);
  fn("wIn", L.wIn);
  fn("bIn", L.bIn);
  fn("wGate", L.wGate);
  fn("bGate", L.bGate);
  fn("wOut", L.wOut);
  fn("bOut", L.bOut);
  fn("ln2PostW", L.ln2PostW);
  fn("sinks", L.sinks);
  fn("moe.wRouter", L.moe.wRouter);
  fn("moe.bRouter", L.moe.bRouter);
  fn("moe.wSharedGate", L.moe.wSharedGate);
  for (size_t e = 0; e < L.moe.experts.size(); ++e) {
    const std::string prefix = "moe.experts." + std::to_string(e) + ".";
    forEachExpertTensor(L.moe.experts[e], [&](const char* name, auto& t) { fn(prefix + name, t); });
  }
  forEachExpertTensor(L.moe.shared, [&](const char* name, auto& t) { fn(std::string("moe.shared.") + name, t); });
}

}  // namespace mechscope
