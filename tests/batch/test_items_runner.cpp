// Work items, sharding, command lines, the resumable runner and merge, with a fake executor (no model):
// sharded + merged equals unsharded, reruns skip finished items and redo partial ones.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "app/batch/command_args.hpp"
#include "app/batch/merge.hpp"
#include "app/batch/runner.hpp"
#include "app/batch/spawn.hpp"
#include "app/batch/work_items.hpp"
#include "core/common/remove_tree.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::batch {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const char* kPlan = R"([models.a]
path = "embedded"
[models.b]
path = "embedded"
dtype = "bf16"
[inputs.ioi]
kind = "ioi"
n = 4
[inputs.co]
kind = "colored-objects"
[inputs.ids]
kind = "token-ids"
file = "/ids.json"
[[analysis]]
type = "sinks"
inputs = ["ids", "ioi"]
bos_position = 0
[[analysis]]
type = "patch"
inputs = ["ioi", "co"]
per_position = true
[[analysis]]
type = "circuit"
inputs = ["ioi", "co"]
models = ["a"]
[[analysis]]
type = "overlap"
models = ["a"]
a = "circuit@ioi"
b = "circuit@co"
[[analysis]]
type = "retrieval"
inputs = ["ids"]
needle_span = "3:5"
success_filter = false
stop_token = [7, 9]
)";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(BatchItems, ExpandSortedWithDepsUnitsAndHashes) {
  const auto items = expandItems(parsePlan(kPlan, "p.toml"));
  ASSERT_EQ(items.size(), 13u);  // sinks 2×2, patch 2×2, circuit 2, overlap 1, retrieval 2
  for (size_t i = 1; i < items.size(); ++i) EXPECT_LT(items[i - 1].key, items[i].key);
  const auto find = [&](const std::string& k) { return *std::find_if(items.begin(), items.end(), [&](auto& it) { return it.key == k; }); };
  const WorkItem ov = find("a/overlap/_");
  EXPECT_EQ(ov.deps, (std::vector<std::string>{"a/circuit/ioi", "a/circuit/co"}));
  EXPECT_EQ(find("a/circuit/ioi").unit, ov.unit);
  EXPECT_EQ(find("a/circuit/co").unit, ov.unit);
  std::set<std::string> hashes;
  for (const auto& it : items) hashes.insert(it.specHash);
  EXPECT_EQ(hashes.size(), items.size());
  // Same plan → same hashes; one changed parameter → only that analysis' items change.
  const auto again = expandItems(parsePlan(kPlan, "p.toml"));
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].specHash, again[i].specHash);
  std::string changed = kPlan;
  changed.replace(changed.find("bos_position = 0"), 16, "bos_position = 1");
  const auto other = expandItems(parsePlan(changed, "p.toml"));
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].specHash == other[i].specHash, items[i].type != "sinks") << items[i].key;
  // Order: dependencies first.
  const auto order = runOrder(items);
  const auto pos = [&](const std::string& k) { return std::find_if(order.begin(), order.end(), [&](auto& it) { return it.key == k; }) - order.begin(); };
  EXPECT_LT(pos("a/circuit/co"), pos("a/overlap/_"));
  EXPECT_LT(pos("a/circuit/ioi"), pos("a/overlap/_"));
}

TEST(BatchItems, ShardsPartitionTheItemsDeterministically) {
  const auto items = expandItems(parsePlan(kPlan, "p.toml"));
  for (int n : {1, 2, 3, 5, 20}) {
    std::multiset<std::string> seen;
    for (int i = 0; i < n; ++i)
      for (const auto& it : shardItems(items, i, n)) seen.insert(it.key);
    EXPECT_EQ(seen.size(), items.size()) << n;
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), items.size()) << n;
  }
  // A dependency group stays in one shard.
  for (int i = 0; i < 3; ++i) {
    const auto s = shardItems(items, i, 3);
    const bool hasOverlap = std::any_of(s.begin(), s.end(), [](auto& it) { return it.type == "overlap"; });
    const int circuits = static_cast<int>(std::count_if(s.begin(), s.end(), [](auto& it) { return it.type == "circuit"; }));
    EXPECT_EQ(hasOverlap ? 2 : 0, circuits);
  }
  EXPECT_EQ(parseShard("2/4"), std::make_pair(2, 4));
  EXPECT_THROW(parseShard("4/4"), InputError);
  EXPECT_THROW(parseShard("x"), InputError);
}

