#include "app/batch/plan.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "app/batch/analysis_table.hpp"

namespace mechscope::batch {
namespace fs = std::filesystem;
using nlohmann::json;

std::string Diagnostic::str() const {
  if (pos.line <= 0) return fmt::format("{}: {}", source, message);
  return fmt::format("{}:{}:{}: {}", source, pos.line, pos.column, message);
}

namespace {
std::string joinDiagnostics(const std::vector<Diagnostic>& ds) {
  std::string s = fmt::format("the plan has {} error{}:", ds.size(), ds.size() == 1 ? "" : "s");
  for (const auto& d : ds) s += "\n  " + d.str();
  return s;
}
}  // namespace

PlanError::PlanError(std::vector<Diagnostic> diagnostics)
    : InputError(joinDiagnostics(diagnostics)), m_diagnostics(std::move(diagnostics)) {}

const ModelSpec* Plan::model(const std::string& id) const {
  for (const auto& m : models)
    if (m.id == id) return &m;
  return nullptr;
}
const InputSpec* Plan::input(const std::string& id) const {
  for (const auto& i : inputs)
    if (i.id == id) return &i;
  return nullptr;
}
const AnalysisSpec* Plan::analysis(const std::string& id) const {
  for (const auto& a : analyses)
    if (a.id == id) return &a;
  return nullptr;
}

namespace {

SourcePos posOf(const toml::source_region& r) { return {static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)}; }

std::string typeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date/time";
  }
}

std::string knownKeys(const std::vector<ParamInfo>& params, std::initializer_list<const char*> extra) {
  std::vector<std::string> keys(extra.begin(), extra.end());
  for (const auto& p : params) keys.push_back(p.key);
  return fmt::format("{}", fmt::join(keys, ", "));
}

const std::regex kIdRe("[A-Za-z0-9_][A-Za-z0-9_.-]*");
const std::regex kRangeRe("-?[0-9]+:-?[0-9]+");
const std::regex kHeadRe("[0-9]+\\.[0-9]+(@[A-Za-z0-9_+]+)?");  // LAYER.HEAD, optionally @ROLE (ablate)
const std::regex kIntListRe("-?[0-9]+(,-?[0-9]+)*");

/// Collects diagnostics while walking the TOML tree.
class Parser {
 public:
  explicit Parser(std::string source) : m_source(std::move(source)) {}

  void error(SourcePos pos, std::string message) { m_errors.push_back({m_source, pos, std::move(message)}); }
  void error(const toml::node& n, std::string message) { error(posOf(n.source()), std::move(message)); }

  std::vector<Diagnostic>& errors() { return m_errors; }

  std::optional<std::string> string(const toml::node& n, const std::string& what) {
    if (const auto* s = n.as_string()) return s->get();
    error(n, fmt::format("{} must be a string, found {}", what, typeName(n)));
    return std::nullopt;
  }

  /// A string or an array of strings.
  std::optional<std::vector<std::string>> strings(const toml::node& n, const std::string& what) {
    if (const auto* s = n.as_string()) return std::vector<std::string>{s->get()};
    if (const auto* a = n.as_array()) {
      std::vector<std::string> out;
      bool ok = true;
      for (const auto& el : *a) {
        if (const auto* s = el.as_string()) out.push_back(s->get());
        else {
          error(el, fmt::format("{}: every element must be a string, found {}", what, typeName(el)));
          ok = false;
        }
      }
      if (ok) return out;
      return std::nullopt;
    }
    error(n, fmt::format("{} must be a string or an array of strings, found {}", what, typeName(n)));
    return std::nullopt;
  }

  void checkId(const std::string& id, SourcePos pos, const std::string& what) {
    if (!std::regex_match(id, kIdRe))
      error(pos, fmt::format("{} '{}' must be letters, digits, '_', '-' or '.' (not starting with '.' or '-')", what, id));
  }

