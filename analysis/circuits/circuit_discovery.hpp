#pragma once
// Circuit discovery by iterative path patching (docs/causal-protocols.md), backwards from the logits:
//   stage 1: every head → the residual read by the logits;
//   stage n: every head below → the receiver site of the heads selected at stage n − 1;
// until a stage selects nothing, no head lies below the receivers, or the stage plan ends. The plan
// gives each stage its receiver site and the role position of senders and receivers. For IOI prompts
// it is Wang et al.'s (logits@END, q@END, v@S2, k@S1+1); for Colored Objects the same with the asked
// object (v@OBJ2, k@OBJ1+1); for prompts without roles: q, k and v at the given sender positions.
// Selection rule of a stage (no per-model tuning): sort heads by |effect| (the fraction of the
// clean − corrupt logit difference the path carries); keep at most ceil(topPercent % × heads) of
// them, and only those with |effect| ≥ relThreshold × the stage's max |effect| and ≥ minEffect.
#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/patching/path_patching.hpp"

namespace mechscope::analysis {

/// What one stage patches: the receivers' site (ignored at stage 1, the logits) and the role position
/// of senders and receivers ("": CircuitParams::senderPositions); `allSites`: q, k and v together.
struct StagePlan {
  ReceiverSite site = ReceiverSite::Q;
  bool allSites = false;
  std::string positionRole;
};

/// The stage plan for prompts with these roles: IOI (S2, S1+1, END) logits@END, q@END, v@S2, k@S1+1;
/// Colored Objects (OBJ2, OBJ1+1, END) logits@END, q@END, v@OBJ2, k@OBJ1+1; otherwise one stage of q, k
/// and v at the sender positions, repeated.
std::vector<StagePlan> defaultStagePlan(const std::map<std::string, at::Tensor>& roles);
/// Parses a plan: roles "END,END,S2,S1+1" (one per stage) and sites "q,v,k" (stages 2…; empty: q, k
/// and v); InputError naming the option.
std::vector<StagePlan> parseStagePlan(const std::string& roles, const std::string& sites);

/// Options of circuit discovery.
struct CircuitParams {
  double topPercent = 2.0;     ///< at most this % of all heads per stage (rounded up)
  double relThreshold = 0.1;   ///< keep heads with |effect| ≥ relThreshold × stage max |effect|
  double minEffect = 0.02;     ///< and |effect| ≥ this fraction of the clean − corrupt LD gap
  int maxStages = 6;
  PathVariant variant = PathVariant::Ioi;
  std::vector<int64_t> senderPositions;  ///< stages without a role: empty = all positions (Merullo: the last)
  std::vector<StagePlan> plan;           ///< empty: defaultStagePlan of the prompts' roles
  bool freezeMlps = false;               ///< path patching with MLPs frozen (default recomputed, as the papers' code)
  int64_t maxBatchRows = 512;
};

/// One head of a circuit.
struct CircuitHead {
  HeadRef head;
  int stage = 0;      ///< 1-based stage that found it
  std::string role;   ///< "mover", "negative-mover", "mover-input", "upstream"
  double score = 0;   ///< effect / stage max |effect| (in [-1, 1])
  double effect = 0;  ///< fraction of the LD gap carried by the path
};

/// One stage of the search.
struct CircuitStage {
  int index = 1;
  std::string positionRole;         ///< where senders and receivers were patched ("": the sender positions)
  std::vector<Receiver> receivers;  ///< empty: the logits
  at::Tensor effect;                ///< [layer, head]
  at::Tensor score;                 ///< [layer, head] effect normalised by the stage max |effect|
  std::vector<HeadRef> selected;
};

/// A discovered circuit.
struct CircuitResult {
  std::string task;
  std::vector<CircuitHead> heads;  ///< the union of the stages' selections (first stage wins the role)
  std::vector<CircuitStage> stages;
  double metricClean = 0;
  double metricCorrupt = 0;
  int nLayers = 0;
  int nHeads = 0;
  CircuitParams params;
};

/// Runs the staged search on clean/corrupted prompts.
CircuitResult discoverCircuit(const HookedTransformer& model, const PatchInputs& in, const CircuitParams& params,
                              const std::string& task, const RunContext* ctx = nullptr);
/// Runs the staged search on prompts of several lengths (each stage's effects over every prompt).
CircuitResult discoverCircuit(const HookedTransformer& model, const std::vector<PatchGroup>& groups, const CircuitParams& params,
                              const std::string& task, const RunContext* ctx = nullptr);

/// The heads of a stage's scores kept by the selection rule.
std::vector<HeadRef> selectHeads(const at::Tensor& effect, double topPercent, double relThreshold, double minEffect);

/// JSON of a circuit (the `circuit --json` contract; read back by `overlap`).
nlohmann::json toJson(const CircuitResult& r);
/// Reads toJson's output (stages' effects included); InputError naming `source` when malformed.
CircuitResult circuitFromJson(const nlohmann::json& j, const std::string& source);

/// The `circuit` analysis plugin (circuit_plugin.cpp): discoverCircuit over the dataset's length groups.
AnalysisPlugin circuitPlugin();

}  // namespace mechscope::analysis
