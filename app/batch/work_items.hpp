#pragma once
// Work items: one (model, analysis, input) of a plan, in a deterministic order, with a hash of
// everything that determines its result (a rerun redoes an item whose hash changed) and the shard
// unit it belongs to (items that depend on each other share a unit, so one shard runs them together).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/batch/plan.hpp"

namespace mechscope::batch {

/// One unit of work.
struct WorkItem {
  std::string key;       ///< "MODEL/ANALYSIS/INPUT" ("MODEL/ANALYSIS/_" without input); its output folder
  std::string model, analysis, input, type;
  std::vector<std::string> deps;  ///< keys of items whose outputs this one reads (overlap → circuits)
  std::string specHash;  ///< 16 hex digits over the resolved spec (model, input, parameters, deps)
  nlohmann::json spec;   ///< the resolved spec itself (model path/device/dtype, input, params)
  int unit = 0;          ///< shard unit (index of its dependency group in key order)
};

/// Every item of the plan, sorted by key; dependencies resolved. Throws PlanError on a dependency cycle.
std::vector<WorkItem> expandItems(const Plan& plan);

/// "I/N" → {I, N} with 0 ≤ I < N; InputError otherwise.
std::pair<int, int> parseShard(const std::string& text);

/// The items of shard I of N: every item whose unit % N == I (units round-robin in key order).
std::vector<WorkItem> shardItems(const std::vector<WorkItem>& items, int index, int count);

/// Items in run order: each after its dependencies, otherwise in key order.
std::vector<WorkItem> runOrder(const std::vector<WorkItem>& items);

/// FNV-1a 64 of `text` as 16 hex digits.
std::string hashHex(const std::string& text);

/// The item list as JSON (stored in the output folder: merge checks shards came from one plan).
nlohmann::json itemsToJson(const std::vector<WorkItem>& items);
/// Inverse of itemsToJson.
std::vector<WorkItem> itemsFromJson(const nlohmann::json& j);

}  // namespace mechscope::batch
