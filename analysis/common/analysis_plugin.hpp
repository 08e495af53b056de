#pragma once
// One analysis in the one shape every front end derives from (issue #21): its descriptor (registry.hpp:
// name, summary, input kinds, parameter table with docs, defaults and ranges, figure and headline keys)
// and a Qt-free run from prepared inputs and parameter values to the result (the --json document and
// HDF5 arrays). From it:
//   - mechscope-cli builds the subcommand, its options and --help (app/cli/plugin_commands.cpp);
//   - the GUI builds the form and the adapter (app/gui/plugin_adapter.cpp);
//   - the batch planner validates plan keys and builds command lines (through analysisRegistry());
//   - `list`, the demo and the batch summary's headline read the descriptor.
// Adding an analysis: its folder analysis/<name>/ with a function returning its AnalysisPlugin, and one
// line in analysis/plugins.cpp (or, in a test or an example, one RegisterAnalysisPlugin object).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "analysis/common/param_values.hpp"
#include "analysis/common/registry.hpp"
#include "analysis/common/result_io.hpp"
#include "core/common/run_context.hpp"

namespace mechscope {
class HookedTransformer;
class Tokenizer;
}  // namespace mechscope

namespace mechscope::analysis {

struct CausalDataset;

/// What an analysis runs on; the front end prepares it from its own inputs (CLI options, the GUI's
/// prompt or dataset field, a batch item's files) so the analysis never parses them itself.
enum class PluginInput {
  TokenRows,  ///< one row of token ids per prompt (--prompt, --prompt-file, --token-ids; the GUI's prompt)
  Dataset,    ///< clean/corrupted prompt pairs with answers and roles (--dataset ioi|colored-objects|FILE.jsonl)
  NiahGrid,   ///< the model and its tokenizer: the analysis builds its own needle-in-a-haystack prompts from its
              ///< parameters (--needles, --haystack, --lengths, ...), or runs on one prepared row (--token-ids)
  Files,      ///< no model: the result files named by the descriptor's inputFiles (positional CLI arguments,
              ///< the GUI's file fields, in batch plans "ANALYSIS@INPUT" references to results of inputFilesFrom)
};

/// The prepared inputs of one run.
struct PluginInputs {
  const HookedTransformer* model = nullptr;
  const Tokenizer* tokenizer = nullptr;          ///< null when the model folder has no tokenizer.json
  std::vector<std::vector<int64_t>> rows;        ///< TokenRows: the prompts' ids (rows may differ in length)
  std::vector<std::string> texts;                ///< TokenRows: the prompts' texts when given as text (empty for token ids)
  bool addSpecialTokens = true;                  ///< how `rows` were encoded from `texts` (false: --no-prepend-bos)
  const CausalDataset* dataset = nullptr;        ///< Dataset: the prompt set
  uint64_t seed = 0;                             ///< Dataset: --seed, the generator's and the analysis' random draws
  std::vector<std::string> files{};              ///< Files: the input files' paths (inputFiles order; names in messages)
  std::vector<nlohmann::json> documents{};       ///< Files: a non-null entry is that input already read (the GUI's workspace results)
  std::string modelFolder{};                     ///< the model folder as given ("" when unknown)
  std::string device{}, dtype{};                 ///< --device / --dtype as given (the GUI: its session's)
  std::string outputPath{};                      ///< where the result goes (--json, else --out; "" = nowhere); sidecars go next to it
  std::function<void(const std::string&)> note{};  ///< a line for the user (the CLI: "<name>: <line>" on stderr); may be empty
};

/// Runs the analysis; throws InputError for parameters or inputs it cannot use.
using PluginRun = std::function<AnalysisResult(const PluginInputs& in, const ParamValues& params, const RunContext* ctx)>;

/// One analysis: its table entry and its run.
struct AnalysisPlugin {
  AnalysisDescriptor descriptor;  ///< `plugin` is set on registration
  PluginInput input = PluginInput::TokenRows;
  PluginRun run;
  std::string attentionPath = "materialized";  ///< provenance: how attention was read ("probe" or "materialized")
};

/// A plugin with its identity filled in: name, GUI title, one-line summary, input and run; the batch input
/// kinds follow from the input (token rows: prompts, token-ids and the datasets' clean prompts; dataset:
/// jsonl, ioi, colored-objects; NIAH grid: niah and token-ids; files: none, they come from other items). The
/// caller adds the parameter table and the figure / line / headline keys.
AnalysisPlugin makePlugin(std::string name, std::string title, std::string summary, PluginInput input, PluginRun run);

/// Every plugin: analysis/plugins.cpp's list, then those registered at run time, in registration order.
const std::vector<AnalysisPlugin>& analysisPlugins();
/// The plugin of that name, or nullptr.
const AnalysisPlugin* findPlugin(std::string_view name);
/// Registers a plugin (its descriptor joins analysisRegistry()); replaces one of the same name.
void registerAnalysisPlugin(AnalysisPlugin plugin);
/// Registers the built-in plugins (analysis/plugins.cpp). Idempotent; the CLI, the GUI and tests call it first.
void installAnalysisPlugins();

/// Static registration for tests and examples: `static const RegisterAnalysisPlugin reg{myPlugin()};`
struct RegisterAnalysisPlugin {
  explicit RegisterAnalysisPlugin(AnalysisPlugin plugin) { registerAnalysisPlugin(std::move(plugin)); }
};

/// The one-line headline of a plugin's result: its own summaryLine when it wrote one, else its headline
/// keys, then the largest cell of each [layer][head] figure key ("name: k=v, ...; top sink_score 0.1
/// 0.98"). Used by the CLI and the demo.
std::string pluginHeadline(const AnalysisDescriptor& d, const AnalysisResult& r);

}  // namespace mechscope::analysis
