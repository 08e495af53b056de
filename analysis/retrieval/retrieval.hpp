#pragma once
// Retrieval heads (docs/metrics.md §1, §10): greedy decoding of needle-in-a-haystack prompts with the
// official per-step rule (argmax key of each head's current row inside the needle span and holding
// the emitted token ⇒ score += 1/|span|), ROUGE-1 recall success filter, activation frequency, and
// head masking (uniform attention) for the causal check. The prefill never holds a pattern: the
// last row's argmax comes from the probe; decode rows are [head, 1, keys].
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/head_ref.hpp"
#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"
#include "core/model/hooked_transformer.hpp"

namespace mechscope::analysis {

/// One prepared detection test.
struct RetrievalTest {
  int needleIndex = 0;      ///< index into the needles file (−1: single-test mode)
  int64_t length = 0;       ///< requested context length
  int64_t depth = 0;        ///< depth in percent
  std::vector<int64_t> ids; ///< prompt ids
  int64_t needleStart = 0, needleEnd = 0;  ///< answer span [start, end) in ids (ignored when !spanFound)
  bool spanFound = true;                   ///< false: find_needle_idx found no span; the test scores 0 (official)
  int64_t insertedAt = -1;                 ///< first prompt token of the inserted needle (−1: not a built prompt)
  std::optional<std::string> answer;       ///< real_needle text for ROUGE (none: no ROUGE)
};

/// Decoding and scoring settings.
struct RetrievalDecode {
  int maxNewTokens = 50;
  std::vector<int64_t> stopTokens;  ///< stop after emitting one of these ids
  bool stopOnNewline = false;       ///< stop once the decoded continuation holds '\n' (official; needs decodeText)
  std::vector<HeadRef> maskedHeads;  ///< uniform attention on these (layer, head)
  bool materialize = false;  ///< prefill through hook_pattern instead of the probe
};

/// The outcome of one test.
struct RetrievalTestResult {
  int needleIndex = 0;
  int64_t length = 0, depth = 0, nTokens = 0;
  int64_t needleStart = 0, needleEnd = 0;
  bool spanFound = true;      ///< false: no answer span, score is 0
  int64_t insertedAt = -1;    ///< first prompt token of the needle (−1: unknown)
  std::string stopReason;     ///< "newline", "stop_token" or "max_new_tokens"
  std::vector<int64_t> generated;
  std::optional<double> rouge1;  ///< recall in [0, 1] when an answer text and a tokenizer were given
  bool success = true;
  at::Tensor score;   ///< [layer, head] fp64: this test's retrieval score
  at::Tensor argmax;  ///< [step, layer, head] int64: argmax key of each head at each step
  std::string promptHash;  ///< FNV-1a 64 of the prompt ids joined by ',' (hex): identifies the prompt across tools
  double seconds = -1.0;   ///< wall time of the test (the resume sidecar records it; −1: not measured)
};

/// Runs one test: prefill, greedy decode, per-step rule. `decodeText` (may be empty) turns generated
/// ids into text for ROUGE and the newline stop; success = rouge1 > threshold (true when no ROUGE is
/// computed). A test without an answer span (!spanFound) still decodes (for ROUGE) and scores 0.
RetrievalTestResult runRetrievalTest(const HookedTransformer& model, const RetrievalTest& test, const RetrievalDecode& decode,
                                     const std::function<std::string(const std::vector<int64_t>&)>& decodeText = {},
                                     double successThreshold = 0.5, const RunContext* ctx = nullptr);

/// Per-test record (for --json "tests" and the resume sidecar; `withScores` adds the [L][H] scores).
nlohmann::json retrievalTestToJson(const RetrievalTestResult& r, bool withScores);
/// Parses a record written with scores; InputError when malformed.
RetrievalTestResult retrievalTestFromJson(const nlohmann::json& j);

/// Aggregates: retrieval_score = mean test score, activation_frequency = fraction of tests with a
/// score > 0, over successful tests (all tests when !successFilter).
AnalysisResult retrievalToResult(const std::vector<RetrievalTestResult>& tests, int nLayers, int nHeads, bool successFilter);

/// Heads ranked by score (descending; ties by layer, head): the top `k` (all when k ≤ 0).
std::vector<HeadRef> rankHeads(const at::Tensor& score, int k);

}  // namespace mechscope::analysis
