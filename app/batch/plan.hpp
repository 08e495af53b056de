#pragma once
// A batch plan (PLAN.toml): models, inputs and analyses with their parameters. Parsing is pure
// (text in, Plan or PlanError out, no filesystem); file checks are a separate step (checkPlanFiles).
// Reference: docs/batch.md.
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"

namespace mechscope::batch {

/// A position in the plan text (1-based; 0 = unknown).
struct SourcePos {
  int line = 0;
  int column = 0;
};

/// One problem found in a plan: where and what.
struct Diagnostic {
  std::string source;  ///< the plan's name (its path)
  SourcePos pos;
  std::string message;
  /// "plan.toml:12:3: message" (editor-clickable).
  [[nodiscard]] std::string str() const;
};

/// A plan that cannot run; every problem found, each with its line (exit code 2 at the CLI).
class PlanError : public InputError {
 public:
  explicit PlanError(std::vector<Diagnostic> diagnostics);
  /// The problems, in source order.
  [[nodiscard]] const std::vector<Diagnostic>& diagnostics() const { return m_diagnostics; }

 private:
  std::vector<Diagnostic> m_diagnostics;
};

/// [models.ID]: a model folder or "embedded" (the planted model built into mechscope).
struct ModelSpec {
  std::string id;
  std::string path;  ///< as written; "embedded" for the planted model
  std::string device = "cpu";
  std::string dtype = "fp32";
  SourcePos pos;
  [[nodiscard]] bool embedded() const { return path == "embedded"; }
};

/// [inputs.ID]: prompts, token-ids, jsonl, ioi, colored-objects or niah, with the kind's keys in `params`.
struct InputSpec {
  std::string id;
  std::string kind;
  nlohmann::json params = nlohmann::json::object();  ///< the kind's keys (files as written)
  std::map<std::string, SourcePos> paramPos;
  SourcePos pos;
};

/// One [[analysis]] entry: an analysis type with parameters, run on each listed input of each listed model.
struct AnalysisSpec {
  std::string id;    ///< unique; defaults to the type
  std::string type;  ///< sinks, waad-fai, constraint-attention, retrieval, patch, ablate, intervene, circuit, overlap
  std::vector<std::string> inputs;  ///< input ids (none for overlap)
  std::vector<std::string> models;  ///< model ids (default: every model)
  nlohmann::json params = nlohmann::json::object();  ///< the type's parameters (docs/batch.md)
  std::map<std::string, SourcePos> paramPos;
  SourcePos pos;
};

/// [output]: defaults for the output folder and the report.
struct OutputSpec {
  std::string dir;                  ///< default output folder ("" = --out or ./batch-out)
  std::string report = "markdown";  ///< markdown or html
  bool figures = true;
};

/// A parsed plan.
struct Plan {
  std::string source;  ///< name used in diagnostics
  std::string name;
  OutputSpec output;
  std::vector<ModelSpec> models;
  std::vector<InputSpec> inputs;
  std::vector<AnalysisSpec> analyses;

  [[nodiscard]] const ModelSpec* model(const std::string& id) const;
  [[nodiscard]] const InputSpec* input(const std::string& id) const;
  [[nodiscard]] const AnalysisSpec* analysis(const std::string& id) const;
};

/// Parses and checks a plan's text (syntax, keys, types, references between sections). Throws
/// PlanError listing every problem with its line. Touches no file.
Plan parsePlan(std::string_view text, std::string_view sourceName);

/// parsePlan + resolvePlanPaths(baseDir) + checkPlanFiles, every problem of all three in one PlanError.
Plan loadPlan(std::string_view text, std::string_view sourceName, const std::filesystem::path& baseDir);

/// Reads a plan file and loadPlan()s it against the file's folder (PlanError for an unreadable file too).
Plan readPlanFile(const std::filesystem::path& path);

/// Makes every relative file of the plan (model folders, input files) absolute against `baseDir`.
void resolvePlanPaths(Plan& plan, const std::filesystem::path& baseDir);

/// Checks that every file the plan names exists (model folders hold config.json); PlanError otherwise.
void checkPlanFiles(const Plan& plan);

}  // namespace mechscope::batch
