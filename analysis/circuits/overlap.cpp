#include "analysis/circuits/overlap.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>

namespace mechscope::analysis {

SetOverlap setOverlap(std::vector<HeadRef> a, std::vector<HeadRef> b) {
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  SetOverlap o;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(o.shared));
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(o.onlyA));
  std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(o.onlyB));
  const double inter = static_cast<double>(o.shared.size());
  const double uni = static_cast<double>(a.size() + b.size()) - inter;
  o.jaccard = uni > 0 ? inter / uni : 0.0;
  const double mn = static_cast<double>(std::min(a.size(), b.size()));
  o.overMin = mn > 0 ? inter / mn : 0.0;
  return o;
}

namespace {
std::vector<HeadRef> heads(const CircuitResult& r) {
  std::vector<HeadRef> out;
  for (const auto& h : r.heads) out.push_back(h.head);
  return out;
}
std::vector<HeadRef> reselect(const CircuitResult& r, double percent) {
  std::vector<HeadRef> out;
  for (const auto& st : r.stages) {
    auto s = selectHeads(st.effect, percent, r.params.relThreshold, r.params.minEffect);
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}
nlohmann::json list(const std::vector<HeadRef>& hs) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& h : hs) j.push_back(fmt::format("{}.{}", h.layer, h.head));
  return j;
}
nlohmann::json setJson(const SetOverlap& o) {
  return {{"jaccard", o.jaccard}, {"intersection_over_min", o.overMin}, {"shared", list(o.shared)},
          {"only_a", list(o.onlyA)}, {"only_b", list(o.onlyB)}};
}
/// Stage index → the heads it selected.
std::map<int, std::vector<HeadRef>> headsByStage(const CircuitResult& r) {
  std::map<int, std::vector<HeadRef>> out;
  if (!r.stages.empty()) {
    for (const auto& st : r.stages) out[st.index] = st.selected;
  } else {
    for (const auto& h : r.heads) out[h.stage].push_back(h.head);
  }
  return out;
}
}  // namespace

StagePairOverlap stagePairOverlap(const CircuitResult& a, const CircuitResult& b) {
  const auto sa = headsByStage(a), sb = headsByStage(b);
  std::set<int> stages;
  for (const auto& [k, v] : sa) stages.insert(k);
  for (const auto& [k, v] : sb) stages.insert(k);
  StagePairOverlap r;
  for (int st : stages) {
    const auto ia = sa.find(st), ib = sb.find(st);
    StageOverlap so;
    so.stage = st;
    so.overlap = setOverlap(ia == sa.end() ? std::vector<HeadRef>{} : ia->second, ib == sb.end() ? std::vector<HeadRef>{} : ib->second);
    r.shared += so.overlap.shared.size();
    r.sizeA += so.overlap.shared.size() + so.overlap.onlyA.size();
    r.sizeB += so.overlap.shared.size() + so.overlap.onlyB.size();
    r.stages.push_back(so);
  }
  r.unionSize = r.sizeA + r.sizeB - r.shared;
  r.jaccard = r.unionSize > 0 ? static_cast<double>(r.shared) / static_cast<double>(r.unionSize) : 0.0;
  const size_t mn = std::min(r.sizeA, r.sizeB);
  r.overMin = mn > 0 ? static_cast<double>(r.shared) / static_cast<double>(mn) : 0.0;
  return r;
}

OverlapResult circuitOverlap(const CircuitResult& a, const CircuitResult& b, const std::vector<double>& percents) {
  OverlapResult r;
  r.headline = setOverlap(heads(a), heads(b));
  r.stagePairs = stagePairOverlap(a, b);
  const bool canSweep = !a.stages.empty() && !b.stages.empty();
  for (double p : percents) {
    SweepPoint pt;
    pt.percent = p;
    const auto sa = canSweep ? reselect(a, p) : heads(a), sb = canSweep ? reselect(b, p) : heads(b);
    pt.overlap = setOverlap(sa, sb);
    pt.sizeA = pt.overlap.shared.size() + pt.overlap.onlyA.size();
    pt.sizeB = pt.overlap.shared.size() + pt.overlap.onlyB.size();
    r.sweep.push_back(pt);
  }
  return r;
}

nlohmann::json toJson(const OverlapResult& r) {
  nlohmann::json j = setJson(r.headline);
  j["analysis"] = "overlap";
  const StagePairOverlap& sp = r.stagePairs;
  nlohmann::json pairs = {{"size_a", sp.sizeA}, {"size_b", sp.sizeB}, {"shared", sp.shared}, {"union", sp.unionSize},
                          {"jaccard", sp.jaccard}, {"intersection_over_min", sp.overMin}, {"stages", nlohmann::json::array()}};
  for (const auto& st : sp.stages) {
    nlohmann::json s = setJson(st.overlap);
    s["stage"] = st.stage;
    pairs["stages"].push_back(s);
  }
  j["stage_pairs"] = pairs;
  j["sweep"] = nlohmann::json::array();
  for (const auto& p : r.sweep) {
    nlohmann::json s = setJson(p.overlap);
    s["top_percent"] = p.percent;
    s["size_a"] = p.sizeA;
    s["size_b"] = p.sizeB;
    j["sweep"].push_back(s);
  }
  return j;
}

}  // namespace mechscope::analysis
