#pragma once
// Needle-in-a-haystack inputs (METRICS.md §1.2): needles.jsonl, the haystack repeated to length,
// sentence-boundary insertion at a depth, the prompt, and the needle span (find_needle_idx).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

/// One needle: the inserted sentence, the question and the answer span used as k (`real_needle`).
struct Needle {
  std::string needle;
  std::string question;
  std::string realNeedle;
};

/// Reads a JSONL file of {"needle", "question", "real_needle"} objects; InputError names line and key.
std::vector<Needle> readNeedles(const std::filesystem::path& path);

/// round(linspace(start, end, count)) as the official code (numpy rounding: half to even).
std::vector<int64_t> roundedLinspace(double start, double end, int count);

/// One prepared test prompt.
struct NeedleInput {
  std::vector<int64_t> ids;      ///< the whole prompt
  int64_t needleStart = 0;       ///< answer span [start, end) in ids
  int64_t needleEnd = 0;
  int64_t insertedAt = 0;        ///< where the needle's tokens start
  bool spanFromInsertion = false;  ///< true when find_needle_idx found no window (span = inserted needle)
};

/// Settings of prompt building.
struct NeedleLayout {
  int64_t buffer = 200;  ///< tokens kept free for the question (context = length − buffer)
  std::vector<int64_t> periodIds;  ///< sentence-final tokens (insertion moves back to just after one)
  std::vector<int64_t> prefixIds;  ///< e.g. BOS
  std::string questionTemplate = "Based on the content of the book, Question: {question}\nAnswer:";
};

/// The sentence-final token ids of a tokenizer: every token that encodes exactly "." (and " .").
std::vector<int64_t> periodTokenIds(const Tokenizer& tok);

/// Builds the prompt for `contextLength` tokens at `depthPercent` (0..100) from tokenized haystack
/// `haystack` (repeated when short). InputError when the haystack is empty.
NeedleInput buildNeedleInput(const Tokenizer& tok, const std::vector<int64_t>& haystack, const Needle& needle, int64_t contextLength,
                             double depthPercent, const NeedleLayout& layout);

/// find_needle_idx: the first window of |answer| tokens whose token-set overlap with the answer's
/// set exceeds `threshold`; nullopt when none.
std::optional<std::pair<int64_t, int64_t>> findNeedleSpan(const std::vector<int64_t>& ids, const std::vector<int64_t>& answer,
                                                          double threshold = 0.9);

}  // namespace mechscope::analysis
