#include "analysis/circuits/circuit_discovery.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "analysis/patching/patch_groups.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::vector<HeadRef> selectHeads(const at::Tensor& effect, double topPercent, double relThreshold, double minEffect) {
  const at::Tensor e = effect.to(at::kDouble).contiguous();  // [layer, head]
  const int64_t L = e.size(0), H = e.size(1);
  const auto k = static_cast<size_t>(std::ceil(topPercent / 100.0 * static_cast<double>(L * H) - 1e-9));
  const double maxAbs = e.abs().max().item<double>();
  std::vector<std::pair<double, HeadRef>> all;
  const double* d = e.data_ptr<double>();
  for (int64_t l = 0; l < L; ++l)
    for (int64_t h = 0; h < H; ++h) all.push_back({std::abs(d[l * H + h]), {static_cast<int>(l), static_cast<int>(h)}});
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<HeadRef> out;
  for (size_t i = 0; i < all.size() && out.size() < k; ++i) {
    if (all[i].first < relThreshold * maxAbs || all[i].first < minEffect || all[i].first == 0) break;
    out.push_back(all[i].second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::string roleOf(int stage, double effect) {
  if (stage == 1) return effect >= 0 ? "mover" : "negative-mover";
  if (stage == 2) return "mover-input";
  return "upstream";
}

void collectHeads(CircuitResult& r) {
  r.heads.clear();
  for (const auto& st : r.stages) {
    const double maxAbs = st.effect.abs().max().item<double>();
    for (const auto& h : st.selected) {
      if (std::any_of(r.heads.begin(), r.heads.end(), [&](const CircuitHead& c) { return c.head == h; })) continue;
      CircuitHead c;
      c.head = h;
      c.stage = st.index;
      c.effect = st.effect[h.layer][h.head].item<double>();
      c.score = maxAbs > 0 ? c.effect / maxAbs : 0;
      c.role = roleOf(st.index, c.effect);
      r.heads.push_back(c);
    }
  }
}

}  // namespace

CircuitResult discoverCircuit(const HookedTransformer& m, const PatchInputs& in, const CircuitParams& params,
                              const std::string& task, const RunContext* ctx) {
  PatchGroup all;
  all.inputs = in;
  for (int64_t b = 0; b < in.clean.size(0); ++b) all.promptIndex.push_back(b);
  return discoverCircuit(m, std::vector<PatchGroup>{all}, params, task, ctx);
}

std::vector<StagePlan> defaultStagePlan(const std::map<std::string, at::Tensor>& roles) {
  auto has = [&](const char* r) { return roles.count(r) > 0; };
  auto plan = [](const char* repeated, const char* upstream) {
    return std::vector<StagePlan>{{ReceiverSite::Q, false, "END"},
                                  {ReceiverSite::Q, false, "END"},
                                  {ReceiverSite::V, false, repeated},
                                  {ReceiverSite::K, false, upstream}};
  };
  if (has("END") && has("S2") && has("S1+1")) return plan("S2", "S1+1");
  if (has("END") && has("OBJ2") && has("OBJ1+1")) return plan("OBJ2", "OBJ1+1");
  return {{ReceiverSite::Q, true, ""}};
}

std::vector<StagePlan> parseStagePlan(const std::string& roles, const std::string& sites) {
  auto split = [](const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
      const size_t comma = text.find(',', start);
      out.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  };
  const std::vector<std::string> rs = split(roles);
  const std::vector<std::string> ss = sites.empty() ? std::vector<std::string>{} : split(sites);
  if (!ss.empty() && ss.size() + 1 != rs.size())
    throw InputError(fmt::format("circuit: --stage-sites names {} sites for stages 2…; --stage-positions names {} stages (need one fewer site)",
                                 ss.size(), rs.size()));
  std::vector<StagePlan> plan;
  for (size_t i = 0; i < rs.size(); ++i) {
    if (rs[i].empty()) throw InputError(fmt::format("circuit: --stage-positions '{}' has an empty role", roles));
    StagePlan st;
    st.positionRole = rs[i];
    if (i == 0) st.allSites = false;
    else if (ss.empty()) st.allSites = true;
    else st.site = parseReceiverSite(ss[i - 1]);
    plan.push_back(st);
  }
  return plan;
}

CircuitResult discoverCircuit(const HookedTransformer& m, const std::vector<PatchGroup>& groups, const CircuitParams& params,
                              const std::string& task, const RunContext* ctx) {
  if (params.topPercent <= 0 || params.topPercent > 100)
    throw InputError(fmt::format("circuit: --top-percent must be in (0, 100], found {}", params.topPercent));
  if (groups.empty()) throw InputError("circuit: no prompts");
  CircuitResult r;
  r.task = task;
  r.params = params;
  if (r.params.plan.empty()) {
    // The plan every group supports (the roles of the first group, checked on the others by pathPatch).
    r.params.plan = defaultStagePlan(groups.front().inputs.roles);
  }
  const std::vector<StagePlan>& plan = r.params.plan;
  r.nLayers = m.config().nLayers;
  r.nHeads = m.config().nHeads;
  std::vector<Receiver> receivers;  // stage 1: the logits
  for (int stage = 1; stage <= params.maxStages; ++stage) {
    if (stage > 1 && receivers.empty()) break;
    if (stage > static_cast<int>(plan.size()) && !plan.back().allSites) break;  // a role plan ends
    const StagePlan& sp = plan[std::min(static_cast<size_t>(stage - 1), plan.size() - 1)];
    int maxLayer = r.nLayers;
    if (stage > 1) {
      maxLayer = 0;
      for (const auto& rc : receivers) maxLayer = std::max(maxLayer, rc.head.layer);
      if (maxLayer == 0) break;  // nothing lies below the receivers
    }
    PathPatchParams pp;
    pp.variant = params.variant;
    pp.receivers = receivers;
    pp.positionRole = sp.positionRole;
    pp.senderPositions = params.senderPositions;
    pp.freezeMlps = params.freezeMlps;
    pp.maxBatchRows = params.maxBatchRows;
    const PathPatchResult pr = pathPatchGroups(m, groups, pp, ctx);
    if (stage == 1) {
      r.metricClean = pr.metricClean;
      r.metricCorrupt = pr.metricCorrupt;
    }
    CircuitStage st;
    st.index = stage;
    st.positionRole = sp.positionRole;
    st.receivers = receivers;
    st.effect = pr.effect;
    const double maxAbs = pr.effect.abs().max().item<double>();
    st.score = maxAbs > 0 ? pr.effect / maxAbs : pr.effect.clone();
    st.selected = selectHeads(pr.effect, params.topPercent, params.relThreshold, params.minEffect);
    r.stages.push_back(st);
    // The next stage's receivers: the selected heads at its site.
    receivers.clear();
    if (stage < static_cast<int>(plan.size()) || plan.back().allSites) {
      const StagePlan& next = plan[std::min(static_cast<size_t>(stage), plan.size() - 1)];
      for (const auto& h : st.selected) {
        if (next.allSites)
          for (auto site : {ReceiverSite::Q, ReceiverSite::K, ReceiverSite::V}) receivers.push_back({h, site});
        else
          receivers.push_back({h, next.site});
      }
    }
  }
  collectHeads(r);
  return r;
}

namespace {

nlohmann::json grid(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t l = 0; l < d.size(0); ++l) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t h = 0; h < d.size(1); ++h) row.push_back(d[l][h].item<double>());
    rows.push_back(row);
  }
  return rows;
}

