#pragma once
// Interactive head patching and ablation: run a clean and a corrupted prompt once, keep every
// layer's hook_z and hook_pattern, then answer "what if these heads were patched / ablated" with one
// hooked forward pass each. The logit difference is logit(answer) − logit(incorrect) at the last position.
// Ablations are the analysis library's (analysis::ablationHooks, analysis::ablationHeadSweep: the CLI's
// `ablate` and `ablate --sweep`) on the clean prompt; patching sweeps are analysis::activationPatch.
#include <QString>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "analysis/ablation/ablation.hpp"
#include "app/gui/model_session.hpp"
#include "core/common/head_ref.hpp"
#include "core/common/run_context.hpp"

namespace mechscope::gui {

/// Which activation of a head is replaced.
enum class PatchSite { Z, Pattern };
/// clean→corrupt: run the corrupted prompt with the clean run's activation (restores the answer);
/// corrupt→clean: run the clean prompt with the corrupted run's activation (breaks it).
enum class PatchDirection { CleanIntoCorrupt, CorruptIntoClean };
/// Head intervention. The ablations run on the clean prompt as the CLI's `ablate --method`: AblateZero =
/// zero (hook_z ← 0), AblateUniform = uniform (each query row attends uniformly to the keys it can see),
/// AblateMean = mean with the pair as reference set (hook_z ← the mean of the clean and the corrupted
/// run's hook_z at each position).
enum class Intervention { Patch, AblateZero, AblateMean, AblateUniform };

/// One head (layer, head).
using Head = mechscope::HeadRef;

/// An intervention on a set of heads.
struct PatchRequest {
  std::vector<Head> heads;
  Intervention intervention = Intervention::Patch;
  PatchSite site = PatchSite::Z;
  PatchDirection direction = PatchDirection::CleanIntoCorrupt;
  int topK = 5;
};

/// What the panel shows after a run.
struct PatchOutcome {
  double logitDiff = 0.0;        ///< of the intervened run
  double baselineLogitDiff = 0.0;  ///< of the run the intervention is applied to, without it
  std::vector<std::pair<int64_t, double>> topProbs;  ///< next-token (id, probability), most likely first
};

/// Clean/corrupted pair with cached activations; immutable after build, safe to use from the job thread.
class PatchingSession {
 public:
  /// Runs both prompts (equal lengths required: InputError otherwise) and caches z and pattern of every layer.
  static std::shared_ptr<PatchingSession> build(std::shared_ptr<const ModelSession> model, std::vector<int64_t> clean,
                                                std::vector<int64_t> corrupt, int64_t answer, int64_t incorrect,
                                                const RunContext& ctx);
  /// The intervened run's logit difference and top next tokens.
  PatchOutcome run(const PatchRequest& request, const RunContext* ctx = nullptr) const;
  /// Logit difference of the clean run.
  double cleanLogitDiff() const { return m_cleanDiff; }
  /// Logit difference of the corrupted run.
  double corruptLogitDiff() const { return m_corruptDiff; }
  /// Number of layers / heads of the model.
  int layers() const;
  int heads() const;
  /// The answer and contrast token ids.
  int64_t answer() const { return m_answer; }
  int64_t incorrect() const { return m_incorrect; }
  /// The clean and corrupted prompts' ids.
  const std::vector<int64_t>& cleanIds() const { return m_clean; }
  const std::vector<int64_t>& corruptIds() const { return m_corrupt; }
  /// The model the pair was run on.
  const std::shared_ptr<const ModelSession>& model() const { return m_model; }
  /// One sweep: the intervention applied to every head alone → [layers, heads] logit differences,
  /// normalised as (d − d_corrupt) / (d_clean − d_corrupt) when `normalise`. Progress per head, cancellable.
  /// Ablations: analysis::ablationHeadSweep (tokens = the clean prompt, correct = the answer, incorrect =
  /// the contrast token, parameters = ablationParams); patching: analysis::activationPatch.
  std::vector<double> sweep(const PatchRequest& base, bool normalise, const RunContext& ctx) const;
  /// The analysis parameters of an ablation intervention (heads left empty): zero, uniform, or mean over
  /// the reference set [clean; corrupted]. Error for Intervention::Patch.
  analysis::AblationParams ablationParams(Intervention intervention) const;

 private:
  PatchingSession() = default;
  PatchOutcome runAblation(const PatchRequest& request, const RunContext* ctx) const;
  at::Tensor answerTensor() const;     ///< [1] the answer id
  at::Tensor incorrectTensor() const;  ///< [1] the contrast id
  std::shared_ptr<const ModelSession> m_model;
  std::vector<int64_t> m_clean, m_corrupt;
  int64_t m_answer = 0, m_incorrect = 0;
  double m_cleanDiff = 0.0, m_corruptDiff = 0.0;
  struct Run;
  std::shared_ptr<Run> m_cleanRun, m_corruptRun;
};

/// Logit difference of `logits` [1, pos, vocab] (or [1, 1, vocab]) at the last position.
double lastLogitDiff(const at::Tensor& logits, int64_t answer, int64_t incorrect);

}  // namespace mechscope::gui
