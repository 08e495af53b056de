#include "analysis/retrieval/head_control.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

std::vector<HeadRef> randomControlHeads(const at::Tensor& score, const std::vector<HeadRef>& exclude, int k,
                                                    double retrievalThreshold, uint64_t seed) {
  if (score.dim() != 2) throw InputError("retrieval: the head scores are not a [layer][head] grid");
  const at::Tensor s = score.to(at::kDouble).cpu().contiguous();  // [layer, head]
  const std::set<HeadRef> skip(exclude.begin(), exclude.end());
  std::vector<HeadRef> pool;
  const auto* v = s.data_ptr<double>();
  for (int l = 0; l < s.size(0); ++l)
    for (int h = 0; h < s.size(1); ++h)
      if (v[l * s.size(1) + h] <= retrievalThreshold && skip.count({l, h}) == 0) pool.emplace_back(l, h);
  if (k < 0 || static_cast<size_t>(k) > pool.size())
    throw InputError(fmt::format("retrieval: the random-heads control needs {} heads with a score ≤ {} outside the masked set; the model has {}",
                                 k, retrievalThreshold, pool.size()));
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < static_cast<size_t>(k); ++i) {
    const size_t j = i + static_cast<size_t>(rng() % (pool.size() - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(static_cast<size_t>(k));
  std::sort(pool.begin(), pool.end());
  return pool;
}

at::Tensor readRetrievalScores(const std::string& path, const ModelConfig& cfg) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open --scores", path));
  std::vector<std::vector<double>> s;
  try {
    s = nlohmann::json::parse(in).at("retrieval_score").get<std::vector<std::vector<double>>>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: expected a retrieval JSON with \"retrieval_score\" ({})", path, e.what()));
  }
  if (static_cast<int>(s.size()) != cfg.nLayers || s.empty() || static_cast<int>(s[0].size()) != cfg.nHeads)
    throw InputError(fmt::format("{}: retrieval_score is not [{}][{}] for this model", path, cfg.nLayers, cfg.nHeads));
  std::vector<double> flat;
  for (const auto& r : s) flat.insert(flat.end(), r.begin(), r.end());
  return at::tensor(at::ArrayRef<double>(flat), at::kDouble).view({cfg.nLayers, cfg.nHeads}).clone();  // [layer, head]
}

}  // namespace mechscope::analysis