at::Tensor fromGrid(const nlohmann::json& j, int L, int H, const std::string& source) {
  if (!j.is_array() || static_cast<int>(j.size()) != L)
    throw InputError(fmt::format("{}: stage effect must be a [{}][{}] array", source, L, H));
  at::Tensor t = at::zeros({L, H}, at::kFloat);
  for (int l = 0; l < L; ++l) {
    if (!j[l].is_array() || static_cast<int>(j[l].size()) != H)
      throw InputError(fmt::format("{}: stage effect row {} must hold {} numbers", source, l, H));
    for (int h = 0; h < H; ++h) t[l][h] = j[l][h].get<double>();
  }
  return t;
}

nlohmann::json headJson(const HeadRef& h) { return {{"layer", h.layer}, {"head", h.head}}; }

HeadRef headFrom(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("layer") || !j.contains("head"))
    throw InputError(fmt::format("{}: a head must be an object with \"layer\" and \"head\"", source));
  return {j.at("layer").get<int>(), j.at("head").get<int>()};
}

}  // namespace

nlohmann::json toJson(const CircuitResult& r) {
  nlohmann::json j;
  j["analysis"] = "circuit";
  j["task"] = r.task;
  j["n_layers"] = r.nLayers;
  j["n_heads"] = r.nHeads;
  j["metric_clean"] = r.metricClean;
  j["metric_corrupt"] = r.metricCorrupt;
  j["metric"] = "logit_diff";
  j["params"] = {{"top_percent", r.params.topPercent},
                 {"rel_threshold", r.params.relThreshold},
                 {"min_effect", r.params.minEffect},
                 {"variant", r.params.variant == PathVariant::Ioi ? "ioi" : "merullo"},
                 {"freeze_mlps", r.params.freezeMlps},
                 {"max_stages", r.params.maxStages}};
  j["heads"] = nlohmann::json::array();
  for (const auto& h : r.heads)
    j["heads"].push_back({{"layer", h.head.layer}, {"head", h.head.head}, {"name", fmt::format("{}.{}", h.head.layer, h.head.head)},
                          {"stage", h.stage}, {"role", h.role}, {"score", h.score}, {"effect", h.effect}});
  j["stages"] = nlohmann::json::array();
  for (const auto& st : r.stages) {
    nlohmann::json s;
    s["stage"] = st.index;
    s["position_role"] = st.positionRole;
    s["receivers"] = nlohmann::json::array();
    if (st.receivers.empty()) s["receivers"].push_back("logits");
    for (const auto& rc : st.receivers) s["receivers"].push_back(fmt::format("{}.{}.{}", rc.head.layer, rc.head.head, toString(rc.site)));
    s["effect"] = grid(st.effect);
    s["scores"] = grid(st.score);
    s["selected"] = nlohmann::json::array();
    for (const auto& h : st.selected) s["selected"].push_back(headJson(h));
    j["stages"].push_back(s);
  }
  return j;
}

