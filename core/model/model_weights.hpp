#pragma once
// The canonical weights every family maps onto. Linear weights use the torch.nn.Linear layout
// [out, in] (views of the mapping where the stored layout allows it); absent optional tensors are
// undefined at::Tensor.
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

}  // namespace mechscope
