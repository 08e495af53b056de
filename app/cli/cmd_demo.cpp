// `mechscope-cli demo`: the README run command without a display. Every part of mechscope on the
// embedded planted model (known answers): an HDF5 cache, the attention maps of the planted heads as
// figures, and each analysis' scores, all into one folder with a summary.json saying what ran.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/common/registry.hpp"
#include "app/cli/command.hpp"
#include "app/cli/demo_analyses.hpp"
#include "app/cli/figures.hpp"
#include "core/model/hook_names.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/synth/planted_model.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#ifdef MECHSCOPE_WITH_HDF5
#include "store/cache_writer.hpp"
#endif

namespace mechscope::cli {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::string joinWords(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) s += (s.empty() ? "" : " ") + x;
  return s;
}

std::vector<std::string> labels(const std::vector<int64_t>& ids) {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(planted::vocabulary()[static_cast<size_t>(id)].text);
  return out;
}

/// One attention map of the planted model as a figure (+ sidecar).
json patternFigure(const HookedTransformer& model, const std::vector<int64_t>& ids, int layer, int head,
                   const std::string& what, const fs::path& dir) {
  const auto tokens = at::tensor(ids, at::kLong).unsqueeze(0);
  const auto cache = model.runWithCache(tokens, {hook::pattern(layer)});
  const auto pattern = cache.at("pattern", layer)[0][head].contiguous().to(at::kFloat);  // [query, key]
  FigureMatrix m;
  m.rows = m.cols = static_cast<int>(ids.size());
  m.values.assign(pattern.data_ptr<float>(), pattern.data_ptr<float>() + pattern.numel());
  m.rowLabels = m.colLabels = labels(ids);
  m.title = fmt::format("Head {}.{} — {}", layer, head, what);
  const fs::path path = dir / fmt::format("pattern_L{}H{}.png", layer, head);
  std::string error;
  const bool ok = writeFigure(m, path.string(),
                              {{"model", "embedded planted model"}, {"prompt", joinWords(labels(ids))},
                               {"layer", std::to_string(layer)}, {"head", std::to_string(head)}, {"metric", "attention"}},
                              &error);
  return {{"layer", layer}, {"head", head}, {"what", what}, {"file", ok ? path.filename().string() : ""},
          {"error", ok ? "" : error}};
}

void runDemo(const std::string& outDir) {
  const fs::path out = outDir.empty() ? fs::path("mechscope-demo") : fs::path(outDir);
  fs::create_directories(out / "figures");
  RunContext& ctx = processContext();
  std::cerr << "demo: preparing the embedded planted model\n";
  const fs::path folder = planted::embeddedModelFolder();
  const auto model = HookedTransformer::load(folder);
  ctx.check();

  json summary = {{"model", folder.string()}, {"planted", planted::readPlantedJson(folder)["expected"]}};
  const auto ioi = planted::ioiPrompts(1, 1)[0];
  const auto co = planted::coloredObjectsPrompts(1, 2)[0];
  const auto needle = planted::needlePrompt(40, 0.5, 3);
  auto sinkText = planted::idleText();
  sinkText.insert(sinkText.begin() + 5, planted::kDelimiter);

  // 1. Predictions on the planted tasks.
  json tasks = json::array();
  for (const auto& [name, words, answer] :
       std::vector<std::tuple<std::string, std::vector<std::string>, std::string>>{
           {"ioi", ioi.words, ioi.answer}, {"colored_objects", co.words, co.answer}, {"needle", needle.words, needle.answer[0]}}) {
    const auto logits = model->forward(at::tensor(planted::toIds(words), at::kLong).unsqueeze(0)).logits[0][-1];
    const auto predicted = planted::vocabulary()[static_cast<size_t>(logits.argmax().item<int64_t>())].text;
    tasks.push_back({{"task", name}, {"prompt", joinWords(words)}, {"expected", answer}, {"predicted", predicted}});
    std::cerr << fmt::format("demo: {:<16} → {:<8} (expected {})\n", name, predicted, answer);
  }
  summary["tasks"] = tasks;
  ctx.check();

  // 2. An HDF5 cache of every hook on the IOI prompt.
#ifdef MECHSCOPE_WITH_HDF5
  {
    const auto tokens = at::tensor(planted::toIds(ioi.words), at::kLong).unsqueeze(0);
    ForwardResult result;
    const auto cache = model->runWithCache(tokens, {"*"}, {}, std::nullopt, &result);
    store::Provenance prov;
    prov.modelFolder = folder.string();
    prov.family = "gpt2";
    prov.dtype = "fp32";
    prov.device = "cpu";
    prov.attentionPath = result.attentionPath;
    prov.bosHandling = "prepended";
    prov.commandLine = "mechscope-cli demo";
    store::CacheWriter writer(out / "cache_ioi.h5", prov);
    writer.writeTokens(tokens, {labels(planted::toIds(ioi.words))});
    writer.writeLogits(result.logits);
    for (const auto& [name, t] : cache.tensors) writer.writeActivation(name, t);
    writer.commit();
    summary["cache"] = "cache_ioi.h5";
    std::cerr << fmt::format("demo: cached {} hooks to {}\n", cache.tensors.size(), (out / "cache_ioi.h5").string());
  }
#else
  summary["cache"] = "unavailable: built without HDF5";
#endif
  ctx.check();

  // 3. Attention maps of the planted heads.
  json figures = json::array();
  const auto ioiIds = planted::toIds(ioi.words), needleIds = planted::toIds(needle.words),
             coIds = planted::toIds(co.words), sinkIds = planted::toIds(sinkText);
  figures.push_back(patternFigure(*model, ioiIds, 0, 0, "previous-token head", out / "figures"));
  figures.push_back(patternFigure(*model, ioiIds, 1, 1, "duplicate-token head (IOI)", out / "figures"));
  figures.push_back(patternFigure(*model, ioiIds, 2, 1, "S-inhibition head (IOI)", out / "figures"));
  figures.push_back(patternFigure(*model, ioiIds, 3, 0, "mover head (IOI)", out / "figures"));
  figures.push_back(patternFigure(*model, coIds, 1, 2, "colour gatherer (Colored Objects)", out / "figures"));
  figures.push_back(patternFigure(*model, needleIds, 1, 0, "induction / retrieval head", out / "figures"));
  figures.push_back(patternFigure(*model, sinkIds, 10, 0, "sink head reading the ';' secondary sink", out / "figures"));
  summary["figures"] = figures;
  if (!figuresAvailable()) std::cerr << "demo: figures unavailable in this build (-DMECHSCOPE_GUI=OFF); data only\n";
  ctx.check();

  // 4. Every analysis that this build has.
  summary["analyses"] = runDemoAnalyses(folder, out, ctx);

  std::ofstream(out / "summary.json") << summary.dump(2) << '\n';
  std::cout << fmt::format("demo output: {}\n", fs::absolute(out).string());
}

const RegisterCommand reg_cmd_demo{"demo", 5, [](CLI::App& root) {
  auto out = std::make_shared<std::string>("mechscope-demo");
  auto* sub = root.add_subcommand("demo", "Run every part of mechscope on the embedded planted model (headless)");
  sub->add_option("--out", *out, "Output folder (default ./mechscope-demo)");
  sub->callback([out] { runDemo(*out); });
}};

}  // namespace
}  // namespace mechscope::cli
