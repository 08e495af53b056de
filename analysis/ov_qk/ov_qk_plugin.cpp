// ov-qk in the plugin shape: `mechscope-cli ov-qk`, its GUI panel and batch plans derive from this table.
// T comes from the prompt rows (their distinct tokens, or the --tokens most frequent); the QK look-up's
// tokens default to the first 16 of T.
#include <ATen/ATen.h>

#include <algorithm>

#include "analysis/ov_qk/ov_qk.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::analysis {

namespace {

constexpr size_t kDefaultLookupTokens = 16;

nlohmann::json ovQkTokenNames(const Tokenizer* tok, const std::vector<int64_t>& ids) {
  nlohmann::json names = nlohmann::json::array();
  for (int64_t id : ids) names.push_back(tok ? tok->displayToken(id) : std::to_string(id));
  return names;
}

AnalysisResult runOvQk(const PluginInputs& in, const ParamValues& params, const RunContext* ctx) {
  const ModelConfig& c = in.model->config();
  OvQkParams p;
  p.topK = params.integer("top_k");
  p.tokens = ovTokenSet(in.rows, params.integer("tokens"));
  const std::vector<int64_t> firstT(p.tokens.begin(), p.tokens.begin() + static_cast<std::ptrdiff_t>(std::min(kDefaultLookupTokens, p.tokens.size())));
  p.queryTokens = params.given("query_tokens") ? params.integers("query_tokens") : firstT;
  p.keyTokens = params.given("key_tokens") ? params.integers("key_tokens") : firstT;
  if (params.given("heads")) p.heads = params.heads("heads", c.nLayers, c.nHeads);
  p.position = params.integer("position");
  const OvQkResult r = ovQkCircuits(*in.model, p, ctx);
  AnalysisResult out;
  out.name = "ov-qk";
  auto& j = out.json;
  j["layout"] = "[layer][head]";
  j["tokens"] = r.tokens;
  j["token_strings"] = ovQkTokenNames(in.tokenizer, r.tokens);
  j["top_k"] = p.topK;
  j["ov_copy_eigen"] = tensorToJson(r.copyEigen);
  j["ov_copy_eigen_vocab"] = tensorToJson(r.copyEigenVocab);
  j["ov_copy_topk"] = tensorToJson(r.copyTopK);
  j["ov_copy_topk_negative"] = tensorToJson(r.copyTopKNegative);
  j["ov_rank"] = tensorToJson(r.rank);
  j["ov_rank_negative"] = tensorToJson(r.rankNegative);
  j["query_tokens"] = p.queryTokens;
  j["key_tokens"] = p.keyTokens;
  j["query_strings"] = ovQkTokenNames(in.tokenizer, p.queryTokens);
  j["key_strings"] = ovQkTokenNames(in.tokenizer, p.keyTokens);
  j["qk"] = tensorToJson(r.qk);
  j["position"] = p.position;
  j["n_tokens"] = static_cast<int64_t>(r.tokens.size());
  out.addArray("ov_copy_eigen", r.copyEigen);
  out.addArray("ov_copy_eigen_vocab", r.copyEigenVocab);
  out.addArray("ov_copy_topk", r.copyTopK);
  out.addArray("ov_copy_topk_negative", r.copyTopKNegative);
  out.addArray("ov_rank", r.rank);
  out.addArray("qk", r.qk);
  return out;
}

}  // namespace

AnalysisPlugin ovQkPlugin() {
  AnalysisPlugin p = makePlugin("ov-qk", "OV / QK circuits",
                                "OV copy scores of every head (eigenvalues, top-k on weights) over the prompt's tokens and a QK look-up between chosen tokens",
                                PluginInput::TokenRows, runOvQk);
  auto& d = p.descriptor;
  ParamInfo k = makeParam("top_k", ParamType::Int, "--top-k", "a copy hit: the token is among the k largest entries of its own OV row", "5");
  k.minimum = 1;
  ParamInfo n = makeParam("tokens", ParamType::Int, "--tokens", "T: the N most frequent distinct prompt tokens (0: every distinct token)", "0");
  n.minimum = 0;
  ParamInfo pos = makeParam("position", ParamType::Int, "--position",
                            "QK look-up: add the learned position embedding of this position to both tokens (GPT-2 only; -1: none)", "-1");
  pos.minimum = -1;
  d.params = {k, n,
              makeParam("query_tokens", ParamType::IntList, "--query-tokens", "QK look-up rows: token ids, e.g. 5,9 (default: the first 16 of T)"),
              makeParam("key_tokens", ParamType::IntList, "--key-tokens", "QK look-up columns: token ids (default: the first 16 of T)"),
              makeParam("heads", ParamType::HeadList, "--heads", "only these heads, e.g. 1.0,2.3 (default: every head)"), pos};
  d.figureKeys = {"ov_copy_eigen", "ov_copy_eigen_vocab", "ov_copy_topk", "ov_copy_topk_negative"};
  d.headlineKeys = {"n_tokens"};
  return p;
}

}  // namespace mechscope::analysis
