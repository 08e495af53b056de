#include "analysis/common/analysis_plugin.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

namespace {
std::vector<AnalysisPlugin>& plugins() {
  static std::vector<AnalysisPlugin> list;
  return list;
}

std::string scalarText(const nlohmann::json& v) {
  if (v.is_number_float()) return fmt::format("{:.4g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}
}  // namespace

AnalysisPlugin makePlugin(std::string name, std::string title, std::string summary, PluginInput input, PluginRun run) {
  AnalysisPlugin p;
  p.descriptor.name = std::move(name);
  p.descriptor.title = std::move(title);
  p.descriptor.summary = std::move(summary);
  switch (input) {
    case PluginInput::TokenRows: p.descriptor.acceptsKinds = {"prompts", "token-ids", "jsonl", "ioi", "colored-objects"}; break;
    case PluginInput::Dataset: p.descriptor.acceptsKinds = {"jsonl", "ioi", "colored-objects"}; break;
    case PluginInput::NiahGrid: p.descriptor.acceptsKinds = {"niah", "token-ids"}; break;
    case PluginInput::Files: p.descriptor.acceptsKinds = {}; break;
  }
  p.input = input;
  p.run = std::move(run);
  return p;
}

const std::vector<AnalysisPlugin>& analysisPlugins() { return plugins(); }

const AnalysisPlugin* findPlugin(std::string_view name) {
  const auto& list = plugins();
  const auto it = std::find_if(list.begin(), list.end(), [&](const AnalysisPlugin& p) { return p.descriptor.name == name; });
  return it == list.end() ? nullptr : &*it;
}

void registerAnalysisPlugin(AnalysisPlugin plugin) {
  if (plugin.descriptor.name.empty() || !plugin.run) throw std::logic_error("analysis plugin without a name or a run function");
  plugin.descriptor.plugin = true;
  plugin.descriptor.available = true;
  registerAnalysisDescriptor(plugin.descriptor);
  auto& list = plugins();
  const auto it = std::find_if(list.begin(), list.end(), [&](const AnalysisPlugin& p) { return p.descriptor.name == plugin.descriptor.name; });
  if (it != list.end()) *it = std::move(plugin);
  else list.push_back(std::move(plugin));
}

std::string pluginHeadline(const AnalysisDescriptor& d, const AnalysisResult& r) {
  if (!r.summaryLine.empty()) return r.summaryLine;
  std::string line = d.name + ":";
  std::string sep = " ";
  for (const auto& key : d.headlineKeys)
    if (r.json.contains(key)) {
      line += sep + key + "=" + scalarText(r.json[key]);
      sep = ", ";
    }
  // A result whose "layout" names another shape ([layer], [layer][pos], ...) has no head grid to summarise.
  const bool headGrids = !r.json.contains("layout") || r.json["layout"] == "[layer][head]";
  for (const auto& key : d.figureKeys) {
    if (!headGrids || !r.json.contains(key) || !r.json[key].is_array()) continue;
    const auto& g = r.json[key];  // [layer][head]
    double best = -INFINITY;
    int bl = -1, bh = -1;
    for (size_t l = 0; l < g.size(); ++l)
      for (size_t h = 0; g[l].is_array() && h < g[l].size(); ++h)
        if (g[l][h].is_number() && g[l][h].get<double>() > best) {
          best = g[l][h].get<double>();
          bl = static_cast<int>(l);
          bh = static_cast<int>(h);
        }
    if (bl >= 0) {
      line += fmt::format("{}largest {} at head {}.{} ({:.4g})", sep, key, bl, bh, best);
      sep = "; ";
    }
  }
  return line;
}

}  // namespace mechscope::analysis
