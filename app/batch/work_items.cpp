#include "app/batch/work_items.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <regex>

#include <fmt/format.h>

#include "analysis/common/registry.hpp"

namespace mechscope::batch {
using nlohmann::json;

std::string hashHex(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

namespace {
struct UnionFind {
  std::vector<int> parent;
  explicit UnionFind(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int find(int x) { return parent[static_cast<size_t>(x)] == x ? x : parent[static_cast<size_t>(x)] = find(parent[static_cast<size_t>(x)]); }
  void join(int a, int b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[static_cast<size_t>(std::max(a, b))] = std::min(a, b);
  }
};
}  // namespace

std::vector<WorkItem> expandItems(const Plan& plan) {
  std::vector<WorkItem> items;
  for (const auto& a : plan.analyses) {
    for (const auto& mid : a.models) {
      const ModelSpec* m = plan.model(mid);
      const json model = {{"id", m->id}, {"path", m->path}, {"device", m->device}, {"dtype", m->dtype}};
      auto make = [&](const std::string& inputId, json input) {
        WorkItem it;
        it.model = mid;
        it.analysis = a.id;
        it.input = inputId;
        it.type = a.type;
        it.key = fmt::format("{}/{}/{}", mid, a.id, inputId.empty() ? "_" : inputId);
        it.spec = {{"model", model}, {"analysis", a.type}, {"params", a.params}, {"input", std::move(input)}};
        if (const analysis::AnalysisDescriptor* d = analysis::findAnalysis(a.type))
          for (const auto& side : d->inputFiles) {  // an analysis without a model runs on other items' results
            const std::string ref = a.params[side].get<std::string>();
            const auto at = ref.find('@');
            it.deps.push_back(fmt::format("{}/{}/{}", mid, ref.substr(0, at), ref.substr(at + 1)));
          }
        items.push_back(std::move(it));
      };
      if (a.inputs.empty()) make("", nullptr);
      for (const auto& iid : a.inputs) {
        const InputSpec* in = plan.input(iid);
        make(iid, json{{"id", in->id}, {"kind", in->kind}, {"params", in->params}});
      }
    }
  }
  std::sort(items.begin(), items.end(), [](const WorkItem& x, const WorkItem& y) { return x.key < y.key; });
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < items.size(); ++i) index[items[i].key] = i;
  // Hashes in dependency order (a dependency's hash feeds its dependents'), units by union-find.
  UnionFind uf(items.size());
  for (size_t i = 0; i < items.size(); ++i)
    for (const auto& d : items[i].deps) {
      const auto it = index.find(d);
      if (it == index.end()) throw PlanError({{plan.source, {}, fmt::format("{} depends on {}, which the plan does not run", items[i].key, d)}});
      uf.join(static_cast<int>(i), static_cast<int>(it->second));
    }
  for (const auto& it : runOrder(items)) {
    WorkItem& w = items[index[it.key]];
    json spec = w.spec;
    for (const auto& d : w.deps) spec["deps"].push_back(items[index[d]].specHash);
    w.specHash = hashHex(spec.dump());
  }
  std::map<int, int> unitOfRoot;
  for (size_t i = 0; i < items.size(); ++i) {
    const int root = uf.find(static_cast<int>(i));
    if (!unitOfRoot.count(root)) {
      const int next = static_cast<int>(unitOfRoot.size());
      unitOfRoot[root] = next;
    }
    items[i].unit = unitOfRoot[root];
  }
  return items;
}

std::pair<int, int> parseShard(const std::string& text) {
  static const std::regex re("([0-9]+)/([0-9]+)");
  std::smatch m;
  if (std::regex_match(text, m, re)) {
    const int i = std::stoi(m[1]), n = std::stoi(m[2]);
    if (n > 0 && i < n) return {i, n};
  }
  throw InputError(fmt::format("--shard: expected I/N with 0 <= I < N (e.g. 0/4), found '{}'", text));
}

std::vector<WorkItem> shardItems(const std::vector<WorkItem>& items, int index, int count) {
  std::vector<WorkItem> out;
  for (const auto& it : items)
    if (it.unit % count == index) out.push_back(it);
  return out;
}

std::vector<WorkItem> runOrder(const std::vector<WorkItem>& items) {
  std::map<std::string, const WorkItem*> byKey;
  for (const auto& it : items) byKey[it.key] = &it;
  std::vector<WorkItem> out;
  std::map<std::string, int> state;  // 1 visiting, 2 done
  std::function<void(const WorkItem&)> visit = [&](const WorkItem& it) {
    int& s = state[it.key];
    if (s == 2) return;
    if (s == 1) throw PlanError({{"plan", {}, fmt::format("dependency cycle through {}", it.key)}});
    s = 1;
    for (const auto& d : it.deps)
      if (const auto f = byKey.find(d); f != byKey.end()) visit(*f->second);
    state[it.key] = 2;
    out.push_back(it);
  };
  for (const auto& it : items) visit(it);
  return out;
}

json itemsToJson(const std::vector<WorkItem>& items) {
  json arr = json::array();
  for (const auto& it : items)
    arr.push_back({{"key", it.key}, {"model", it.model}, {"analysis", it.analysis}, {"input", it.input}, {"type", it.type},
                   {"deps", it.deps}, {"spec_hash", it.specHash}, {"spec", it.spec}, {"unit", it.unit}});
  return arr;
}

std::vector<WorkItem> itemsFromJson(const json& j) {
  std::vector<WorkItem> out;
  for (const auto& e : j) {
    WorkItem it;
    it.key = e.at("key").get<std::string>();
    it.model = e.at("model").get<std::string>();
    it.analysis = e.at("analysis").get<std::string>();
    it.input = e.at("input").get<std::string>();
    it.type = e.at("type").get<std::string>();
    it.deps = e.at("deps").get<std::vector<std::string>>();
    it.specHash = e.at("spec_hash").get<std::string>();
    it.spec = e.at("spec");
    it.unit = e.at("unit").get<int>();
    out.push_back(std::move(it));
  }
  return out;
}

}  // namespace mechscope::batch
