// Circuit discovery in the plugin shape: `mechscope-cli circuit`, the GUI's Circuit panel and batch plans
// derive from this table and run discoverCircuit over the dataset's length groups. The --json document is
// toJson(CircuitResult) (the input of `overlap`) with the prompt groups and a few headline scalars added.
#include <ATen/ATen.h>

#include <fmt/format.h>

#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/datasets.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {

CircuitParams circuitParams(const ParamValues& params) {
  CircuitParams p;
  p.variant = params.text("variant") == "merullo" ? PathVariant::Merullo : PathVariant::Ioi;
  p.topPercent = params.number("top_percent");
  p.relThreshold = params.number("rel_threshold");
  p.minEffect = params.number("min_effect");
  p.maxStages = static_cast<int>(params.integer("max_stages"));
  p.freezeMlps = params.flag("freeze_mlps");
  p.maxBatchRows = params.integer("max_batch_rows");
  const std::string positions = params.given("stage_positions") ? params.text("stage_positions") : std::string();
  const std::string sites = params.given("stage_sites") ? params.text("stage_sites") : std::string();
  // Without --stage-positions the plan follows the prompts' roles (defaultStagePlan); prompts with no
  // roles, such as the GUI's patching pair (END only), get q, k and v at the sender positions, as the
  // pair's PatchInputs call did.
  if (!positions.empty()) p.plan = parseStagePlan(positions, sites);
  else if (!sites.empty()) throw InputError("circuit: --stage-sites needs --stage-positions");
  return p;
}

AnalysisResult runCircuit(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  const CircuitParams p = circuitParams(params);
  const CausalDataset& ds = *in.dataset;
  const std::string task = params.given("task") ? params.text("task") : ds.task;
  int dropped = 0;
  const std::vector<PatchGroup> groups = toPatchGroups(ds, &dropped);
  const CircuitResult r = discoverCircuit(*in.model, groups, p, task, ctx);
  AnalysisResult out;
  out.name = "circuit";
  out.json = toJson(r);
  putPromptGroups(out, groups, dropped);
  out.json["dropped_words"] = ds.droppedWords;
  // The headline (what the hand-written command printed): stages with their position and selection size,
  // heads with stage, role, score and effect.
  out.json["n_stages"] = r.stages.size();
  std::string stages, heads;
  for (const auto& st : r.stages)
    stages += fmt::format("{}{} at {}: {} heads", stages.empty() ? "" : "; ", st.index,
                          st.positionRole.empty() ? "the sender positions" : st.positionRole, st.selected.size());
  for (const auto& h : r.heads)
    heads += fmt::format("{}{}.{} stage {} {} score {:+.3f} effect {:+.4f}", heads.empty() ? "" : "; ", h.head.layer, h.head.head,
                         h.stage, h.role, h.score, h.effect);
  out.json["stage_summary"] = stages;
  out.json["head_summary"] = heads;
  for (const auto& st : r.stages) out.addArray(fmt::format("stage{}_effect", st.index), st.effect);
  return out;
}

}  // namespace

AnalysisPlugin circuitPlugin() {
  AnalysisPlugin p = makePlugin("circuit", "Circuit", "IOI / Colored Objects circuit discovery by iterative path patching",
                                PluginInput::Dataset, runCircuit);
  auto& d = p.descriptor;
  ParamInfo variant = makeParam("variant", ParamType::Choice, "--variant",
                                "path patching: ioi (Wang et al.) or merullo (Merullo et al.); positions come from the stage plan "
                                "(prompts without roles: ioi every position, merullo the last)",
                                "ioi");
  variant.choices = {"ioi", "merullo"};
  ParamInfo topPercent = makeParam("top_percent", ParamType::Float, "--top-percent", "at most this % of heads per stage", "2");
  topPercent.minimum = 0.01;
  topPercent.maximum = 100;
  ParamInfo relThreshold = makeParam("rel_threshold", ParamType::Float, "--rel-threshold", "keep heads ≥ this × stage max |effect|", "0.1");
  relThreshold.minimum = 0;
  relThreshold.maximum = 1;
  ParamInfo minEffect = makeParam("min_effect", ParamType::Float, "--min-effect", "keep heads ≥ this fraction of the LD gap", "0.02");
  minEffect.minimum = 0;
  ParamInfo maxStages = makeParam("max_stages", ParamType::Int, "--max-stages", "stages at most", "6");
  maxStages.minimum = 1;
  maxStages.maximum = 100;
  ParamInfo maxBatchRows = makeParam("max_batch_rows", ParamType::Int, "--max-batch-rows", "rows per batched forward", "512");
  maxBatchRows.minimum = 1;
  d.params = {
      makeParam("task", ParamType::String, "--task-name",
                "name stored with the circuit (overlap compares two of them); default: the dataset's name (ioi, colored-objects, "
                "the JSONL file's stem)"),
      variant,
      topPercent,
      relThreshold,
      minEffect,
      maxStages,
      makeParam("stage_positions", ParamType::String, "--stage-positions",
                "role position of each stage's senders and receivers, e.g. END,END,S2,S1+1 (default: IOI END,END,S2,S1+1; "
                "colored-objects END,END,OBJ2,OBJ1+1; prompts without roles: all positions / the last for merullo)"),
      makeParam("stage_sites", ParamType::String, "--stage-sites",
                "receiver site of stages 2… (q, k, v), e.g. q,v,k (default with roles q,v,k; with --stage-positions and no sites: q, k and v)"),
      makeParam("freeze_mlps", ParamType::Bool, "--freeze-mlps",
                "path patching with every MLP frozen to the clean run (default: recomputed, as both papers' code)"),
      maxBatchRows};
  d.headlineKeys = {"task", "prompts", "metric_clean", "metric_corrupt", "n_stages", "stage_summary", "head_summary"};
  d.exampleArgs = {"--max-stages", "2"};
  return p;
}

}  // namespace mechscope::analysis
