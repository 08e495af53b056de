#include "analysis/retrieval/niah_grid.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <tuple>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope::analysis {

void checkNiahGrid(const Tokenizer& tok, const Haystack& haystack, const NiahGrid& grid, int maxNewTokens, int64_t nCtx) {
  if (grid.needles.empty() || grid.lengths.empty() || grid.depths.empty()) throw InputError("retrieval: the grid has no tests");
  const auto [lo, hi] = std::minmax_element(grid.lengths.begin(), grid.lengths.end());
  for (size_t i = 0; i < grid.needles.size(); ++i) {
    try {
      buildNeedleInput(tok, haystack, grid.needles[i], *lo, 50, grid.layout);  // throws when the needle does not fit
      const auto longest = buildNeedleInput(tok, haystack, grid.needles[i], *hi, 50, grid.layout);
      const auto n = static_cast<int64_t>(longest.ids.size());
      if (n + maxNewTokens > nCtx)
        throw InputError(fmt::format("retrieval: context length {} gives {} prompt tokens; with {} new tokens that exceeds the model's context of {}",
                                     *hi, n, maxNewTokens, nCtx));
    } catch (const InputError& e) {
      throw InputError(fmt::format("{} (needle {})", e.what(), i));
    }
  }
}

std::vector<RetrievalTestResult> runNiahGrid(const HookedTransformer& model, const Tokenizer& tok, const Haystack& haystack,
                                             const NiahGrid& grid, const RetrievalDecode& decode, double successThreshold,
                                             RetrievalResumeLog& log, const std::string& condition, const NiahReport& report,
                                             const RunContext* ctx) {
  const auto decodeText = [&tok](const std::vector<int64_t>& ids) { return tok.decode(ids, true); };
  const size_t total = grid.needles.size() * grid.lengths.size() * grid.depths.size();
  std::vector<RetrievalTestResult> out;
  out.reserve(total);
  size_t index = 0;
  for (size_t ni = 0; ni < grid.needles.size(); ++ni)
    for (const int64_t len : grid.lengths)
      for (const int64_t depth : grid.depths) {
        ++index;
        if (const auto* done = log.find(condition, static_cast<int>(ni), len, depth)) {
          out.push_back(*done);
          if (report) report(index, total, out.back(), true);
          continue;
        }
        if (ctx) ctx->check();
        const auto input = buildNeedleInput(tok, haystack, grid.needles[ni], len, static_cast<double>(depth), grid.layout);
        RetrievalTest t;
        t.needleIndex = static_cast<int>(ni);
        t.length = len;
        t.depth = depth;
        t.ids = input.ids;
        t.spanFound = input.span.has_value();
        if (input.span) std::tie(t.needleStart, t.needleEnd) = *input.span;
        t.insertedAt = input.insertedAt;
        t.answer = grid.needles[ni].realNeedle;
        const auto started = std::chrono::steady_clock::now();
        auto r = runRetrievalTest(model, t, decode, decodeText, successThreshold, ctx);
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        log.append(condition, r);
        out.push_back(std::move(r));
        if (report) report(index, total, out.back(), false);
      }
  return out;
}

}  // namespace mechscope::analysis
