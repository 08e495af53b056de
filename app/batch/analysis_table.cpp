#include "app/batch/analysis_table.hpp"

#include <algorithm>

namespace mechscope::batch {
namespace {
using T = ParamType;

ParamInfo p(std::string key, ParamType type, std::string flag) { return ParamInfo{std::move(key), type, std::move(flag), {}, false, false}; }
ParamInfo choice(std::string key, std::string flag, std::vector<std::string> choices) {
  return ParamInfo{std::move(key), T::Choice, std::move(flag), std::move(choices), false, false};
}
ParamInfo inverted(std::string key, std::string flag) { return ParamInfo{std::move(key), T::Bool, std::move(flag), {}, true, false}; }

const std::vector<std::string> kTokenKinds = {"prompts", "token-ids", "jsonl", "ioi", "colored-objects"};
const std::vector<std::string> kDatasetKinds = {"jsonl", "ioi", "colored-objects"};
}  // namespace

std::string_view describe(ParamType t) {
  switch (t) {
    case T::Int: return "an integer";
    case T::Float: return "a number";
    case T::Bool: return "true or false";
    case T::String: return "a string";
    case T::Choice: return "one of the listed strings";
    case T::Range: return "a string \"START:END\"";
    case T::RangeList: return "\"START:END\" or an array of them";
    case T::StringList: return "a string or an array of strings";
    case T::HeadList: return "\"LAYER.HEAD,...\" or an array of \"LAYER.HEAD\" strings";
    case T::IntList: return "an integer, an array of integers or \"1,-1\"";
    case T::File: return "a file path (string)";
  }
  return "a value";
}

const std::vector<AnalysisInfo>& analysisTable() {
  static const std::vector<AnalysisInfo> table = {
      {"sinks", "sinks", kTokenKinds, false,
       {p("bos_position", T::Int, "--bos-position"), p("sink_threshold", T::Float, "--sink-threshold"),
        p("cosine_threshold", T::Float, "--cosine-threshold"), p("bos_candidates", T::IntList, "--bos-candidates"),
        choice("hidden_states", "--hidden-states", {"hf", "resid_post"}), p("materialize", T::Bool, "--materialize")},
       {}, {"sink_score"}},
      {"waad-fai", "waad-fai", kTokenKinds, false,
       {p("window", T::Int, "--window"), p("fai_horizon", T::Range, "--fai-horizon"),
        p("response_start", T::IntList, "--response-start"), p("split_quantile", T::Float, "--split-quantile"),
        p("token_quantile", T::Float, "--token-quantile"), p("peak_percentile", T::Float, "--peak-percentile"),
        choice("layers", "--layers", {"all", "middle"}), p("receiver_heads", T::Int, "--receiver-heads"),
        p("peak_lag", T::Int, "--peak-lag"), p("no_predictions", T::Bool, "--no-predictions"), p("materialize", T::Bool, "--materialize")},
       {}, {"head_distance"}},
      {"constraint-attention", "constraint-attention", kTokenKinds, true,
       {p("constraint", T::RangeList, "--constraint"), p("constraint_text", T::StringList, "--constraint-text"),
        p("constraint_tokens", T::RangeList, "--constraint-tokens"), p("response", T::String, "--response"),
        p("generate", T::Int, "--generate"), p("response_start", T::Int, "--response-start"),
        p("answer_marker", T::String, "--answer-marker"), p("materialize", T::Bool, "--materialize")},
       {}, {"alpha"}},
      {"retrieval", "retrieval", {"niah", "token-ids"}, false,
       {p("needle_span", T::Range, "--needle-span"), p("answer", T::String, "--answer"),
        p("max_new_tokens", T::Int, "--max-new-tokens"),
        ParamInfo{"stop_token", T::IntList, "--stop-token", {}, false, true}, p("no_stop", T::Bool, "--no-stop"),
        inverted("success_filter", "--no-success-filter"), p("success_threshold", T::Float, "--success-threshold"),
        p("mask_heads", T::HeadList, "--mask-heads"), p("mask_top", T::Int, "--mask-top"), p("scores", T::File, "--scores"),
        p("retrieval_threshold", T::Float, "--retrieval-threshold"), p("control_exclude_top", T::Int, "--control-exclude-top"),
        p("seed", T::Int, "--seed"),
        inverted("control", "--no-control"), p("span_threshold", T::Float, "--span-threshold")},
       {}, {"retrieval_score"}},
      {"patch", "patch", kDatasetKinds, false,
       {choice("component", "--component", {"resid_pre", "attn_out", "mlp_out", "head_out", "q", "k", "v", "pattern"}),
        p("per_position", T::Bool, "--per-position"), choice("normalisation", "--normalisation", {"denoising", "noising", "raw"}),
        choice("method", "--method", {"exact", "attribution", "both"}), p("path_receivers", T::String, "--path-receivers"),
        p("path_senders", T::HeadList, "--path-senders"), choice("path_variant", "--path-variant", {"ioi", "merullo"}),
        p("sender_positions", T::IntList, "--sender-positions"), p("receiver_positions", T::IntList, "--receiver-positions"),
        p("position_role", T::String, "--position-role"), p("freeze_mlps", T::Bool, "--freeze-mlps"),
        p("max_batch_rows", T::Int, "--max-batch-rows")},
       {}, {"scores"}},
      {"ablate", "ablate", kDatasetKinds, false,
       {p("heads", T::HeadList, "--heads"), choice("method", "--method", {"zero", "mean", "resample", "uniform", "force"}),
        p("knockout", T::Bool, "--knockout"), p("positions", T::IntList, "--positions"),
        p("per_template", T::Bool, "--per-template"), p("pooled", T::Bool, "--pooled"),
        p("force_keys", T::IntList, "--force-keys"), p("force_weights", T::String, "--force-weights")},
       {"heads"}, {}},
      {"intervene", "intervene", kDatasetKinds, false,
       {p("heads", T::HeadList, "--heads"), choice("onto", "--onto", {"incorrect"}), p("onto_ids", T::IntList, "--onto-ids"),
        p("exclude_answer", T::Bool, "--exclude-answer")},
       {"heads"}, {}},
      {"circuit", "circuit", kDatasetKinds, false,
       {choice("variant", "--variant", {"ioi", "merullo"}), p("top_percent", T::Float, "--top-percent"),
        p("rel_threshold", T::Float, "--rel-threshold"), p("min_effect", T::Float, "--min-effect"),
        p("max_stages", T::Int, "--max-stages"), p("max_batch_rows", T::Int, "--max-batch-rows"),
        p("stage_positions", T::String, "--stage-positions"), p("stage_sites", T::String, "--stage-sites"),
        p("freeze_mlps", T::Bool, "--freeze-mlps")},
       {}, {}},
      {"dla", "dla", kDatasetKinds, false, {p("copy_roles", T::String, "--copy-roles"), p("top_k", T::Int, "--top-k")}, {}, {}},
      {"overlap", "overlap", {}, false, {p("a", T::String, ""), p("b", T::String, "")}, {"a", "b"}, {}},
  };
  return table;
}

const std::vector<InputKindInfo>& inputKindTable() {
  static const std::vector<InputKindInfo> table = {
      {"prompts", InputFamily::Tokens,
       {p("text", T::StringList, "--prompt"), p("file", T::File, "--prompt-file"), p("prepend_bos", T::Bool, "")}, {}},
      {"token-ids", InputFamily::Tokens, {p("file", T::File, "--token-ids")}, {"file"}},
      {"jsonl", InputFamily::Dataset, {p("file", T::File, "--dataset")}, {"file"}},
      {"ioi", InputFamily::Dataset,
       {p("n", T::Int, ""), p("seed", T::Int, ""), choice("corruption", "", {"abc", "s2-io"}),
        choice("order", "", {"mixed", "baba", "abba"})},
       {}},
      {"colored-objects", InputFamily::Dataset, {p("n", T::Int, ""), p("seed", T::Int, "")}, {}},
      {"niah", InputFamily::Niah,
       {p("needles", T::File, "--needles"), p("haystack", T::File, "--haystack"), p("lengths", T::Range, "--lengths"),
        p("n_lengths", T::Int, "--n-lengths"), p("depths", T::Int, "--depths"), p("buffer", T::Int, "--buffer"),
        p("question_template", T::String, "--question-template")},
       {}},
  };
  return table;
}

const AnalysisInfo* findAnalysis(std::string_view type) {
  const auto& t = analysisTable();
  const auto it = std::find_if(t.begin(), t.end(), [&](const AnalysisInfo& a) { return a.type == type; });
  return it == t.end() ? nullptr : &*it;
}

const InputKindInfo* findInputKind(std::string_view kind) {
  const auto& t = inputKindTable();
  const auto it = std::find_if(t.begin(), t.end(), [&](const InputKindInfo& a) { return a.kind == kind; });
  return it == t.end() ? nullptr : &*it;
}

const ParamInfo* findParam(const std::vector<ParamInfo>& params, std::string_view key) {
  const auto it = std::find_if(params.begin(), params.end(), [&](const ParamInfo& p) { return p.key == key; });
  return it == params.end() ? nullptr : &*it;
}

}  // namespace mechscope::batch