  /// Converts one value to the normalised JSON of its ParamType (nullopt + diagnostic when it does not fit).
  std::optional<json> value(const toml::node& n, const ParamInfo& info, const std::string& what) {
    auto bad = [&](const std::string& extra = "") -> std::optional<json> {
      error(n, fmt::format("{} must be {}, found {}{}", what, describe(info.type), typeName(n), extra));
      return std::nullopt;
    };
    switch (info.type) {
      case ParamType::Int:
        if (const auto* v = n.as_integer()) return json(v->get());
        return bad();
      case ParamType::Float:
        if (const auto* v = n.as_integer()) return json(static_cast<double>(v->get()));
        if (const auto* v = n.as_floating_point()) return json(v->get());
        return bad();
      case ParamType::Bool:
        if (const auto* v = n.as_boolean()) return json(v->get());
        return bad();
      case ParamType::String:
      case ParamType::File:
        if (const auto* v = n.as_string()) {
          if (info.type == ParamType::File && v->get().empty()) return bad(" (empty)");
          return json(v->get());
        }
        return bad();
      case ParamType::Choice:
        if (const auto* v = n.as_string()) {
          if (std::find(info.choices.begin(), info.choices.end(), v->get()) != info.choices.end()) return json(v->get());
          error(n, fmt::format("{} must be one of {}, found '{}'", what, fmt::join(info.choices, ", "), v->get()));
          return std::nullopt;
        }
        return bad();
      case ParamType::Range:
        if (const auto* v = n.as_string()) {
          if (std::regex_match(v->get(), kRangeRe)) return json(v->get());
          return bad(fmt::format(" '{}'", v->get()));
        }
        return bad();
      case ParamType::RangeList:
      case ParamType::StringList: {
        auto list = strings(n, what);
        if (!list) return std::nullopt;
        if (info.type == ParamType::RangeList)
          for (const auto& r : *list)
            if (!std::regex_match(r, kRangeRe)) return bad(fmt::format(" '{}'", r));
        return json(*list);
      }
      case ParamType::HeadList: {
        auto list = strings(n, what);
        if (!list) return std::nullopt;
        std::vector<std::string> heads;
        for (const auto& item : *list) {
          std::stringstream ss(item);
          for (std::string h; std::getline(ss, h, ',');) {
            if (!std::regex_match(h, kHeadRe)) return bad(fmt::format(" ('{}' is not LAYER.HEAD)", h));
            heads.push_back(h);
          }
        }
        if (heads.empty()) return bad(" (no heads)");
        return json(fmt::format("{}", fmt::join(heads, ",")));
      }
      case ParamType::IntList: {
        if (const auto* v = n.as_integer()) return json(std::to_string(v->get()));
        if (const auto* v = n.as_string()) {
          if (std::regex_match(v->get(), kIntListRe)) return json(v->get());
          return bad(fmt::format(" '{}'", v->get()));
        }
        if (const auto* a = n.as_array()) {
          std::vector<std::string> out;
          for (const auto& el : *a) {
            if (const auto* i = el.as_integer()) out.push_back(std::to_string(i->get()));
            else return bad(" (an element is not an integer)");
          }
          if (out.empty()) return bad(" (empty)");
          return json(fmt::format("{}", fmt::join(out, ",")));
        }
        return bad();
      }
    }
    return bad();
  }

  /// Reads the keys of `table` that are parameters (skipping `reserved`) into params/paramPos.
  void params(const toml::table& table, const std::vector<ParamInfo>& infos, const std::set<std::string>& reserved,
              const std::string& owner, json& out, std::map<std::string, SourcePos>& positions,
              std::initializer_list<const char*> reservedForHelp) {
    for (const auto& [k, v] : table) {
      const std::string key(k.str());
      if (reserved.count(key)) continue;
      const ParamInfo* info = findParam(infos, key);
      if (!info) {
        error(posOf(k.source()), fmt::format("unknown key '{}' in {} (known: {})", key, owner, knownKeys(infos, reservedForHelp)));
        continue;
      }
      if (auto val = value(v, *info, fmt::format("{}: '{}'", owner, key))) {
        out[key] = *val;
        positions[key] = posOf(k.source());
      }
    }
  }

 private:
  std::string m_source;
  std::vector<Diagnostic> m_errors;
};

