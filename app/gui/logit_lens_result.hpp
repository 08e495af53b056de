#pragma once
// The `logit-lens` result (analysis/logit_lens, its --json document) as the GUI's layers × positions
// tables: the top-1 token read out at every layer and position, coloured by its probability, and the
// probability of the prompt's next token.
#include <QStringList>

#include <vector>

#include <nlohmann/json.hpp>

#include "views/score_grid_view.hpp"

namespace mechscope::gui {

/// Two grids (rows = "embed" then each layer, columns = the chosen positions labelled by their tokens from
/// `tokens`): the top-1 token (cell text; value = its probability) and the next token's probability.
/// InputError when the document lacks top_ids / top_probs / next_token_prob or their shapes disagree.
std::vector<views::ScoreGridData> logitLensGrids(const nlohmann::json& j, const QStringList& tokens);

}  // namespace mechscope::gui
