#pragma once
// Prompts for the planted model's tasks, written in its vocabulary: IOI-like, Colored-Objects-like,
// needle retrieval, and text that exercises only the "idle" patterns (for the local/global split).
#include <cstdint>
#include <string>
#include <vector>

namespace mechscope::planted {

/// One task prompt: its words (BOS not included), the correct and the contrast answer, and the
/// corrupted twin used for patching (same length).
struct TaskPrompt {
  std::vector<std::string> words;
  std::string answer;     ///< correct next word
  std::string incorrect;  ///< contrast word for the logit difference (S for IOI, another colour for CO)
  std::vector<std::string> corrupted;  ///< IOI: p_ABC-style names; CO: a different query object
  int templateId = 0;
};

/// IOI-like prompts ("When A and B were at the store , B gave a ring to" → A), BABA and ABBA orders.
std::vector<TaskPrompt> ioiPrompts(int n, uint64_t seed);
/// Colored-Objects-like prompts ("On the table I see a red pen , … . The cup is" → the cup's colour).
std::vector<TaskPrompt> coloredObjectsPrompts(int n, uint64_t seed);

/// A needle-in-a-haystack prompt: filler words with the needle inserted at `depth` (0..1), ending
/// with the needle's first word so the model continues it.
struct NeedlePrompt {
  std::vector<std::string> words;
  int64_t needleStart = 0;  ///< position (BOS = 0) of the needle's first word
  int64_t needleEnd = 0;    ///< one past its last word
  std::vector<std::string> answer;  ///< the words the model should generate
};
NeedlePrompt needlePrompt(int haystackWords, double depth, uint64_t seed);

/// Words with no repeats, names, colours or delimiter: every planted head shows its idle pattern.
std::vector<std::string> idleText();

/// Token ids (with BOS first) of a word list.
std::vector<int64_t> toIds(const std::vector<std::string>& words);

}  // namespace mechscope::planted
