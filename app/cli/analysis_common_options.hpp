#pragma once
// Options every analysis command shares (--model, --prompt, --prompt-file, --token-ids, --device,
// --dtype, --out, --json, --materialize), their parsing into token rows, and writing the result.
// Shared by the attention analyses and the causal analyses.
#include <chrono>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/common/head_ref.hpp"
#include "analysis/common/result_io.hpp"
#include "analysis/patching/path_patching.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::cli {

/// The shared options, filled by CLI11.
struct AnalysisCommonOptions {
  std::string model;
  std::vector<std::string> prompts;
  std::string promptFile;
  std::string tokenIds;
  std::string device = "cpu";
  std::string dtype = "fp32";
  std::string out;   ///< FILE.h5
  std::string json;  ///< FILE.json
  bool materialize = false;
  bool noPrependBos = false;
  bool force = false;       ///< --force: run even when the memory estimate says it will not fit (--materialize)
  std::string commandLine;  ///< filled by finishCommandLine()
  std::optional<int64_t> seed;  ///< the command's --seed (given or its default 0), for provenance

  /// Registers the options on `sub` (`inputRequired`: one of prompt/prompt-file/token-ids must be given).
  /// Adds --device, --dtype, --out and --json (commands with their own input options use this alone).
  void addRunAndOutputs(CLI::App* sub);
  void add(CLI::App* sub, bool withMaterialize = true);
  /// Records the command line for provenance (call first in the callback).
  void finishCommandLine(const CLI::App* sub);
  /// Checks what can be checked before loading the model: one input source, --out/--json present
  /// and writable (InputError / UnsupportedError otherwise). `needOutput`: at least one of them.
  void validate(const std::string& command, bool needOutput = true) const;
  /// The output half of validate(): --json and/or --out given, --out only with HDF5, folders exist.
  void validateOutputs(const std::string& command, bool needOutput = true) const;
};

/// A loaded model with its tokenizer (when the folder has tokenizer.json).
struct LoadedModel {
  std::unique_ptr<HookedTransformer> model;
  std::optional<Tokenizer> tokenizer;
  double loadSeconds = 0;                           ///< wall time of loading weights and tokenizer
  double gpuWarmupSeconds = 0;                      ///< CUDA models: one 8-token forward paying the first-call set-up
  std::chrono::steady_clock::time_point loadedAt;  ///< when loading finished (the analysis clock starts)
};

/// Loads --model on --device/--dtype.
LoadedModel loadAnalysisModel(const AnalysisCommonOptions& o);

/// The token rows of the input: each --prompt (or the whole --prompt-file text) encoded with
/// special tokens (BOS as the tokenizer adds it), or the rows of --token-ids (rows may differ in length).
std::vector<std::vector<int64_t>> readInputRows(const AnalysisCommonOptions& o, const LoadedModel& m, const std::string& command);

/// The texts of --prompt / --prompt-file (empty for --token-ids).
std::vector<std::string> inputTexts(const AnalysisCommonOptions& o);

/// Reads a --token-ids file: a JSON array of arrays of integer ids (or one flat array).
std::vector<std::vector<int64_t>> readTokenIdRows(const std::string& path);

/// Writes --json and --out (HDF5 under /analyses/<name>/) and reports them on stderr. Both carry a
/// "provenance" object (model, weights hash, dtype, device, attention path, seed, version, command line).
void writeAnalysisOutputs(const AnalysisCommonOptions& o, const analysis::AnalysisResult& result, const LoadedModel& m,
                          const std::string& attentionPath);

/// A progress sink that prints "command: stage done/total" lines on stderr.
void attachStderrProgress(const std::string& command);

}  // namespace mechscope::cli
