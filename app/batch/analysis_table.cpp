#include "app/batch/analysis_table.hpp"

#include <algorithm>

namespace mechscope::batch {
namespace {
using T = ParamType;

ParamInfo p(std::string key, ParamType type, std::string flag) { return ParamInfo{std::move(key), type, std::move(flag), {}, false, false}; }
ParamInfo choice(std::string key, std::string flag, std::vector<std::string> choices) {
  return ParamInfo{std::move(key), T::Choice, std::move(flag), std::move(choices), false, false};
}

}  // namespace

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

const InputKindInfo* findInputKind(std::string_view kind) {
  const auto& t = inputKindTable();
  const auto it = std::find_if(t.begin(), t.end(), [&](const InputKindInfo& a) { return a.kind == kind; });
  return it == t.end() ? nullptr : &*it;
}

}  // namespace mechscope::batch
