#pragma once
// The retrieval-head detection grid (Wu et al.'s official loop): every needle × context length ×
// depth, built from one tokenized haystack, run with one mask ("condition"), resumable.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/common/analysis_plugin.hpp"
#include "analysis/common/needle.hpp"
#include "analysis/retrieval/resume.hpp"
#include "analysis/retrieval/retrieval.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// The grid's axes and prompt layout.
struct NiahGrid {
  std::vector<Needle> needles;
  std::vector<int64_t> lengths;  ///< requested context lengths (round(linspace(a, b, n)))
  std::vector<int64_t> depths;   ///< depths in percent (round(linspace(0, 100, n)))
  NeedleLayout layout;
};

/// Checks what would fail mid-grid, before anything is run or written: every needle fits in the
/// shortest length, and the longest prompt plus `maxNewTokens` fits in `nCtx`. InputError otherwise.
void checkNiahGrid(const Tokenizer& tok, const Haystack& haystack, const NiahGrid& grid, int maxNewTokens, int64_t nCtx);

/// Called after each test: 1-based index, total, the result and whether it came from the resume file.
using NiahReport = std::function<void(size_t index, size_t total, const RetrievalTestResult& r, bool resumed)>;

/// Runs the grid under `decode` (its mask names `condition` in `log`), reusing finished tests and
/// appending new ones. Tests come back in (needle, length, depth) order.
std::vector<RetrievalTestResult> runNiahGrid(const HookedTransformer& model, const Tokenizer& tok, const Haystack& haystack,
                                             const NiahGrid& grid, const RetrievalDecode& decode, double successThreshold,
                                             RetrievalResumeLog& log, const std::string& condition, const NiahReport& report = {},
                                             const RunContext* ctx = nullptr);

/// The `retrieval` analysis plugin (retrieval_plugin.cpp): the grid above from its parameters, or one
/// prepared test (--token-ids with --needle-span); head masking with the random-heads control.
AnalysisPlugin retrievalPlugin();

}  // namespace mechscope::analysis
