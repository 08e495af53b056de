#include "app/batch/merge.hpp"

#include <fmt/format.h>

#include "app/batch/output_dir.hpp"
#include "app/batch/runner.hpp"
#include "app/batch/summary.hpp"
#include "core/common/errors.hpp"

namespace mechscope::batch {
namespace fs = std::filesystem;
using nlohmann::json;

MergeCounts mergeOutputs(const std::vector<fs::path>& shardDirs, const fs::path& outDir) {
  if (shardDirs.empty()) throw InputError("merge: give at least one batch output folder");
  std::vector<OutputDir> shards;
  json meta;
  for (const auto& d : shardDirs) {
    OutputDir od(d);
    const auto m = readJsonFile(od.planJson());
    if (!m) throw InputError(fmt::format("merge: {} is not a batch output folder (no .batch/plan.json)", d.string()));
    if (meta.is_null()) meta = *m;
    else if (m->value("plan_hash", "") != meta.value("plan_hash", "") || (*m)["items"] != meta["items"])
      throw InputError(fmt::format("merge: {} ran a different plan than {} (plan hash {} vs {})", d.string(),
                                   shardDirs.front().string(), m->value("plan_hash", ""), meta.value("plan_hash", "")));
    shards.push_back(od);
  }
  OutputDir out(outDir);
  out.lock();
  const std::vector<WorkItem> items = itemsFromJson(meta["items"]);
  MergeCounts counts;
  for (const auto& it : items) {
    // Prefer a shard that finished the item; else one whose attempt failed (so the summary lists it).
    const OutputDir* from = nullptr;
    for (const auto& sd : shards)
      if (itemFinished(sd, it)) {
        from = &sd;
        break;
      }
    if (!from)
      for (const auto& sd : shards)
        if (const auto r = sd.record(it.key); r && r->value("spec_hash", "") == it.specHash) {
          from = &sd;
          break;
        }
    if (!from) {
      ++counts.missing;
      continue;
    }
    const auto rec = from->record(it.key);
    (rec->value("status", "") == "ok" ? counts.ok : counts.failed)++;
    if (fs::exists(out.itemDir(it.key)) && fs::equivalent(from->itemDir(it.key), out.itemDir(it.key))) continue;
    out.clearItem(it.key);
    if (fs::exists(from->itemDir(it.key))) {
      const fs::path tmp = out.workDir(it.key);
      fs::create_directories(tmp.parent_path());
      fs::copy(from->itemDir(it.key), tmp, fs::copy_options::recursive);
      out.commitItem(it.key, tmp);
    }
    out.writeRecord(it.key, *rec);
  }
  writeFileAtomic(out.planJson(), meta.dump(2) + "\n");
  if (fs::exists(shards.front().planCopy()) && !fs::exists(out.planCopy())) fs::copy_file(shards.front().planCopy(), out.planCopy());
  writeSummaryAndReport(buildSummary(meta, items, out, std::nullopt), out);
  return counts;
}

}  // namespace mechscope::batch
