#pragma once
// ROUGE-1 recall as the retrieval-heads success filter uses it (rouge_score's recall × 100 ≈ ours ×
// 100): lower-cased, split into runs of [a-z0-9] (other characters separate tokens, as rouge_score's
// tokenizer), each token passed through a light suffix stemmer, clipped unigram overlap / reference count.
#include <string>
#include <vector>

namespace mechscope::analysis {

/// Tokens as the ROUGE tokenizer sees them: lower-cased ASCII alphanumeric runs, stemmed when `stem`.
std::vector<std::string> rougeTokens(const std::string& text, bool stem = true);

/// A light Porter-like stemmer (documented in docs/cli.md): for words longer than 3 letters, strips
/// one of "ies"→"i", "sses"→"ss", "ing", "ed", "ly", "es", "s" (not "ss"); not the full Porter algorithm.
std::string lightStem(const std::string& word);

/// ROUGE-1 recall in [0, 1]: Σ_w min(count_ref(w), count_cand(w)) / |ref tokens| (0 for an empty reference).
double rouge1Recall(const std::string& reference, const std::string& candidate, bool stem = true);

}  // namespace mechscope::analysis
