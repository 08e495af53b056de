// Phi-3: Llama-shaped with a fused qkv_proj (rows q | k | v) and a fused gate_up_proj (gate rows first,
// then up), partial rotary, optional sliding window, and LongRope scaling (Phi-3-*-128k: short/long factors
// picked per pass, cos/sin × the attention factor; see ForwardPass::run and generate()).
#include <ATen/ATen.h>

#include "core/model/families/common_loaders.hpp"
#include "core/model/families/llama_like.hpp"

namespace mechscope {
namespace {

/// Rows [q | k | v] of the fused "{b}self_attn.qkv_proj": three row blocks, views of the mapping on CPU.
void loadFusedQkv(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  const int64_t d = c.dModel, q = int64_t{c.nHeads} * c.dHead, kv = int64_t{c.nKvHeads} * c.dHead;
  const at::Tensor qkv = s.getCpu(b + "self_attn.qkv_proj.weight", {q + 2 * kv, d});
  L.wQ = s.place(qkv.narrow(0, 0, q));
  L.wK = s.place(qkv.narrow(0, q, kv));
  L.wV = s.place(qkv.narrow(0, q + kv, kv));
  if (!c.attnQkvBias) return;
  const at::Tensor qkvB = s.getCpu(b + "self_attn.qkv_proj.bias", {q + 2 * kv});
  L.bQ = s.place(qkvB.narrow(0, 0, q));
  L.bK = s.place(qkvB.narrow(0, q, kv));
  L.bV = s.place(qkvB.narrow(0, q + kv, kv));
}

/// Rows [gate | up] of the fused "{b}mlp.gate_up_proj" (HF: gate, up = gate_up_proj(x).chunk(2, -1);
/// up * act(gate)), and down_proj.
void loadFusedGateUpMlp(const WeightSource& s, const ModelConfig& c, const std::string& b, LayerWeights& L) {
  const int64_t d = c.dModel, m = c.dMlp;
  const at::Tensor gateUp = s.getCpu(b + "mlp.gate_up_proj.weight", {2 * m, d});
  L.wGate = s.place(gateUp.narrow(0, 0, m));
  L.wIn = s.place(gateUp.narrow(0, m, m));
  L.wOut = s.get(b + "mlp.down_proj.weight", {d, m});
  if (!c.mlpBias) return;
  const at::Tensor gateUpB = s.getCpu(b + "mlp.gate_up_proj.bias", {2 * m});
  L.bGate = s.place(gateUpB.narrow(0, 0, m));
  L.bIn = s.place(gateUpB.narrow(0, m, m));
  L.bOut = s.get(b + "mlp.down_proj.bias", {d});
}

ModelWeights loadPhi3(const WeightSource& s, const ModelConfig& c) {
  const int64_t d = c.dModel;
  return families::loadDecoderStack(s, c, families::decoderPrefix(s), [&](const std::string& b, int) {
    LayerWeights L;
    L.ln1W = s.get(b + "input_layernorm.weight", {d});
    loadFusedQkv(s, c, b, L);
    families::loadOutProjection(s, c, b, L);
    L.ln2W = s.get(b + "post_attention_layernorm.weight", {d});
    loadFusedGateUpMlp(s, c, b, L);
    return L;
  });
}

}  // namespace

const FamilySpec& phi3Family() {
  static const FamilySpec spec{"phi3", "Phi-3 (fused qkv and gate_up, partial rotary, longrope, optional sliding window)",
                               // HF masks with a sliding window when `sliding_window` is set (Phi-3-mini-4k: 2047)
                               families::llamaLikeParser(families::slidingWindowFlags()), loadPhi3};
  return spec;
}

}  // namespace mechscope
