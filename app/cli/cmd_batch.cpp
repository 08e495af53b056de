// `mechscope-cli batch PLAN.toml`: every (model, analysis, input) of a plan, each through its own
// subcommand in a child process, into one output folder (docs/batch.md). The plan, work items,
// resume records, summary and merge live in app/batch/ (Qt- and torch-free); this file adds what
// needs the engine: the planted model, generated datasets, figures.
#ifdef MECHSCOPE_WITH_TOML
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/common/datasets.hpp"
#include "analysis/common/result_io.hpp"
#include "app/batch/analysis_table.hpp"
#include "app/batch/command_args.hpp"
#include "app/batch/plan.hpp"
#include "app/batch/runner.hpp"
#include "app/batch/spawn.hpp"
#include "app/batch/work_items.hpp"
#include "app/cli/command.hpp"
#include "app/cli/figures.hpp"
#include "core/common/errors.hpp"
#include "core/synth/planted_model.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/tokenizer/tokenizer.hpp"
#include "mechscope/version.hpp"

namespace mechscope::cli {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct BatchOptions {
  std::string plan, out, shard;
  bool quiet = false, progressJson = false, dryRun = false;
};

std::string joinWords(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) s += (s.empty() ? "" : " ") + x;
  return s;
}

bool isPlanted(const fs::path& folder) { return fs::exists(folder / "planted.json"); }

/// The generated (ioi / colored-objects) or read (jsonl) dataset of an item's input.
analysis::CausalDataset loadDataset(const json& input, const fs::path& model, const std::optional<Tokenizer>& tok) {
  const std::string kind = input["kind"].get<std::string>();
  const json& p = input["params"];
  if (kind == "jsonl") return analysis::readJsonl(p["file"].get<std::string>());
  const int n = p.value("n", 50);
  const auto seed = static_cast<uint64_t>(p.value("seed", 0));
  analysis::CausalDataset ds;
  ds.task = kind;
  if (isPlanted(model)) {
    // The planted model's own task prompts (its vocabulary; docs/planted-models.md).
    for (const auto& tp : kind == "ioi" ? planted::ioiPrompts(n, seed) : planted::coloredObjectsPrompts(n, seed)) {
      analysis::CausalPrompt cp;
      cp.clean = joinWords(tp.words);
      cp.corrupted = joinWords(tp.corrupted);
      cp.answer = tp.answer;
      cp.incorrect = tp.incorrect;
      cp.templateId = tp.templateId;
      cp.cleanIds = planted::toIds(tp.words);
      ds.prompts.push_back(std::move(cp));
    }
    return ds;
  }
  if (!tok) throw InputError(fmt::format("{}: no tokenizer.json to generate the {} prompts with", model.string(), kind));
  if (kind == "ioi") {
    analysis::IoiOptions io;
    io.n = n;
    io.seed = seed;
    io.order = p.value("order", "mixed");
    io.corruption = p.value("corruption", "abc") == "s2-io" ? analysis::IoiCorruption::S2Io : analysis::IoiCorruption::Abc;
    ds = analysis::ioiDataset(*tok, io);
  } else {
    analysis::ColoredObjectsOptions co;
    co.n = n;
    co.seed = seed;
    ds = analysis::coloredObjectsDataset(*tok, co);
  }
  analysis::tokenizeDataset(ds, &*tok, tok->bosId());
  return ds;
}

