#pragma once
// Helpers of the edge-attribution tests (test_eap.cpp, test_edge_patching.cpp).
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/common/datasets.hpp"

namespace mechscope::test {

/// The prompt pairs of an EAP reference file (scripts/reference/eap_ref.py: "prompts" with clean_ids,
/// corrupted_ids, answer_id, incorrect_id) as a dataset.
inline analysis::CausalDataset eapDatasetOf(const nlohmann::json& ref) {
  analysis::CausalDataset ds;
  ds.task = "eap-reference";
  for (const auto& p : ref["prompts"]) {
    analysis::CausalPrompt cp;
    cp.cleanIds = p["clean_ids"].get<std::vector<int64_t>>();
    cp.corruptedIds = p["corrupted_ids"].get<std::vector<int64_t>>();
    cp.answerId = p["answer_id"].get<int64_t>();
    cp.incorrectId = p["incorrect_id"].get<int64_t>();
    ds.prompts.push_back(std::move(cp));
  }
  return ds;
}

}  // namespace mechscope::test
