// sinksToResult: the sinks analysis as the documented JSON keys (docs/cli.md) and HDF5 arrays.
#include <ATen/ATen.h>

#include <map>

#include "analysis/sinks/sinks.hpp"

namespace mechscope::analysis {

AnalysisResult sinksToResult(const SinksResult& result, const SinksOptions& options) {
  AnalysisResult r;
  r.name = "sinks";
  r.json["sink_score"] = tensorToJson(result.sinkScore);
  r.json["sink_rate"] = tensorToJson(result.sinkRate);
  nlohmann::json sinks = nlohmann::json::array();
  std::map<std::pair<int, int>, int> levels;
  for (const auto& s : result.sinks) {
    sinks.push_back({{"batch", s.batch}, {"position", s.position}, {"token_id", s.tokenId}, {"creation_layer", s.creationLayer},
                     {"lifetime", s.lifetime}, {"label", s.label}, {"mlp_cosine", s.mlpCosine}, {"mlp_norm", s.mlpNorm},
                     {"layers", s.layers}, {"sink_score", tensorToJson(s.score)}, {"score_layers", s.scoreLayers},
                     {"score_lifetime", s.scoreLifetime}});
    if (s.label == "secondary") ++levels[{s.creationLayer, s.lifetime}];
  }
  r.json["secondary_sinks"] = sinks;
  nlohmann::json lv = nlohmann::json::array();
  for (const auto& [k, count] : levels) lv.push_back({{"creation_layer", k.first}, {"lifetime", k.second}, {"count", count}});
  r.json["sink_levels"] = lv;
  nlohmann::json prim = nlohmann::json::array();
  for (size_t i = 0; i < result.primary.size(); ++i) {
    const auto& p = result.primary[i];
    prim.push_back({{"batch", i}, {"position", p.position}, {"detected", p.detected}, {"candidates", p.candidates},
                    {"candidate_norms", p.candidateNorms}, {"window", {p.windowStart, p.windowEnd}}});
  }
  r.json["primary_sink"] = prim;
  r.json["bos_position"] = options.bosPosition >= 0 ? nlohmann::json(options.bosPosition) : nlohmann::json(nullptr);
  r.json["bos_candidates"] = options.bosCandidates;
  r.json["hidden_states"] = toString(options.hiddenStates);
  r.json["sink_threshold"] = options.sinkThreshold;
  r.json["cosine_threshold"] = options.cosineThreshold;
  r.addArray("sink_score", result.sinkScore);
  r.addArray("sink_rate", result.sinkRate);
  if (result.learnedSinkMass.defined()) {  // gpt-oss: the learned sinks' share of attention
    r.json["learned_sink_mass"] = tensorToJson(result.learnedSinkMass);
    r.addArray("learned_sink_mass", result.learnedSinkMass);
  }
  if (!result.primary.empty()) {
    std::vector<int64_t> flat;
    for (const auto& p : result.primary)
      for (int64_t v : {p.position, static_cast<int64_t>(p.windowStart), static_cast<int64_t>(p.windowEnd)}) flat.push_back(v);
    r.addArray("primary_sink", at::tensor(at::ArrayRef<int64_t>(flat), at::kLong).view({-1, 3}));  // [row, (position, start, end)]
  }
  if (!result.sinks.empty()) {
    std::vector<int64_t> flat;
    std::vector<at::Tensor> scores;
    for (const auto& s : result.sinks) {
      for (int64_t v : {s.batch, s.position, s.tokenId, static_cast<int64_t>(s.creationLayer), static_cast<int64_t>(s.lifetime),
                        static_cast<int64_t>(s.scoreLifetime)})
        flat.push_back(v);
      scores.push_back(s.score);
    }
    // [sink, (batch, position, token, creation, lifetime, score_lifetime)]
    r.addArray("secondary_sinks", at::tensor(at::ArrayRef<int64_t>(flat), at::kLong).view({-1, 6}));
    r.addArray("secondary_sink_score", at::stack(scores));  // [sink, layer, head]
  }
  return r;
}

}  // namespace mechscope::analysis