/// Writes the files an item's command reads (batch::InputPrep) into its work folder.
void prepareInput(const batch::WorkItem& item, const fs::path& model, const fs::path& work) {
  const batch::InputPrep prep = batch::inputPrep(item);
  if (prep == batch::InputPrep::None) return;
  std::optional<Tokenizer> tok;
  if (fs::exists(model / "tokenizer.json")) tok = Tokenizer::fromFile(model);
  analysis::CausalDataset ds = loadDataset(item.spec["input"], model, tok);
  if (ds.prompts.empty()) throw InputError(fmt::format("input '{}' has no prompts", item.input));
  if (prep == batch::InputPrep::DatasetJsonl) {
    if (isPlanted(model)) {
      std::ofstream out(work / batch::kDatasetFile);
      for (const auto& cp : ds.prompts)
        out << json{{"clean", cp.clean}, {"corrupted", cp.corrupted}, {"answer", cp.answer}, {"incorrect", cp.incorrect},
                    {"template", cp.templateId}}.dump()
            << '\n';
    } else {
      analysis::writeJsonl(ds, work / batch::kDatasetFile);
    }
    return;
  }
  // Token rows: the clean prompts (one row for one-sequence analyses).
  if (ds.prompts.front().cleanIds.empty()) analysis::tokenizeDataset(ds, tok ? &*tok : nullptr, tok ? tok->bosId() : std::nullopt);
  json rows = json::array();
  for (const auto& cp : ds.prompts) {
    rows.push_back(cp.cleanIds);
    if (batch::findAnalysis(item.type)->oneSequence) break;
  }
  std::ofstream(work / batch::kTokenRowsFile) << rows.dump() << '\n';
}

/// One figure per result key of the analysis' table entry: [L][H] grids as score grids, [L][N] maps as heatmaps.
void writeFigures(const batch::WorkItem& item, const fs::path& work, const std::string& model) {
  const auto result = batch::readJsonFile(work / batch::kResultJson);
  if (!result) return;
  for (const auto& key : batch::findAnalysis(item.type)->figureKeys) {
    if (!result->contains(key)) continue;
    if (item.type == "patch" && result->value("layout", "") != "[layer][head]") continue;
    const json& m = (*result)[key];
    if (!m.is_array() || m.empty() || !m[0].is_array() || m[0].empty() || !m[0][0].is_number()) continue;
    FigureMatrix f;
    f.rows = static_cast<int>(m.size());
    f.cols = static_cast<int>(m[0].size());
    for (const auto& row : m)
      for (const auto& v : row) f.values.push_back(v.get<float>());
    if (static_cast<int>(f.values.size()) != f.rows * f.cols) continue;
    f.title = fmt::format("{} — {} on {}", key, item.analysis, item.input);
    f.scoreGrid = key != "alpha";
    f.signedValues = item.type == "patch";
    f.causal = false;
    f.rowAxis = "layer";
    f.colAxis = f.scoreGrid ? "head" : "position";
    f.valueLabel = key;
    fs::create_directories(work / "figures");
    std::string error;
    if (!writeFigure(f, (work / "figures" / (key + ".png")).string(),
                     {{"model", model}, {"prompt", item.input}, {"metric", key}}, &error))
      std::ofstream(work / batch::kLogFile, std::ios::app) << "figure " << key << ": " << error << '\n';
  }
}

/// The executor: inputs, the analysis' subcommand as a child process, figures.
batch::ItemOutcome executeItem(const batch::WorkItem& item, const fs::path& work, const std::map<std::string, fs::path>& deps,
                               bool figures) {
  const analysis::AnalysisDescriptor* d = analysis::findAnalysis(item.type);
  const bool files = d && !d->inputFiles.empty();  // no model: the dependencies' results are its input files
  const std::string modelPath = files ? "" : item.spec["model"]["path"].get<std::string>();
  const fs::path model = modelPath == "embedded" ? planted::embeddedModelFolder() : fs::path(modelPath);
  if (files) {
    for (size_t i = 0; i < d->inputFiles.size(); ++i)
      fs::copy_file(deps.at(item.deps.at(i)) / batch::kResultJson, work / batch::inputFileName(d->inputFiles[i]));
  } else {
    prepareInput(item, model, work);
  }
  const auto args = batch::commandArgs(item, model.string(), analysis::resultH5Available() && !files);
  std::ofstream(work / "command.txt") << "mechscope-cli " << fmt::format("{}", fmt::join(args, " ")) << '\n';
  RunContext& ctx = processContext();
  const int rc = batch::runProcess("/proc/self/exe", args, work, work / batch::kLogFile, [&] { return ctx.cancel->cancelled(); });
  if (ctx.cancel->cancelled()) throw Cancelled();
  if (rc != 0) return {false, rc, ""};
  if (!fs::exists(work / batch::kResultJson)) return {false, rc, "the command wrote no result.json"};
  if (figures && figuresAvailable()) writeFigures(item, work, modelPath);
  return {true, 0, ""};
}