void parseModels(Parser& ps, const toml::node& node, Plan& plan) {
  const auto* t = node.as_table();
  if (!t) return ps.error(node, fmt::format("'models' must be a table of [models.ID] tables, found {}", typeName(node)));
  for (const auto& [k, v] : *t) {
    ModelSpec m;
    m.id = std::string(k.str());
    m.pos = posOf(k.source());
    ps.checkId(m.id, m.pos, "model id");
    const auto* mt = v.as_table();
    if (!mt) {
      ps.error(v, fmt::format("models.{} must be a table (path = ...), found {}", m.id, typeName(v)));
      continue;
    }
    bool hasPath = false;
    for (const auto& [mk, mv] : *mt) {
      const std::string key(mk.str());
      const std::string what = fmt::format("models.{}.{}", m.id, key);
      if (key == "path") {
        if (auto s = ps.string(mv, what)) {
          m.path = *s;
          hasPath = !s->empty();
          if (s->empty()) ps.error(mv, what + " is empty");
        }
      } else if (key == "device") {
        if (auto s = ps.string(mv, what)) {
          if (*s != "cpu" && *s != "cuda" && s->rfind("cuda:", 0) != 0) ps.error(mv, fmt::format("{} must be cpu, cuda or cuda:N, found '{}'", what, *s));
          m.device = *s;
        }
      } else if (key == "dtype") {
        if (auto s = ps.string(mv, what)) {
          if (*s != "fp32" && *s != "bf16" && *s != "fp16") ps.error(mv, fmt::format("{} must be fp32, bf16 or fp16, found '{}'", what, *s));
          m.dtype = *s;
        }
      } else {
        ps.error(posOf(mk.source()), fmt::format("unknown key '{}' in models.{} (known: path, device, dtype)", key, m.id));
      }
    }
    if (!hasPath && mt) ps.error(m.pos, fmt::format("models.{} needs path = \"FOLDER\" or path = \"embedded\"", m.id));
    plan.models.push_back(std::move(m));
  }
}

void parseInputs(Parser& ps, const toml::node& node, Plan& plan) {
  const auto* t = node.as_table();
  if (!t) return ps.error(node, fmt::format("'inputs' must be a table of [inputs.ID] tables, found {}", typeName(node)));
  std::string kinds;
  for (const auto& k : inputKindTable()) kinds += (kinds.empty() ? "" : ", ") + k.kind;
  for (const auto& [k, v] : *t) {
    InputSpec in;
    in.id = std::string(k.str());
    in.pos = posOf(k.source());
    ps.checkId(in.id, in.pos, "input id");
    const auto* it = v.as_table();
    if (!it) {
      ps.error(v, fmt::format("inputs.{} must be a table (kind = ...), found {}", in.id, typeName(v)));
      continue;
    }
    const toml::node* kindNode = it->get("kind");
    if (!kindNode) {
      ps.error(in.pos, fmt::format("inputs.{} needs kind = one of {}", in.id, kinds));
      continue;
    }
    const auto kind = ps.string(*kindNode, fmt::format("inputs.{}.kind", in.id));
    if (!kind) continue;
    const InputKindInfo* info = findInputKind(*kind);
    if (!info) {
      ps.error(*kindNode, fmt::format("inputs.{}: unknown kind '{}' (known: {})", in.id, *kind, kinds));
      continue;
    }
    in.kind = *kind;
    ps.params(*it, info->params, {"kind"}, fmt::format("inputs.{} (kind {})", in.id, in.kind), in.params, in.paramPos, {"kind"});
    for (const auto& r : info->required)
      if (!it->get(r)) ps.error(in.pos, fmt::format("inputs.{} (kind {}) needs '{}'", in.id, in.kind, r));
    if (in.kind == "prompts" && (it->get("text") != nullptr) == (it->get("file") != nullptr))
      ps.error(in.pos, fmt::format("inputs.{} (kind prompts) needs exactly one of text = [...] or file = \"...\"", in.id));
    for (const char* key : {"n", "n_lengths", "depths", "buffer"})
      if (in.params.contains(key) && in.params[key].get<int64_t>() <= 0)
        ps.error(in.paramPos[key], fmt::format("inputs.{}.{} must be positive", in.id, key));
    plan.inputs.push_back(std::move(in));
  }
}

