// `mechscope-cli circuit --task ioi|colored-objects|FILE.jsonl`: circuit discovery by iterative path
// patching from the logits backwards; --json writes heads (roles, stages, scores) and every stage's scores.
#include <ATen/ATen.h>

#include <iostream>

#include <fmt/format.h>

#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "app/cli/analysis_common_options.hpp"
#include "app/cli/causal_dataset_options.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"

namespace mechscope::cli {
namespace {

struct CircuitOptions {
  AnalysisCommonOptions common;
  std::string task, variant = "ioi", corruption = "abc", stagePositions, stageSites;
  int n = 50;
  uint64_t seed = 0;
  analysis::CircuitParams params;
};

void runCircuit(CircuitOptions& o) {
  o.common.validateOutputs("circuit");
  if (o.variant == "ioi") o.params.variant = analysis::PathVariant::Ioi;
  else if (o.variant == "merullo") o.params.variant = analysis::PathVariant::Merullo;
  else throw InputError(fmt::format("circuit: --variant must be ioi or merullo, found '{}'", o.variant));
  if (!o.stagePositions.empty()) o.params.plan = analysis::parseStagePlan(o.stagePositions, o.stageSites);
  else if (!o.stageSites.empty()) throw InputError("circuit: --stage-sites needs --stage-positions");
  attachStderrProgress("circuit");
  LoadedModel m = loadAnalysisModel(o.common);
  analysis::CausalSource src;
  src.task = o.task;
  src.n = o.n;
  src.seed = o.seed;
  if (o.corruption == "s2-io") src.ioiCorruption = analysis::IoiCorruption::S2Io;
  else if (o.corruption != "abc") throw InputError(fmt::format("circuit: --corruption must be abc or s2-io, found '{}'", o.corruption));
  const std::optional<int64_t> bos = m.tokenizer && m.tokenizer->bosId() ? m.tokenizer->bosId() : m.model->config().bosTokenId;
  const analysis::CausalDataset ds = analysis::loadCausalDataset(src, m.tokenizer ? &*m.tokenizer : nullptr, bos);
  int dropped = 0;
  const std::vector<analysis::PatchGroup> groups = analysis::toPatchGroups(ds, &dropped);
  const RunContext& ctx = processContext();
  const analysis::CircuitResult r = analysis::discoverCircuit(*m.model, groups, o.params, o.task, &ctx);
  analysis::AnalysisResult out;
  out.name = "circuit";
  out.json = analysis::toJson(r);
  putPromptGroups(out, groups, dropped);
  out.json["dropped_words"] = ds.droppedWords;
  for (const auto& st : r.stages) out.addArray(fmt::format("stage{}_effect", st.index), st.effect);
  writeAnalysisOutputs(o.common, out, m, "materialized");
  std::cout << fmt::format("circuit {}: {} prompts, LD clean {:.4f}, corrupt {:.4f}, {} stages\n", o.task, out.json["prompts"].get<int64_t>(),
                           r.metricClean, r.metricCorrupt, r.stages.size());
  for (const auto& st : r.stages)
    std::cout << fmt::format("  stage {} at {}: {} heads selected\n", st.index, st.positionRole.empty() ? "the sender positions" : st.positionRole,
                             st.selected.size());
  for (const auto& h : r.heads)
    std::cout << fmt::format("  {}.{}  stage {}  {:<14} score {:+.3f}  effect {:+.4f}\n", h.head.layer, h.head.head, h.stage,
                             h.role, h.score, h.effect);
}

const RegisterCommand reg_cmd_circuit{"circuit", 42, [](CLI::App& root) {
  auto o = std::make_shared<CircuitOptions>();
  auto* sub = root.add_subcommand("circuit", "Circuit discovery by iterative path patching (IOI / Colored Objects / JSONL)");
  sub->add_option("--model", o->common.model, "Hugging Face model folder")->required();
  sub->add_option("--task", o->task, "ioi, colored-objects (generated with the tokenizer) or FILE.jsonl")->required();
  sub->add_option("--n", o->n, "prompts to generate (default 50)");
  sub->add_option("--seed", o->seed, "generator seed (default 0)");
  sub->add_option("--corruption", o->corruption, "IOI corruption: abc (default) or s2-io");
  sub->add_option("--variant", o->variant, "path patching: ioi (Wang et al., default) or merullo (Merullo et al.); positions come from the stage plan (prompts "
                  "without roles: ioi every position, merullo the last)");
  sub->add_option("--top-percent", o->params.topPercent, "at most this % of heads per stage (default 2)");
  sub->add_option("--rel-threshold", o->params.relThreshold, "keep heads ≥ this × stage max |effect| (default 0.1)");
  sub->add_option("--min-effect", o->params.minEffect, "keep heads ≥ this fraction of the LD gap (default 0.02)");
  sub->add_option("--max-stages", o->params.maxStages, "stages at most (default 6)");
  sub->add_option("--stage-positions", o->stagePositions,
                  "role position of each stage's senders and receivers, e.g. END,END,S2,S1+1 (default: IOI END,END,S2,S1+1; "
                  "colored-objects END,END,OBJ2,OBJ1+1; prompts without roles: all positions / the last for merullo)");
  sub->add_option("--stage-sites", o->stageSites,
                  "receiver site of stages 2… (q, k, v), e.g. q,v,k (default with roles q,v,k; with --stage-positions and no sites: q, k and v)");
  sub->add_flag("--freeze-mlps", o->params.freezeMlps, "path patching with every MLP frozen to the clean run (default: recomputed, as both papers' code)");
  sub->add_option("--max-batch-rows", o->params.maxBatchRows, "rows per batched forward (default 512)");
  sub->add_option("--device", o->common.device, "cpu (default), cuda, cuda:N");
  sub->add_option("--dtype", o->common.dtype, "fp32 (default), bf16, fp16");
  sub->add_option("--json", o->common.json, "write the circuit as JSON (input of `overlap`)");
  sub->add_option("--out", o->common.out, "write the result to FILE.h5 under /analyses/circuit/");
  sub->callback([o, sub] {
    o->common.finishCommandLine(sub);
    runCircuit(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
