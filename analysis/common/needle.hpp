#pragma once
// Needle-in-a-haystack inputs (docs/metrics.md §1.2, Wu et al.'s official detection code): needles.jsonl,
// the tokenized haystack with its sentence ends, needle insertion at the last sentence end at or
// before a depth, the prompt (context + question), and the answer span (find_needle_idx).
// Sentence ends come from each token's decoded text, never from guessed ids, so placement works for
// byte-level BPE, SentencePiece with byte fallback and tiktoken-style tokenizers alike.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
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

/// Whether a token's decoded text ends a sentence: its last character that is not a space, tab,
/// CR or LF is '.' (".", " .", ".\n", "..." do; ".)", "\"" and "e" do not).
bool endsSentence(std::string_view decodedToken);

/// InputError (one line naming `what`) when `tok` cannot decode to text (no decoder, and byte-level
/// or metaspace tokens): needle placement and the newline stop read decoded text.
void requireDecoder(const Tokenizer& tok, const std::string& what);

/// A tokenized haystack: ids (no special tokens) and, per id, whether its decoded text ends a sentence.
struct Haystack {
  std::vector<int64_t> ids;        ///< [n_tokens]
  std::vector<char> sentenceEnd;   ///< [n_tokens] 1 where endsSentence(decode({id}))
};

/// Tokenizes `text` and marks sentence ends. InputError when the tokenizer has no decoder or the
/// text encodes to no tokens.
Haystack tokenizeHaystack(const Tokenizer& tok, const std::string& text);

/// One prepared test prompt.
struct NeedleInput {
  std::vector<int64_t> ids;  ///< the whole prompt (special tokens, context with the needle, question)
  std::optional<std::pair<int64_t, int64_t>> span;  ///< answer span [start, end) in ids; nullopt: not found (the test scores 0)
  int64_t insertedAt = 0;        ///< first prompt token of the inserted needle
  int64_t insertionToken = 0;    ///< insertion point in the context's haystack tokens (after the move back)
  int64_t contextTokens = 0;     ///< haystack tokens in the context (length − buffer − needle tokens)
  bool haystackRepeated = false; ///< the context needed more tokens than the haystack has (it wraps around)
};

/// Settings of prompt building.
struct NeedleLayout {
  int64_t buffer = 200;          ///< tokens kept free for the question (context = length − buffer)
  bool addSpecialTokens = true;  ///< the prompt is encoded with the post-processor's special tokens (BOS)
  std::string questionTemplate = "Based on the content of the book, Question: {question}\nAnswer:";
  double spanThreshold = 0.9;    ///< find_needle_idx's token-set overlap threshold
};

/// Builds the prompt for `contextLength` tokens at `depthPercent` (0..100), as the official code:
/// the first (length − buffer − |needle|) haystack tokens (wrapping around when the haystack is
/// short), the insertion point int(n × depth / 100) moved back to just after the last sentence-final
/// token (to 0 when none; depth 100 appends), the text decode(context[:i]) + needle + rest + question
/// encoded once more, and the answer span searched in it. InputError when the needle does not fit.
NeedleInput buildNeedleInput(const Tokenizer& tok, const Haystack& haystack, const Needle& needle, int64_t contextLength,
                             double depthPercent, const NeedleLayout& layout);

/// find_needle_idx: the first window of |answer| tokens whose token-set overlap with the answer's
/// set exceeds `threshold`; nullopt when none.
std::optional<std::pair<int64_t, int64_t>> findNeedleSpan(const std::vector<int64_t>& ids, const std::vector<int64_t>& answer,
                                                          double threshold = 0.9);

}  // namespace mechscope::analysis