CircuitResult circuitFromJson(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("heads") || !j["heads"].is_array())
    throw InputError(fmt::format("{}: not a circuit JSON (expected an object with a \"heads\" array)", source));
  CircuitResult r;
  try {
    r.task = j.value("task", "");
    r.nLayers = j.value("n_layers", 0);
    r.nHeads = j.value("n_heads", 0);
    r.metricClean = j.value("metric_clean", 0.0);
    r.metricCorrupt = j.value("metric_corrupt", 0.0);
    if (j.contains("params")) {
      const auto& p = j["params"];
      r.params.topPercent = p.value("top_percent", r.params.topPercent);
      r.params.relThreshold = p.value("rel_threshold", r.params.relThreshold);
      r.params.minEffect = p.value("min_effect", r.params.minEffect);
    }
    for (const auto& h : j["heads"]) {
      CircuitHead c;
      c.head = headFrom(h, source);
      c.stage = h.value("stage", 0);
      c.role = h.value("role", "");
      c.score = h.value("score", 0.0);
      c.effect = h.value("effect", 0.0);
      r.heads.push_back(c);
    }
    if (j.contains("stages") && r.nLayers > 0 && r.nHeads > 0) {
      for (const auto& s : j["stages"]) {
        CircuitStage st;
        st.index = s.value("stage", 0);
        st.positionRole = s.value("position_role", "");
        st.effect = fromGrid(s.at("effect"), r.nLayers, r.nHeads, source);
        const double maxAbs = st.effect.abs().max().item<double>();
        st.score = maxAbs > 0 ? st.effect / maxAbs : st.effect.clone();
        for (const auto& h : s.value("selected", nlohmann::json::array())) st.selected.push_back(headFrom(h, source));
        r.stages.push_back(st);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed circuit JSON ({})", source, e.what()));
  }
  return r;
}

}  // namespace mechscope::analysis
