#include "app/gui/logit_lens_result.hpp"

#include <cmath>
#include <string>

#include "core/common/errors.hpp"

namespace mechscope::gui {

std::vector<views::ScoreGridData> logitLensGrids(const nlohmann::json& j, const QStringList& tokens) {
  const nlohmann::json &ids = j.at("top_ids"), &probs = j.at("top_probs"), &next = j.at("next_token_prob");  // [rows][pos][k], …, [rows][pos]
  const int rows = static_cast<int>(ids.size()), cols = rows > 0 ? static_cast<int>(ids[0].size()) : 0;
  if (probs.size() != ids.size() || next.size() != ids.size())
    throw InputError("logit-lens result: top_ids, top_probs and next_token_prob have different numbers of rows");
  views::ScoreGridData top, nextProb;
  for (views::ScoreGridData* g : {&top, &nextProb}) {
    g->layers = rows;
    g->heads = cols;
    g->rowAxis = "layer (residual after it)";
    g->columnAxis = "position (its token)";
    for (const auto& l : j.value("layers", nlohmann::json::array())) g->rowLabels << QString::fromStdString(l.get<std::string>());
    const auto positions = j.value("positions", nlohmann::json::array());
    for (int c = 0; c < cols; ++c) {
      const int64_t p = c < static_cast<int>(positions.size()) ? positions[c].get<int64_t>() : c;
      g->columnLabels << (p >= 0 && p < tokens.size() ? tokens[static_cast<int>(p)] : QString::number(p));
    }
    if (g->rowLabels.size() != rows) g->rowLabels.clear();
  }
  const bool words = j.contains("top_tokens");
  for (int r = 0; r < rows; ++r) {
    if (static_cast<int>(ids[r].size()) != cols || static_cast<int>(probs[r].size()) != cols || static_cast<int>(next[r].size()) != cols)
      throw InputError("logit-lens result: row " + std::to_string(r) + " has a different number of positions");
    for (int c = 0; c < cols; ++c) {
      top.scores.push_back(probs[r][c].at(0).get<double>());
      top.cellLabels << (words ? QString::fromStdString(j["top_tokens"][r][c].at(0).get<std::string>())
                               : QString::number(ids[r][c].at(0).get<int64_t>()));
      nextProb.scores.push_back(next[r][c].is_number() ? next[r][c].get<double>() : NAN);
    }
  }
  top.title = "Logit lens: the top token at every layer and position (colour: its probability)";
  top.valueLabel = "top-1 probability";
  nextProb.title = "Logit lens: probability of the prompt's next token";
  nextProb.valueLabel = "p(next token)";
  return {top, nextProb};
}

}  // namespace mechscope::gui