TEST(BatchItems, CommandLinesFromTheTables) {
  const auto items = expandItems(parsePlan(kPlan, "p.toml"));
  const auto find = [&](const std::string& k) { return *std::find_if(items.begin(), items.end(), [&](auto& it) { return it.key == k; }); };
  using V = std::vector<std::string>;
  EXPECT_EQ(commandArgs(find("b/sinks/ids"), "/m", true),
            (V{"sinks", "--model", "/m", "--device", "cpu", "--dtype", "bf16", "--token-ids", "/ids.json", "--bos-position", "0",
               "--json", "result.json", "--out", "result.h5"}));
  EXPECT_EQ(inputPrep(find("a/sinks/ioi")), InputPrep::TokenRows);
  EXPECT_EQ(commandArgs(find("a/patch/co"), "/m", false),
            (V{"patch", "--model", "/m", "--device", "cpu", "--dtype", "fp32", "--dataset", "input.jsonl", "--per-position", "--json",
               "result.json"}));
  EXPECT_EQ(commandArgs(find("a/circuit/ioi"), "/m", false)[7], "--task");
  EXPECT_EQ(commandArgs(find("a/overlap/_"), "/m", true), (V{"overlap", "a.json", "b.json", "--json", "result.json"}));
  EXPECT_EQ(commandArgs(find("a/retrieval/ids"), "/m", false),
            (V{"retrieval", "--model", "/m", "--device", "cpu", "--dtype", "fp32", "--token-ids", "/ids.json", "--needle-span", "3:5",
               "--stop-token", "7", "--stop-token", "9", "--no-success-filter", "--json", "result.json"}));
}

/// A fake executor: result.json holds a number derived from the key; fails for keys in `failing`.
struct FakeExecutor {
  std::set<std::string> failing;
  std::vector<std::string> ran;
  ItemOutcome operator()(const WorkItem& it, const fs::path& work, const std::map<std::string, fs::path>& deps) {
    ran.push_back(it.key);
    std::ofstream(work / "run.log") << "running " << it.key << "\n";
    if (failing.count(it.key)) return {false, 2, "boom"};
    json r = {{"value", static_cast<double>(std::hash<std::string>{}(it.key) % 1000) / 7.0}};
    for (const auto& [k, d] : deps) r["dep_" + k] = json::parse(slurp(d / "result.json"))["value"];
    std::ofstream(work / "result.json") << r.dump();
    return {true, 0, ""};
  }
};

json runInto(const fs::path& dir, const std::vector<WorkItem>& all, std::optional<std::pair<int, int>> shard, FakeExecutor& ex,
             RunCounts* countsOut = nullptr) {
  OutputDir out(dir);
  RunSettings s;
  s.out = &out;
  s.shard = shard;
  s.meta = {{"name", "t"}, {"plan_hash", hashHex(itemsToJson(all).dump())}, {"report", "markdown"}};
  ProgressReporter quiet(ProgressMode::Quiet);
  const auto mine = shard ? shardItems(all, shard->first, shard->second) : all;
  const RunCounts c = runBatch(all, mine, s, [&](auto& it, auto& w, auto& d) { return ex(it, w, d); }, quiet);
  if (countsOut) *countsOut = c;
  return json::parse(slurp(dir / "summary.json"));
}

json withoutTimings(json s) {
  for (auto& e : s["items"]) e.erase("seconds");
  return s;
}