void parseAnalyses(Parser& ps, const toml::node& node, Plan& plan) {
  const auto* arr = node.as_array();
  if (!arr || !arr->is_array_of_tables())
    return ps.error(node, fmt::format("'analysis' must be an array of tables ([[analysis]] entries), found {}", typeName(node)));
  std::string types;
  for (const auto& a : analysis::analysisRegistry()) types += (types.empty() ? "" : ", ") + a.name;
  for (const auto& el : *arr) {
    const auto& t = *el.as_table();
    AnalysisSpec a;
    a.pos = posOf(t.source());
    const toml::node* typeNode = t.get("type");
    if (!typeNode) {
      ps.error(a.pos, fmt::format("[[analysis]] needs type = one of {}", types));
      continue;
    }
    const auto type = ps.string(*typeNode, "analysis type");
    if (!type) continue;
    const analysis::AnalysisDescriptor* info = findAnalysis(*type);
    if (!info) {
      ps.error(*typeNode, fmt::format("unknown analysis '{}' (known: {})", *type, types));
      continue;
    }
    a.type = *type;
    a.id = a.type;
    if (const auto* n = t.get("id")) {
      if (auto s = ps.string(*n, "analysis id")) {
        a.id = *s;
        ps.checkId(a.id, posOf(n->source()), "analysis id");
      }
    }
    if (const auto* n = t.get("inputs"))
      if (auto s = ps.strings(*n, fmt::format("analysis '{}': inputs", a.id))) a.inputs = *s;
    if (const auto* n = t.get("models"))
      if (auto s = ps.strings(*n, fmt::format("analysis '{}': models", a.id))) a.models = *s;
    ps.params(t, info->params, {"type", "id", "inputs", "models"}, fmt::format("analysis '{}' (type {})", a.id, a.type),
              a.params, a.paramPos, {"type", "id", "inputs", "models"});
    for (const auto& r : info->required)
      if (!t.get(r)) ps.error(a.pos, fmt::format("analysis '{}' (type {}) needs '{}'", a.id, a.type, r));
    plan.analyses.push_back(std::move(a));
  }
}

