#include "app/batch/runner.hpp"

#include <chrono>
#include <fstream>

#include <fmt/format.h>

#include "app/batch/summary.hpp"
#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"

namespace mechscope::batch {
namespace fs = std::filesystem;
using nlohmann::json;

bool itemFinished(const OutputDir& out, const WorkItem& item) {
  const auto rec = out.record(item.key);
  if (!rec || rec->value("status", "") != "ok" || rec->value("spec_hash", "") != item.specHash) return false;
  // Every file the record lists must still be there (a deleted output means redo).
  const json& files = rec->value("files", json::object());
  for (const auto& [k, v] : files.items()) {
    if (v.is_string() && !fs::exists(out.root() / v.get<std::string>())) return false;
    if (v.is_array())
      for (const auto& f : v)
        if (!fs::exists(out.root() / f.get<std::string>())) return false;
  }
  return true;
}

namespace {
/// The last non-empty line of a log (the child's error message), for the summary.
std::string lastLogLine(const fs::path& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}
}  // namespace

RunCounts runBatch(const std::vector<WorkItem>& all, const std::vector<WorkItem>& mine, const RunSettings& s,
                   const ItemExecutor& execute, ProgressReporter& progress) {
  OutputDir& out = *s.out;
  // plan.json first: the items of the whole plan, so merge can check every shard ran the same plan.
  json meta = s.meta;
  meta["items"] = itemsToJson(all);
  if (const auto existing = readJsonFile(out.planJson()); existing && existing->value("plan_hash", "") != meta.value("plan_hash", ""))
    std::fprintf(stderr, "batch: the plan changed since the last run in %s; items whose spec changed are redone\n", out.root().string().c_str());
  writeFileAtomic(out.planJson(), meta.dump(2) + "\n");

  const std::vector<WorkItem> order = runOrder(mine);
  std::map<std::string, bool> finished;
  for (const auto& it : all) finished[it.key] = itemFinished(out, it);
  int skipped = 0;
  for (const auto& it : order) skipped += finished[it.key];

  RunCounts counts;
  counts.skipped = skipped;
  progress.start(static_cast<int>(order.size()), skipped);
  auto writeSummary = [&] {
    json summaryMeta = meta;
    writeSummaryAndReport(buildSummary(summaryMeta, mine, out, s.shard), out);
  };
  for (const auto& it : order) {
    if (finished[it.key]) continue;
    if (s.cancelled && s.cancelled()) {
      counts.cancelled = true;
      break;
    }
    progress.itemStart(it.key);
    const auto t0 = std::chrono::steady_clock::now();
    out.clearItem(it.key);  // partial outputs of an earlier run, an old failure, a changed spec
    json record = {{"key", it.key}, {"spec_hash", it.specHash}};
    std::map<std::string, fs::path> depDirs;
    std::string depError;
    for (const auto& d : it.deps) {
      if (!finished[d]) depError = fmt::format("dependency {} did not finish", d);
      depDirs[d] = out.itemDir(d);
    }
    ItemOutcome outcome;
    fs::path work = out.workDir(it.key);
    if (depError.empty()) {
      fs::create_directories(work);
      try {
        outcome = execute(it, work, depDirs);
      } catch (const Cancelled&) {
        counts.cancelled = true;
      } catch (const std::exception& e) {
        outcome = {false, 1, e.what()};
      }
      if (!counts.cancelled && s.cancelled && s.cancelled()) counts.cancelled = true;
      if (counts.cancelled) {
        mechscope::removeTree(work);
        break;
      }
    } else {
      outcome = {false, 0, depError};
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (outcome.ok) {
      out.commitItem(it.key, work);
      record["status"] = "ok";
      if (const auto r = readJsonFile(out.itemDir(it.key) / "result.json")) record["headline"] = headline(it.type, *r);
      ++counts.ok;
      finished[it.key] = true;
    } else {
      // Keep the log (nothing that looks like a result): remove result files, then commit the folder.
      if (fs::exists(work)) {
        if (outcome.error.empty()) outcome.error = lastLogLine(work / "run.log");
        for (const char* f : {"result.h5", "result.json"}) fs::remove(work / f);
        mechscope::removeTree(work / "figures");
        out.commitItem(it.key, work);
      }
      record["status"] = "failed";
      record["exit_code"] = outcome.exitCode;
      ++counts.failed;
    }
    record["error"] = outcome.error;
    record["seconds"] = seconds;
    record["files"] = itemFiles(out, it.key);
    out.writeRecord(it.key, record);
    progress.itemDone(it.key, outcome.ok ? "ok" : "failed", seconds, outcome.error);
    writeSummary();
  }
  writeSummary();
  progress.finish(counts.ok, counts.failed, counts.skipped, counts.cancelled);
  return counts;
}

}  // namespace mechscope::batch
