#pragma once
// The edge graph of edge attribution patching (docs/metrics.md §12.6): nodes are the input embeddings, every
// attention head, every MLP and the logits; an edge runs from every upstream node's output to every
// downstream node's input that reads it through the residual stream. A head has three inputs (its q, k and
// v receivers), so each edge into a head exists three times. Index layout as Hanna et al.'s EAP-IG code
// (forward = sources, backward = receivers), so score matrices line up with MIB's:
//   forward  [1 + L·(H + 1)]:   input, then per layer a{l}.h0 … a{l}.h{H−1}, m{l}
//   backward [L·(H + 2·K + 1) + 1]: per layer q of each head, k and v of each kv head, m{l}; then logits
// with K = n_kv_heads (= H without grouped queries: MIB's L·(3H + 1) + 1). Standard library only.
#include <cstdint>
#include <string>
#include <vector>

namespace mechscope {
struct ModelConfig;
}

namespace mechscope::analysis {

/// Which input of a downstream node an edge feeds.
enum class EdgeInput { Q, K, V, Mlp, Logits };

/// "q", "k", "v", "-" (MLP and logits have one input).
std::string toString(EdgeInput r);

/// The node and edge layout of one model.
struct EdgeGraph {
  int nLayers = 0;
  int nHeads = 0;
  int nKvHeads = 0;
  bool parallelAttnMlp = false;  ///< GPT-NeoX: a block's MLP reads resid_pre, not its own heads' outputs

  /// Source nodes (outputs): 1 + L·(H + 1).
  [[nodiscard]] int64_t nForward() const { return 1 + int64_t{nLayers} * (nHeads + 1); }
  /// Receivers (inputs): L·(H + 2K + 1) + 1.
  [[nodiscard]] int64_t nBackward() const { return int64_t{nLayers} * perLayerReceivers() + 1; }
  /// Receivers of one block: H queries, K keys, K values, one MLP.
  [[nodiscard]] int64_t perLayerReceivers() const { return nHeads + 2 * int64_t{nKvHeads} + 1; }

  /// Forward index of head `h` of layer `l`'s output.
  [[nodiscard]] int64_t headForward(int l, int h) const { return 1 + int64_t{l} * (nHeads + 1) + h; }
  /// Forward index of layer `l`'s MLP output.
  [[nodiscard]] int64_t mlpForward(int l) const { return 1 + int64_t{l} * (nHeads + 1) + nHeads; }
  /// Backward index of the first receiver of layer `l` (its head-0 q).
  [[nodiscard]] int64_t layerBackward(int l) const { return int64_t{l} * perLayerReceivers(); }
  /// Backward index of head (or kv head) `h`'s q, k or v receiver in layer `l`.
  [[nodiscard]] int64_t headBackward(int l, int h, EdgeInput r) const;
  /// Backward index of layer `l`'s MLP input.
  [[nodiscard]] int64_t mlpBackward(int l) const { return layerBackward(l) + perLayerReceivers() - 1; }
  /// Backward index of the logits' input.
  [[nodiscard]] int64_t logitsBackward() const { return nBackward() - 1; }

  /// The sources a receiver reads: forward indices [0, prevForward(b)) (Hanna et al.'s prev_index).
  [[nodiscard]] int64_t prevForward(int64_t backward) const;
  /// Name of a forward node: "input", "a{l}.h{h}", "m{l}".
  [[nodiscard]] std::string forwardName(int64_t forward) const;
  /// Node name of a receiver: "a{l}.h{h}" (q; k/v without grouped queries), "a{l}.kv{j}" (k/v of a kv head
  /// shared by several query heads), "m{l}", "logits".
  [[nodiscard]] std::string backwardNode(int64_t backward) const;
  /// Which input of its node receiver `backward` is.
  [[nodiscard]] EdgeInput backwardReceiver(int64_t backward) const;
  /// Number of edges: Σ over receivers of prevForward.
  [[nodiscard]] int64_t edgeCount() const;
};

/// Refuses (UnsupportedError) a model whose heads are not additive terms of the residual stream: with a
/// post-attention norm (Gemma 2/3, OLMo-2) the residual receives norm(Σ_h head_h), so an edge from one head
/// has no activation of its own and edge scores and edge patching are undefined per head.
void requireAdditiveHeads(const ModelConfig& config);

}  // namespace mechscope::analysis
