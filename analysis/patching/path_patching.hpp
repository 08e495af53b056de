#pragma once
// Path patching (docs/causal-protocols.md; Wang et al.'s ioi_utils.path_patching, Merullo et al.'s
// patching_utils.path_patching): the effect of one sender head's output, taken from the corrupted run,
// on chosen receivers (q/k/v/z of receiver heads, or the residual read by the logits) with every other
// head's output frozen to the clean run.
//
// Pass 1 runs the clean prompt with every head's z frozen to its clean value (Wang: at every position;
// Merullo: at the sender positions only) except the sender's, which takes its corrupted value at the
// sender positions; MLPs are recomputed (both official codes' default) or frozen to the clean run, and
// the receivers' inputs are recorded. Pass 2 is the clean run with only the receivers' activations
// replaced at the receiver positions. Senders are batched (variants on the batch dimension), pass 1
// starts at the lowest sender layer of a batch (below it every row is the clean run). With MLPs and
// every position frozen the residual at a receiver is exactly clean + (z_corrupt − z_clean) W_O, so
// that case skips the layers between.
#include <vector>

#include "analysis/patching/patch_types.hpp"
#include "core/common/head_ref.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// A head (0-indexed layer and head): the one head type (core/common/head_ref.hpp).
using HeadRef = mechscope::HeadRef;

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
  std::vector<HeadRef> senders;        ///< empty: Ioi every head below the highest receiver layer; Merullo every
                                       ///< head in layers ≤ the lowest receiver layer, receivers excluded
  std::vector<Receiver> receivers;     ///< empty: the residual stream read by the logits (last position)
  std::string positionRole;            ///< a role of PatchInputs::roles (e.g. "S2"): sender and receiver position
                                       ///< of each prompt (overrides the position lists)
  std::vector<int64_t> senderPositions;    ///< empty: all (Ioi) / the last position (Merullo); negative = from the end
  std::vector<int64_t> receiverPositions;  ///< empty: the sender positions (both official codes use one list)
  bool freezeMlps = false;     ///< freeze MLP outputs to the clean run (official option; default recomputed)
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