TEST(BatchRunner, ResumeSkipsFinishedRedoesPartialAndFailed) {
  const fs::path dir = test::scratchRoot() / "batch_resume";
  mechscope::removeTree(dir);
  const auto all = expandItems(parsePlan(kPlan, "p.toml"));
  FakeExecutor ex;
  ex.failing = {"a/patch/co"};
  RunCounts c;
  json s = runInto(dir, all, std::nullopt, ex, &c);
  EXPECT_EQ(c.ok, 12);
  EXPECT_EQ(c.failed, 1);
  EXPECT_EQ(s["failed"], json::array({"a/patch/co"}));
  EXPECT_EQ(s["counts"]["ok"], 12);
  EXPECT_FALSE(fs::exists(dir / "a/patch/co/result.json"));  // a failure leaves its log only
  EXPECT_TRUE(fs::exists(dir / "a/patch/co/run.log"));
  // Overlap read both circuits.
  const json ov = json::parse(slurp(dir / "a/overlap/_/result.json"));
  EXPECT_TRUE(ov.contains("dep_a/circuit/ioi") && ov.contains("dep_a/circuit/co"));
  // Simulate a run killed mid-item: a work folder with a half-written result, an item folder without record.
  fs::create_directories(dir / ".batch/work/a__sinks__ids.99999");
  std::ofstream(dir / ".batch/work/a__sinks__ids.99999/result.json") << "{";
  fs::remove(OutputDir(dir).recordPath("a/sinks/ids"));
  fs::remove(dir / "b/sinks/ioi/result.json");  // a finished item whose output vanished is redone
  ex.failing.clear();
  ex.ran.clear();
  s = runInto(dir, all, std::nullopt, ex, &c);
  EXPECT_EQ(std::set<std::string>(ex.ran.begin(), ex.ran.end()), (std::set<std::string>{"a/patch/co", "a/sinks/ids", "b/sinks/ioi"}));
  EXPECT_EQ(c.skipped, 10);
  EXPECT_EQ(s["counts"]["ok"], 13);
  EXPECT_FALSE(fs::exists(dir / ".batch/work/a__sinks__ids.99999"));
  // A third run does nothing.
  ex.ran.clear();
  runInto(dir, all, std::nullopt, ex, &c);
  EXPECT_TRUE(ex.ran.empty());
  mechscope::removeTree(dir);
}

TEST(BatchRunner, ShardedAndMergedEqualsUnsharded) {
  const fs::path root = test::scratchRoot() / "batch_merge";
  mechscope::removeTree(root);
  const auto all = expandItems(parsePlan(kPlan, "p.toml"));
  FakeExecutor ex;
  const json single = runInto(root / "single", all, std::nullopt, ex);
  for (int i = 0; i < 3; ++i) {
    const json shard = runInto(root / fmt::format("s{}", i), all, std::make_pair(i, 3), ex);
    EXPECT_EQ(shard["shard"]["count"], 3);
  }
  const MergeCounts mc = mergeOutputs({root / "s0", root / "s1", root / "s2"}, root / "merged");
  EXPECT_EQ(mc.ok, 13);
  EXPECT_EQ(mc.missing, 0);
  const json merged = json::parse(slurp(root / "merged/summary.json"));
  EXPECT_EQ(withoutTimings(merged), withoutTimings(single));
  for (const auto& it : all) EXPECT_EQ(slurp(root / "merged" / it.key / "result.json"), slurp(root / "single" / it.key / "result.json"));
  // Two shards only: the missing items are reported, not invented.
  const MergeCounts partial = mergeOutputs({root / "s0", root / "s1"}, root / "partial");
  EXPECT_GT(partial.missing, 0);
  EXPECT_EQ(partial.ok + partial.missing, 13);
  // A folder from another plan is refused.
  std::string other = kPlan;
  other.replace(other.find("n = 4"), 5, "n = 5");
  runInto(root / "other", expandItems(parsePlan(other, "p.toml")), std::nullopt, ex);
  EXPECT_THROW(mergeOutputs({root / "s0", root / "other"}, root / "bad"), InputError);
  mechscope::removeTree(root);
}

TEST(BatchSpawn, ExitCodesAndCancellation) {
  const fs::path dir = test::scratchRoot();
  EXPECT_EQ(runProcess("/bin/sh", {"-c", "echo hi; exit 3"}, dir, dir / "mechscope_batch_spawn.log", {}), 3);
  EXPECT_EQ(slurp(dir / "mechscope_batch_spawn.log"), "hi\n");
  const auto t0 = std::chrono::steady_clock::now();
  int polls = 0;
  const int rc = runProcess("/bin/sh", {"-c", "exec sleep 30"}, dir, dir / "mechscope_batch_spawn.log", [&] { return ++polls > 5; }, 1.0);
  EXPECT_EQ(rc, 128 + SIGINT);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  EXPECT_EQ(runProcess("/no/such/exe", {}, dir, dir / "mechscope_batch_spawn.log", {}), -1);
  fs::remove(dir / "mechscope_batch_spawn.log");
}

}  // namespace
}  // namespace mechscope::batch
