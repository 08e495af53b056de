#include "analysis/circuits/overlap.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <iterator>

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
}  // namespace

OverlapResult circuitOverlap(const CircuitResult& a, const CircuitResult& b, const std::vector<double>& percents) {
  OverlapResult r;
  r.headline = setOverlap(heads(a), heads(b));
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