/// Checks between sections: references, compatible inputs, unique ids.
void crossCheck(Parser& ps, Plan& plan) {
  std::set<std::string> seen;
  for (auto& a : plan.analyses) {
    const analysis::AnalysisDescriptor* info = findAnalysis(a.type);
    if (!seen.insert(a.id).second)
      ps.error(a.pos, fmt::format("analysis id '{}' is used twice; give each [[analysis]] its own id = \"...\"", a.id));
    if (a.models.empty())
      for (const auto& m : plan.models) a.models.push_back(m.id);
    for (const auto& m : a.models)
      if (!plan.model(m)) ps.error(a.pos, fmt::format("analysis '{}': unknown model '{}'", a.id, m));
    if (info->acceptsKinds.empty()) {
      if (!a.inputs.empty()) ps.error(a.pos, fmt::format("analysis '{}' (type {}) takes no inputs", a.id, a.type));
    } else if (a.inputs.empty()) {
      ps.error(a.pos, fmt::format("analysis '{}' needs inputs = [...] (kinds: {})", a.id, fmt::join(info->acceptsKinds, ", ")));
    }
    for (const auto& i : a.inputs) {
      const InputSpec* in = plan.input(i);
      if (!in) {
        ps.error(a.pos, fmt::format("analysis '{}': unknown input '{}'", a.id, i));
        continue;
      }
      if (in->kind.empty()) continue;  // already reported
      if (std::find(info->acceptsKinds.begin(), info->acceptsKinds.end(), in->kind) == info->acceptsKinds.end())
        ps.error(a.pos, fmt::format("analysis '{}' (type {}) cannot run on input '{}' of kind {} (accepts: {})", a.id, a.type, i,
                                    in->kind, fmt::join(info->acceptsKinds, ", ")));
      // One option given twice: a key of the input kind and a key of the analysis that become the same flag.
      if (const InputKindInfo* kind = findInputKind(in->kind))
        for (const auto& kp : kind->params)
          for (const auto& ap : info->params)
            if (!kp.flag.empty() && kp.flag == ap.flag && in->params.contains(kp.key) && a.params.contains(ap.key))
              ps.error(a.paramPos.count(ap.key) ? a.paramPos.at(ap.key) : a.pos,
                       fmt::format("analysis '{}': '{}' is also given by input '{}' ('{}'); both are {}; give it once", a.id, ap.key, i,
                                   kp.key, kp.flag));
      if (a.type == "retrieval" && in->kind == "token-ids" && !a.params.contains("needle_span"))
        ps.error(a.pos, fmt::format("analysis '{}': retrieval on token-ids input '{}' needs needle_span = \"START:END\"", a.id, i));
    }
    if (a.type == "constraint-attention" && !a.params.contains("constraint") && !a.params.contains("constraint_text") &&
        !a.params.contains("constraint_tokens"))
      ps.error(a.pos, fmt::format("analysis '{}' needs one of constraint, constraint_text or constraint_tokens", a.id));
  }
  // Analyses without a model (their table's inputFiles, e.g. overlap's a and b): each input file is
  // "ANALYSIS_ID@INPUT_ID" naming an analysis of the type they read (inputFilesFrom) on every model of theirs.
  for (const auto& a : plan.analyses) {
    const analysis::AnalysisDescriptor* info = findAnalysis(a.type);
    if (!info || info->inputFiles.empty()) continue;
    std::string upper = info->inputFilesFrom;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    for (const auto& side : info->inputFiles) {
      if (!a.params.contains(side)) continue;
      const std::string ref = a.params[side].get<std::string>();
      const SourcePos pos = a.paramPos.at(side);
      const auto at = ref.find('@');
      const AnalysisSpec* c = at == std::string::npos ? nullptr : plan.analysis(ref.substr(0, at));
      if (!c || c->type != info->inputFilesFrom) {
        ps.error(pos, fmt::format("analysis '{}': {} = '{}' must be \"{}_ID@INPUT_ID\" naming a {} analysis", a.id, side, ref, upper,
                                  info->inputFilesFrom));
        continue;
      }
      const std::string input = ref.substr(at + 1);
      if (std::find(c->inputs.begin(), c->inputs.end(), input) == c->inputs.end())
        ps.error(pos, fmt::format("analysis '{}': {} = '{}': {} '{}' does not run on input '{}'", a.id, side, ref, c->type, c->id, input));
      for (const auto& m : a.models)
        if (std::find(c->models.begin(), c->models.end(), m) == c->models.end())
          ps.error(pos, fmt::format("analysis '{}': {} '{}' does not run on model '{}'", a.id, c->type, c->id, m));
    }
  }
}

}  // namespace

namespace {
void sortDiagnostics(std::vector<Diagnostic>& errs) {
  std::stable_sort(errs.begin(), errs.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.pos.line, a.pos.column) < std::tie(b.pos.line, b.pos.column);
  });
}

/// parsePlan without the throw: the plan as far as it could be read, problems appended to `errors`.
Plan parseCollect(std::string_view text, std::string_view sourceName, std::vector<Diagnostic>& errors) {
  Plan plan;
  plan.source = std::string(sourceName);
  Parser ps(plan.source);
  toml::table root;
  try {
    root = toml::parse(text, sourceName);
  } catch (const toml::parse_error& e) {
    errors.push_back({plan.source, posOf(e.source()), std::string(e.description())});
    return plan;
  }
  bool sawModels = false, sawAnalyses = false;
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    if (key == "name") {
      if (auto s = ps.string(v, "name")) plan.name = *s;
    } else if (key == "output") {
      const auto* t = v.as_table();
      if (!t) {
        ps.error(v, fmt::format("'output' must be a table, found {}", typeName(v)));
        continue;
      }
      for (const auto& [ok, ov] : *t) {
        const std::string okey(ok.str());
        if (okey == "dir") {
          if (auto s = ps.string(ov, "output.dir")) plan.output.dir = *s;
        } else if (okey == "report") {
          if (auto s = ps.string(ov, "output.report")) {
            if (*s != "markdown" && *s != "html") ps.error(ov, fmt::format("output.report must be markdown or html, found '{}'", *s));
            plan.output.report = *s;
          }
        } else if (okey == "figures") {
          if (const auto* b = ov.as_boolean()) plan.output.figures = b->get();
          else ps.error(ov, fmt::format("output.figures must be true or false, found {}", typeName(ov)));
        } else {
          ps.error(posOf(ok.source()), fmt::format("unknown key '{}' in [output] (known: dir, report, figures)", okey));
        }
      }
    } else if (key == "models") {
      sawModels = true;
      parseModels(ps, v, plan);
    } else if (key == "inputs") {
      parseInputs(ps, v, plan);
    } else if (key == "analysis") {
      sawAnalyses = true;
      parseAnalyses(ps, v, plan);
    } else {
      ps.error(posOf(k.source()), fmt::format("unknown top-level key '{}' (known: name, output, models, inputs, analysis)", key));
    }
  }
  if (!sawModels || plan.models.empty()) ps.error(SourcePos{1, 1}, "the plan names no model ([models.ID] with path = ...)");
  if (!sawAnalyses || plan.analyses.empty()) ps.error(SourcePos{1, 1}, "the plan names no analysis ([[analysis]] with type = ...)");
  crossCheck(ps, plan);
  errors.insert(errors.end(), ps.errors().begin(), ps.errors().end());
  return plan;
}

