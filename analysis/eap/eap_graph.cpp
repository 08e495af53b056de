// Node and edge layout of edge attribution patching (eap_graph.hpp).
#include "analysis/eap/eap_graph.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/model_config.hpp"

namespace mechscope::analysis {

std::string toString(EdgeInput r) {
  switch (r) {
    case EdgeInput::Q: return "q";
    case EdgeInput::K: return "k";
    case EdgeInput::V: return "v";
    case EdgeInput::Mlp:
    case EdgeInput::Logits: return "-";
  }
  return "-";
}

int64_t EdgeGraph::headBackward(int l, int h, EdgeInput r) const {
  const int64_t base = layerBackward(l);
  switch (r) {
    case EdgeInput::Q: return base + h;
    case EdgeInput::K: return base + nHeads + h;
    case EdgeInput::V: return base + nHeads + nKvHeads + h;
    default: throw std::logic_error("headBackward: not a head receiver");
  }
}

EdgeInput EdgeGraph::backwardReceiver(int64_t b) const {
  if (b == logitsBackward()) return EdgeInput::Logits;
  const int64_t i = b % perLayerReceivers();
  if (i < nHeads) return EdgeInput::Q;
  if (i < nHeads + nKvHeads) return EdgeInput::K;
  if (i < nHeads + 2 * int64_t{nKvHeads}) return EdgeInput::V;
  return EdgeInput::Mlp;
}

int64_t EdgeGraph::prevForward(int64_t b) const {
  if (b == logitsBackward()) return nForward();
  const int l = static_cast<int>(b / perLayerReceivers());
  const int64_t blockStart = 1 + int64_t{l} * (nHeads + 1);  // sources of earlier layers and the input
  if (backwardReceiver(b) == EdgeInput::Mlp && !parallelAttnMlp) return blockStart + nHeads;  // and this block's heads
  return blockStart;
}

std::string EdgeGraph::forwardName(int64_t f) const {
  if (f == 0) return "input";
  const int64_t l = (f - 1) / (nHeads + 1), i = (f - 1) % (nHeads + 1);
  return i == nHeads ? fmt::format("m{}", l) : fmt::format("a{}.h{}", l, i);
}

std::string EdgeGraph::backwardNode(int64_t b) const {
  if (b == logitsBackward()) return "logits";
  const int64_t l = b / perLayerReceivers(), i = b % perLayerReceivers();
  switch (backwardReceiver(b)) {
    case EdgeInput::Q: return fmt::format("a{}.h{}", l, i);
    case EdgeInput::K:
    case EdgeInput::V: {
      const int64_t j = (i - nHeads) % nKvHeads;
      return nKvHeads == nHeads ? fmt::format("a{}.h{}", l, j) : fmt::format("a{}.kv{}", l, j);
    }
    default: return fmt::format("m{}", l);
  }
}

int64_t EdgeGraph::edgeCount() const {
  int64_t n = 0;
  for (int64_t b = 0; b < nBackward(); ++b) n += prevForward(b);
  return n;
}

void requireAdditiveHeads(const ModelConfig& c) {
  if (!c.postAttnNorm) return;
  throw UnsupportedError(fmt::format(
      "edge attribution: {} normalises the attention output (a post-attention norm) before it joins the residual "
      "stream, so one head's output is not a term of any later input and its edges have no activation of their own; "
      "use patch or ablate (exact, per head) or dla (per head, norm scale frozen) on this model (docs/metrics.md §12.6)",
      c.modelType));
}

}  // namespace mechscope::analysis