void runBatchCommand(const BatchOptions& o) {
  const fs::path planPath = o.plan;
  batch::Plan plan = batch::readPlanFile(planPath);  // PlanError (exit 2) lists every problem with its line
  const std::vector<batch::WorkItem> all = batch::expandItems(plan);
  std::optional<std::pair<int, int>> shard;
  if (!o.shard.empty()) shard = batch::parseShard(o.shard);
  const std::vector<batch::WorkItem> mine = shard ? batch::shardItems(all, shard->first, shard->second) : all;
  fs::path outDir = !o.out.empty()                 ? fs::path(o.out)
                    : !plan.output.dir.empty()     ? fs::absolute(planPath).parent_path() / plan.output.dir
                                                   : fs::path("batch-out");
  batch::OutputDir out(outDir);
  if (o.dryRun) {
    std::cout << fmt::format("plan {}: {} items ({} in this shard), output {}\n", planPath.string(), all.size(), mine.size(),
                             outDir.string());
    for (const auto& it : batch::runOrder(mine))
      std::cout << fmt::format("  {:<48} {}  {}\n", it.key, batch::itemFinished(out, it) ? "done   " : "to run ",
                               it.deps.empty() ? fmt::format("{}", fmt::join(batch::commandArgs(it, "MODEL", false), " ")) : "");
    return;
  }
  out.lock();
  {
    std::ifstream in(planPath, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    batch::writeFileAtomic(out.planCopy(), ss.str());
  }
  batch::RunSettings s;
  s.out = &out;
  s.shard = shard;
  s.meta = {{"name", plan.name.empty() ? planPath.stem().string() : plan.name},
            {"plan_hash", batch::hashHex(batch::itemsToJson(all).dump())},
            {"report", plan.output.report},
            {"figures", plan.output.figures},
            {"figures_available", figuresAvailable()},
            {"mechscope_version", kVersion}};
  s.cancelled = [] { return processContext().cancel->cancelled(); };
  if (plan.output.figures && !figuresAvailable() && !o.quiet && !o.progressJson)
    std::cerr << "batch: figures unavailable in this build (-DMECHSCOPE_GUI=OFF); writing the data only\n";
  batch::ProgressReporter progress(o.quiet ? batch::ProgressMode::Quiet
                                   : o.progressJson ? batch::ProgressMode::Json
                                                    : batch::autoProgressMode());
  const bool figures = plan.output.figures;
  const batch::RunCounts c = batch::runBatch(all, mine, s, [&](const batch::WorkItem& it, const fs::path& work, const auto& deps) {
    return executeItem(it, work, deps, figures);
  }, progress);
  if (c.cancelled) throw Cancelled();
  if (!o.quiet && !o.progressJson) std::cout << fmt::format("batch output: {}\n", fs::absolute(outDir).string());
  if (c.failed > 0) {
    std::cerr << fmt::format("batch: {} item{} failed (listed in {})\n", c.failed, c.failed == 1 ? "" : "s",
                             (outDir / "summary.json").string());
    setExitCode(kPartialFailure);
  }
}

const RegisterCommand reg_cmd_batch{"batch", 6, [](CLI::App& root) {
  auto o = std::make_shared<BatchOptions>();
  auto* sub = root.add_subcommand("batch", "Run a plan of analyses over models and inputs (headless; docs/batch.md)");
  sub->add_option("plan", o->plan, "PLAN.toml")->required();
  sub->add_option("--out", o->out, "Output folder (default: the plan's output.dir, else ./batch-out)");
  sub->add_option("--shard", o->shard, "Run shard I of N (0-based, e.g. 0/4): a deterministic subset of the items");
  sub->add_flag("--quiet", o->quiet, "No progress output");
  sub->add_flag("--progress-json", o->progressJson, "Progress as one JSON event per line on stdout");
  sub->add_flag("--dry-run", o->dryRun, "Validate the plan and list the work items without running them");
  sub->callback([o] { runBatchCommand(*o); });
}};

}  // namespace
}  // namespace mechscope::cli
#endif  // MECHSCOPE_WITH_TOML
