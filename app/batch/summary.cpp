#include "app/batch/summary.hpp"

#include "analysis/common/registry.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

namespace mechscope::batch {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
/// The top `k` cells of an [L][H] score grid by |value|: [{head: "L.H", score}], ties to the lower cell.
json topHeads(const json& grid, size_t k, bool byAbs = true) {
  std::vector<std::pair<double, std::string>> cells;
  if (!grid.is_array()) return json::array();
  for (size_t l = 0; l < grid.size(); ++l) {
    if (!grid[l].is_array()) return json::array();
    for (size_t h = 0; h < grid[l].size(); ++h)
      if (grid[l][h].is_number()) cells.emplace_back(grid[l][h].get<double>(), fmt::format("{}.{}", l, h));
  }
  std::stable_sort(cells.begin(), cells.end(), [&](const auto& a, const auto& b) {
    return byAbs ? std::abs(a.first) > std::abs(b.first) : a.first > b.first;
  });
  json out = json::array();
  for (size_t i = 0; i < std::min(k, cells.size()); ++i) out.push_back({{"head", cells[i].second}, {"score", cells[i].first}});
  return out;
}

void copyKeys(json& out, const json& in, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (in.contains(k)) out[k] = in[k];
}
}  // namespace

json headline(const std::string& type, const json& r) {
  json h = json::object();
  if (type == "sinks") {
    h["top_sink_heads"] = topHeads(r.value("sink_score", json()), 5, false);
    if (r.contains("sink_rate") && r["sink_rate"].is_array() && !r["sink_rate"].empty()) {
      double s = 0;
      for (const auto& v : r["sink_rate"]) s += v.get<double>();
      h["mean_sink_rate"] = s / static_cast<double>(r["sink_rate"].size());
    }
    if (r.contains("secondary_sinks")) h["secondary_sinks"] = r["secondary_sinks"].size();
  } else if (type == "waad-fai") {
    // The split sizes and the farthest-reaching heads (the full lists are in result.json).
    if (r.contains("local_heads")) h["n_local_heads"] = r["local_heads"].size();
    if (r.contains("global_heads")) h["n_global_heads"] = r["global_heads"].size();
    h["top_distance_heads"] = topHeads(r.value("head_distance", json()), 5, false);
  } else if (type == "constraint-attention") {
    copyKeys(h, r, {"beta", "constraint_positions", "prompt_tokens"});
  } else if (type == "retrieval") {
    json top = json::array();
    if (r.contains("ranked_heads"))
      for (size_t i = 0; i < std::min<size_t>(5, r["ranked_heads"].size()); ++i) {
        const auto& e = r["ranked_heads"][i];
        top.push_back({{"head", fmt::format("{}.{}", e.value("layer", 0), e.value("head", 0))}, {"score", e.value("score", 0.0)}});
      }
    h["top_retrieval_heads"] = top;
    copyKeys(h, r, {"tests_used", "tests_without_span", "mean_rouge1_recall", "warnings"});
    if (r.contains("mask_experiment")) {  // the masking run and its random-heads control, side by side
      const auto& m = r["mask_experiment"];
      for (const char* c : {"top_k", "random_k"})
        if (m.contains(c)) h[std::string("mask_") + c + "_success_rate"] = m[c].value("success_rate", 0.0);
    }
  } else if (type == "patch") {
    const std::string layout = r.value("layout", "");
    if (layout == "[layer][head]") h["top_heads"] = topHeads(r.value("scores", json()), 5);
    copyKeys(h, r, {"metric_clean", "metric_corrupt", "normalisation", "prompts", "prompts_dropped", "component"});
  } else if (type == "circuit") {
    json heads = json::array();
    if (r.contains("heads"))
      for (const auto& e : r["heads"])
        heads.push_back({{"head", fmt::format("{}.{}", e.value("layer", 0), e.value("head", 0))}, {"role", e.value("role", "")},
                         {"stage", e.value("stage", 0)}});
    h["circuit_heads"] = heads;
  } else if (type == "overlap") {
    copyKeys(h, r, {"jaccard", "intersection_over_min", "shared", "only_a", "only_b"});
  } else if (const analysis::AnalysisDescriptor* d = analysis::findAnalysis(type); d && d->plugin) {
    // Plugins: their table's headline keys and the top heads of each [layer][head] figure key.
    for (const auto& key : d->headlineKeys)
      if (r.contains(key)) h[key] = r[key];
    for (const auto& key : d->figureKeys)
      if (r.contains(key)) h["top_" + key] = topHeads(r[key], 5, false);
  }
  return h;
}

json itemFiles(const OutputDir& out, const std::string& key) {
  const fs::path dir = out.itemDir(key);
  json files = json::object();
  auto rel = [&](const fs::path& p) { return fs::path(key) / p.lexically_relative(dir); };
  for (const auto& [name, file] : {std::pair{"h5", "result.h5"}, {"json", "result.json"}, {"log", "run.log"}})
    if (fs::exists(dir / file)) files[name] = rel(dir / file).generic_string();
  json figs = json::array();
  std::vector<std::string> found;
  if (fs::is_directory(dir / "figures"))
    for (const auto& e : fs::directory_iterator(dir / "figures")) {
      const auto ext = e.path().extension().string();
      if (ext == ".png" || ext == ".svg" || ext == ".pdf") found.push_back(rel(e.path()).generic_string());
    }
  std::sort(found.begin(), found.end());
  for (const auto& f : found) figs.push_back(f);
  files["figures"] = figs;
  return files;
}

