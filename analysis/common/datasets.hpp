#pragma once
// Datasets of the causal analyses: IOI (docs/metrics.md §3.1) and Colored Objects (§4.2) generated with a
// seed for a real tokenizer, and JSONL files (one prompt pair per line) so users can supply their own.
// JSONL line: {"clean": TEXT | "clean_ids": [ids], "corrupted": TEXT | "corrupted_ids": [ids],
//              "answer": TEXT | id, "incorrect": TEXT | id, "template": int (optional),
//              "positions": {"ROLE": position, ...} (optional)}.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "analysis/patching/patch_types.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

/// One clean/corrupted prompt pair with its answer pair (texts, ids, or both).
struct CausalPrompt {
  std::string clean, corrupted;                   ///< texts (may be empty when ids are given)
  std::vector<int64_t> cleanIds, corruptedIds;    ///< token ids (filled by tokenizeDataset when empty)
  std::string answer, incorrect;                  ///< answer texts, e.g. " Mary" (may be empty when ids are given)
  int64_t answerId = -1, incorrectId = -1;        ///< answer token ids
  int templateId = -1;                            ///< group for per-template means (-1: none)
  /// Token positions of named roles in the clean prompt (the corrupted one shares them: equal lengths).
  /// IOI: "IO", "S1", "S1+1", "S2", "END"; Colored Objects: "ANSWER" (the queried object's colour in the
  /// query), "INCORRECT1", "INCORRECT2" (the query's other two colours), "OBJ1" (the asked object in the
  /// query's list, last token), "OBJ1+1", "OBJ2" (the asked object in the question), "END". They index cleanIds once
  /// tokenized; before that (cleanIds empty) they index encode(clean), and tokenizeDataset shifts them
  /// by one when it prepends BOS.
  std::map<std::string, int64_t> positions;
};

/// A dataset and what the generator dropped.
struct CausalDataset {
  std::string task;  ///< "ioi", "colored-objects" or the JSONL file name
  std::vector<CausalPrompt> prompts;
  std::vector<std::string> droppedWords;  ///< names/colours that are not one token in the tokenizer
};

/// IOI corruption (docs/metrics.md §3.1, §4.4).
enum class IoiCorruption {
  Abc,   ///< p_ABC: IO, S1 and S2 replaced by three other names (Wang et al.)
  S2Io   ///< S2 replaced by IO (Merullo et al.)
};

/// Options of the IOI generator.
struct IoiOptions {
  int n = 100;
  uint64_t seed = 0;
  IoiCorruption corruption = IoiCorruption::Abc;
  std::string order = "mixed";  ///< "mixed" (BABA[:k] + ABBA[:k]), "baba" or "abba"
  int nTemplates = 15;          ///< templates per order (mixed uses min(n, 7) of each, as Easy-Transformer)
};

/// Options of the Colored Objects generator (1 shot, 3 objects per example, mindiff corruption).
struct ColoredObjectsOptions {
  int n = 100;
  uint64_t seed = 0;
};

/// The 15 BABA IOI templates ([B] = S, [A] = IO; ABBA swaps the first two names).
const std::vector<std::string>& ioiTemplates();
/// First names used by the IOI generator (each used as " Name").
const std::vector<std::string>& ioiNames();

/// Generates IOI prompts with their role positions; names that are not single tokens (with a leading
/// space) are dropped and listed.
CausalDataset ioiDataset(const Tokenizer& tok, const IoiOptions& opts);
/// Generates Colored Objects prompts (8 colours, 17 objects, 3 surfaces); multi-token colours are dropped.
/// Answers are " " + the lower-case colour, the very token of that colour word in the prompt, so answer ids
/// occur in the prompt ids (Merullo et al.'s released data answers in title case, " Black", a token that
/// is not in the prompt; docs/causal-protocols.md says why we differ).
CausalDataset coloredObjectsDataset(const Tokenizer& tok, const ColoredObjectsOptions& opts);

/// Writes one JSON object per prompt (texts and ids when known).
void writeJsonl(const CausalDataset& ds, const std::filesystem::path& path);
/// Reads a JSONL dataset; InputError names the file and the line.
CausalDataset readJsonl(const std::filesystem::path& path);

/// Fills missing ids from texts (BOS prepended when `bos` is given and the encoding lacks it; answers
/// must encode to exactly one token) and checks role positions lie inside the clean ids. InputError
/// names the prompt when something does not fit.
void tokenizeDataset(CausalDataset& ds, const Tokenizer* tok, std::optional<int64_t> bos);

/// Every usable prompt (clean and corrupted ids of equal length, both answer ids known) as patch inputs,
/// one group per token length in ascending length order; `dropped` counts the unusable prompts. Every
/// causal command runs each group as one batch and combines the groups (analysis/patching/patch_groups.hpp).
std::vector<PatchGroup> toPatchGroups(const CausalDataset& ds, int* dropped = nullptr);

/// The position of `role` for every row of `group` ([batch] int64); InputError when a prompt lacks it.
at::Tensor rolePositions(const CausalDataset& ds, const PatchGroup& group, const std::string& role);

/// Where the prompts of a causal command come from: a task name ("ioi", "colored-objects": generated
/// with the model's tokenizer), a JSONL file, or clean/corrupted id rows with one answer pair.
struct CausalSource {
  std::string task;                                  ///< "ioi", "colored-objects", FILE.jsonl, or empty
  std::vector<std::vector<int64_t>> cleanIds, corruptIds;  ///< --clean-ids / --corrupt-ids rows
  std::vector<int64_t> answerIds;                    ///< --answer-ids CORRECT,INCORRECT (with id rows)
  int n = 100;
  uint64_t seed = 0;
  IoiCorruption ioiCorruption = IoiCorruption::Abc;
};

/// Loads or generates the dataset of `src` and tokenizes it; InputError names what is missing.
CausalDataset loadCausalDataset(const CausalSource& src, const Tokenizer* tok, std::optional<int64_t> bos);

}  // namespace mechscope::analysis
