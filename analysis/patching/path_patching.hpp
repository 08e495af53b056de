#pragma once
// Path patching (METRICS.md §3.3 IOI variant, §4.4 Merullo variant): the effect of one sender head's
// output, taken from the corrupted run, on chosen receivers (q/k/v/z of receiver heads, or the
// residual read by the logits) with every other head and every MLP frozen to the clean run.
//
// With everything but the sender frozen, the residual stream at a receiver's layer is the clean one
// plus the sender's change (z_corrupt − z_clean) W_O at the sender positions, so the first pass is
// computed exactly without re-running the frozen layers; the receivers' activations are recomputed
// by one layer of forwardFrom, and the second pass is a clean forward from the first receiver layer
// with them substituted. Senders are batched (variants on the batch dimension).
#include <vector>

#include "analysis/patching/patch_types.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// A head (0-indexed layer and head).
struct HeadRef {
  int layer = 0;
  int head = 0;
  friend bool operator==(const HeadRef&, const HeadRef&) = default;
  friend auto operator<=>(const HeadRef&, const HeadRef&) = default;
};

/// The activation of a receiver head that receives the sender's path.
enum class ReceiverSite { Q, K, V, Z };
/// "q", "k", "v", "z".
std::string toString(ReceiverSite s);
/// Parses "q", "k", "v", "z"; InputError otherwise.
ReceiverSite parseReceiverSite(const std::string& s);

/// One receiver: a head's q, k, v or z (k/v are read from the head's KV head under GQA).
struct Receiver {
  HeadRef head;
  ReceiverSite site = ReceiverSite::Q;
};

/// Which paper's protocol (positions and normalisation defaults).
enum class PathVariant {
  Ioi,     ///< Wang et al.: senders at the given positions, score 100·(patched − clean)/clean
  Merullo  ///< Merullo et al.: senders at one position (default the last), −100·(patched − clean)/(corrupt − clean)
};

/// Options of a path-patching run.
struct PathPatchParams {
  PathVariant variant = PathVariant::Ioi;
  std::vector<HeadRef> senders;        ///< empty: every head that can reach a receiver
  std::vector<Receiver> receivers;     ///< empty: the residual stream read by the logits (last position)
  std::vector<int64_t> senderPositions;    ///< empty: all (Ioi) / the last position (Merullo); negative = from the end
  std::vector<int64_t> receiverPositions;  ///< empty: all positions; negative = from the end
  int64_t maxBatchRows = 512;  ///< rows (senders × prompts) per batched forward
};

/// Result: one value per sender.
struct PathPatchResult {
  std::vector<HeadRef> senders;
  at::Tensor metricPatched;  ///< [sender, batch] LD of the second pass
  at::Tensor effect;         ///< [layer, head] (clean − patched)/(clean − corrupt) of the mean LD; 0 for non-senders
  at::Tensor scores;         ///< [layer, head] in the variant's convention (see `normalisation`); 0 for non-senders
  Normalisation normalisation = Normalisation::IoiPercent;
  double metricClean = 0;
  double metricCorrupt = 0;
};

/// Runs path patching of every sender to the receivers.
PathPatchResult pathPatch(const HookedTransformer& model, const PatchInputs& in, const PathPatchParams& params,
                          const RunContext* ctx = nullptr);

}  // namespace mechscope::analysis