json buildSummary(const json& meta, const std::vector<WorkItem>& items, const OutputDir& out,
                  const std::optional<std::pair<int, int>>& shard) {
  json s = meta;
  s.erase("items");
  if (shard) s["shard"] = {{"index", shard->first}, {"count", shard->second}};
  json list = json::array();
  std::map<std::string, int> counts;
  json failed = json::array();
  for (const auto& it : items) {
    json e = {{"key", it.key}, {"model", it.model}, {"analysis", it.analysis}, {"type", it.type},
              {"input", it.input.empty() ? json(nullptr) : json(it.input)}};
    const auto rec = out.record(it.key);
    if (!rec || rec->value("spec_hash", "") != it.specHash) {
      e["status"] = "pending";
    } else {
      for (const auto& [k, v] : rec->items())
        if (k != "key" && k != "spec_hash") e[k] = v;
      if (e["status"] == "failed") failed.push_back(it.key);
    }
    counts[e["status"].get<std::string>()]++;
    list.push_back(std::move(e));
  }
  s["items"] = list;
  s["counts"] = counts;
  s["failed"] = failed;
  return s;
}

namespace {
std::string headlineText(const json& h) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : h.items()) {
    std::string val;
    if (v.is_array() && !v.empty() && v[0].is_object() && v[0].contains("head")) {
      std::vector<std::string> hs;
      for (const auto& e : v) hs.push_back(e["head"].get<std::string>());
      val = fmt::format("{}", fmt::join(hs, " "));
    } else if (v.is_number_float()) {
      val = fmt::format("{:.4g}", v.get<double>());
    } else {
      val = v.dump();
      if (val.size() > 80) val = val.substr(0, 77) + "...";
    }
    parts.push_back(fmt::format("{}: {}", k, val));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

std::string markdownReport(const json& s) {
  std::string md = fmt::format("# Batch report: {}\n\n", s.value("name", "plan"));
  const auto& c = s["counts"];
  md += fmt::format("Items: {}", s["items"].size());
  for (const auto& [k, v] : c.items()) md += fmt::format(", {} {}", v.get<int>(), k);
  md += "\n\n";
  if (!s.value("figures_available", true)) md += "Figures are unavailable in this build (-DMECHSCOPE_GUI=OFF); the data files are written.\n\n";
  md += "| item | status | files | headline |\n|---|---|---|---|\n";
  for (const auto& e : s["items"]) {
    std::string files;
    if (e.contains("files"))
      for (const char* k : {"h5", "json", "log"})
        if (e["files"].contains(k)) files += fmt::format("[{}]({}) ", k, e["files"][k].get<std::string>());
    std::string status = e["status"].get<std::string>();
    if (e.contains("error") && !e["error"].get<std::string>().empty()) status += ": " + e["error"].get<std::string>();
    md += fmt::format("| `{}` | {} | {}| {} |\n", e["key"].get<std::string>(), status, files,
                      e.contains("headline") ? headlineText(e["headline"]) : "");
  }
  md += "\n## Figures\n\n";
  for (const auto& e : s["items"]) {
    if (!e.contains("files") || e["files"]["figures"].empty()) continue;
    md += fmt::format("### {}\n\n", e["key"].get<std::string>());
    for (const auto& f : e["files"]["figures"]) md += fmt::format("![{}]({})\n\n", f.get<std::string>(), f.get<std::string>());
  }
  return md;
}

std::string escapeHtml(const std::string& t) {
  std::string o;
  for (char ch : t) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else if (ch == '"') o += "&quot;";
    else o += ch;
  }
  return o;
}

std::string htmlReport(const json& s) {
  std::string h = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Batch report</title><style>"
                  "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}"
                  "table{border-collapse:collapse}img{max-width:480px;margin:4px}</style></head><body>\n";
  h += fmt::format("<h1>Batch report: {}</h1>\n", escapeHtml(s.value("name", "plan")));
  if (!s.value("figures_available", true)) h += "<p>Figures are unavailable in this build (-DMECHSCOPE_GUI=OFF); the data files are written.</p>\n";
  h += "<table><tr><th>item</th><th>status</th><th>files</th><th>headline</th></tr>\n";
  for (const auto& e : s["items"]) {
    std::string files;
    if (e.contains("files"))
      for (const char* k : {"h5", "json", "log"})
        if (e["files"].contains(k)) files += fmt::format("<a href=\"{0}\">{1}</a> ", escapeHtml(e["files"][k].get<std::string>()), k);
    const std::string error = e.contains("error") ? e["error"].get<std::string>() : std::string();
    h += fmt::format("<tr><td><code>{}</code></td><td>{}{}{}</td><td>{}</td><td>{}</td></tr>\n", escapeHtml(e["key"].get<std::string>()),
                     escapeHtml(e["status"].get<std::string>()), error.empty() ? "" : ": ", escapeHtml(error), files,
                     escapeHtml(e.contains("headline") ? headlineText(e["headline"]) : ""));
  }
  h += "</table>\n<h2>Figures</h2>\n";
  for (const auto& e : s["items"]) {
    if (!e.contains("files") || e["files"]["figures"].empty()) continue;
    h += fmt::format("<h3>{}</h3>\n", escapeHtml(e["key"].get<std::string>()));
    for (const auto& f : e["files"]["figures"]) h += fmt::format("<img src=\"{0}\" alt=\"{0}\">\n", escapeHtml(f.get<std::string>()));
  }
  return h + "</body></html>\n";
}
}  // namespace

void writeSummaryAndReport(const json& summary, const OutputDir& out) {
  writeFileAtomic(out.root() / "summary.json", summary.dump(2) + "\n");
  if (summary.value("report", "markdown") == "html") writeFileAtomic(out.root() / "report.html", htmlReport(summary));
  else writeFileAtomic(out.root() / "report.md", markdownReport(summary));
}

}  // namespace mechscope::batch