/// checkPlanFiles without the throw.
void checkFilesCollect(const Plan& plan, std::vector<Diagnostic>& errs) {
  for (const auto& m : plan.models) {
    if (m.embedded() || m.path.empty()) continue;
    if (!fs::is_directory(m.path))
      errs.push_back({plan.source, m.pos, fmt::format("models.{}: folder {} does not exist", m.id, m.path)});
    else if (!fs::exists(fs::path(m.path) / "config.json"))
      errs.push_back({plan.source, m.pos, fmt::format("models.{}: {} has no config.json", m.id, m.path)});
  }
  for (const auto& in : plan.inputs) {
    const InputKindInfo* info = findInputKind(in.kind);
    if (!info) continue;
    for (const auto& p : info->params) {
      if (p.type != ParamType::File || !in.params.contains(p.key)) continue;
      const std::string f = in.params[p.key].get<std::string>();
      if (!fs::is_regular_file(f))
        errs.push_back({plan.source, in.paramPos.at(p.key), fmt::format("inputs.{}.{}: file {} does not exist", in.id, p.key, f)});
    }
  }
}
}  // namespace

Plan parsePlan(std::string_view text, std::string_view sourceName) {
  std::vector<Diagnostic> errs;
  Plan plan = parseCollect(text, sourceName, errs);
  if (!errs.empty()) {
    sortDiagnostics(errs);
    throw PlanError(errs);
  }
  return plan;
}

Plan loadPlan(std::string_view text, std::string_view sourceName, const fs::path& baseDir) {
  std::vector<Diagnostic> errs;
  Plan plan = parseCollect(text, sourceName, errs);
  resolvePlanPaths(plan, baseDir);
  checkFilesCollect(plan, errs);
  if (!errs.empty()) {
    sortDiagnostics(errs);
    throw PlanError(errs);
  }
  return plan;
}

Plan readPlanFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PlanError({{path.string(), {}, "cannot read the plan file"}});
  std::stringstream ss;
  ss << in.rdbuf();
  return loadPlan(ss.str(), path.string(), fs::absolute(path).parent_path());
}

namespace {
std::string absoluteAgainst(const std::string& p, const fs::path& base) {
  const fs::path path(p);
  return (path.is_absolute() ? path : fs::absolute(base / path)).lexically_normal().string();
}
}  // namespace

void resolvePlanPaths(Plan& plan, const fs::path& baseDir) {
  for (auto& m : plan.models)
    if (!m.embedded() && !m.path.empty()) m.path = absoluteAgainst(m.path, baseDir);
  for (auto& in : plan.inputs) {
    const InputKindInfo* info = findInputKind(in.kind);
    if (!info) continue;
    for (const auto& p : info->params)
      if (p.type == ParamType::File && in.params.contains(p.key))
        in.params[p.key] = absoluteAgainst(in.params[p.key].get<std::string>(), baseDir);
  }
}

void checkPlanFiles(const Plan& plan) {
  std::vector<Diagnostic> errs;
  checkFilesCollect(plan, errs);
  if (!errs.empty()) {
    sortDiagnostics(errs);
    throw PlanError(errs);
  }
}

}  // namespace mechscope::batch
