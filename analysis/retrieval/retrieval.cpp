#include "analysis/retrieval/retrieval.hpp"

#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "analysis/common/attention_stats.hpp"
#include "analysis/common/rouge.hpp"
#include "analysis/retrieval/resume.hpp"
#include "core/common/errors.hpp"

namespace mechscope::analysis {

RetrievalTestResult runRetrievalTest(const HookedTransformer& model, const RetrievalTest& test, const RetrievalDecode& decode,
                                     const std::function<std::string(const std::vector<int64_t>&)>& decodeText,
                                     double successThreshold, const RunContext* ctx) {
  const ModelConfig& c = model.config();
  const int L = c.nLayers;
  const int64_t H = c.nHeads, n = static_cast<int64_t>(test.ids.size());
  if (n < 1) throw InputError("retrieval: empty prompt");
  if (test.spanFound && (test.needleStart < 0 || test.needleEnd > n || test.needleStart >= test.needleEnd))
    throw InputError(fmt::format("retrieval: needle span {}:{} is not inside the {} prompt tokens", test.needleStart, test.needleEnd, n));
  if (decode.stopOnNewline && !decodeText)
    throw InputError("retrieval: stopping on a newline needs a tokenizer with a decoder");
  if (decode.maxNewTokens < 1) throw InputError(fmt::format("retrieval: --max-new-tokens must be ≥ 1, found {}", decode.maxNewTokens));
  if (n + decode.maxNewTokens > c.nCtx)
    throw InputError(fmt::format("retrieval: {} prompt tokens + {} new tokens exceed the model's context of {}", n, decode.maxNewTokens, c.nCtx));

  RetrievalTestResult out;
  out.needleIndex = test.needleIndex;
  out.length = test.length;
  out.depth = test.depth;
  out.nTokens = n;
  out.needleStart = test.needleStart;
  out.needleEnd = test.needleEnd;
  out.spanFound = test.spanFound;
  out.insertedAt = test.insertedAt;
  out.stopReason = "max_new_tokens";
  out.score = at::zeros({L, H}, at::kDouble);  // [layer, head]
  std::vector<at::Tensor> steps;                // each [layer, head] int64
  at::Tensor current = at::full({L, H}, -1, at::kLong);

  // Prefill: the probe's top-1 of the last row only.
  HookSet prefill;
  addUniformHeadHooks(prefill, model, decode.maskedHeads);
  ProbeRequest req;
  req.topK = 1;
  req.queryStart = n - 1;
  AttentionStatsOptions so;
  so.materialize = decode.materialize;
  addProbeHooks(
      prefill, model, req, [&](int l, const ProbeResult& s) { current[l] = s.topIndices.select(1, s.topIndices.size(1) - 1).select(1, 0).cpu(); },
      so, ctx);
  HookSet step;
  addUniformHeadHooks(step, model, decode.maskedHeads);
  step.add("blocks.*.attn.hook_pattern", [&](const at::Tensor& p, const HookContext& hc) -> std::optional<at::Tensor> {
    current[hc.layer] = p[0].select(1, p.size(2) - 1).argmax(-1).cpu();  // p: [batch, head, 1, keys]
    return std::nullopt;
  });

  KVCache cache;
  ForwardOptions fo;
  fo.logitsLastOnly = true;
  fo.path = decode.materialize ? AttentionPath::Explicit : AttentionPath::Auto;  // fused (LibTorch ≥ 2) or chunked
  at::Tensor tokens = at::tensor(at::ArrayRef<int64_t>(test.ids), at::kLong).unsqueeze(0).to(model.device());  // [1, pos]
  ForwardResult r = model.forwardCached(tokens, cache, -1, fo, &prefill, ctx);
  // No span: needle_start = needle_end = −1 in the official code, so no step can score.
  const double unit = test.spanFound ? 1.0 / static_cast<double>(test.needleEnd - test.needleStart) : 0.0;
  const int64_t spanStart = test.spanFound ? test.needleStart : 0, spanEnd = test.spanFound ? test.needleEnd : 0;
  for (int s = 0; s < decode.maxNewTokens; ++s) {
    const int64_t y = r.logits[0][-1].argmax().item<int64_t>();
    out.generated.push_back(y);
    steps.push_back(current.clone());
    const int64_t* a = current.data_ptr<int64_t>();
    for (int64_t i = 0; i < L * H; ++i) {
      const int64_t j = a[i];
      if (j >= spanStart && j < spanEnd && test.ids[static_cast<size_t>(j)] == y) out.score.view({-1})[i] += unit;
    }
    // The stop token is kept and scored, as the official loop scores before it checks.
    if (std::find(decode.stopTokens.begin(), decode.stopTokens.end(), y) != decode.stopTokens.end()) {
      out.stopReason = "stop_token";
      break;
    }
    // SentencePiece spells "\n" as ▁ + <0x0A> (or inside longer pieces): read the decoded text.
    if (decode.stopOnNewline && decodeText(out.generated).find('\n') != std::string::npos) {
      out.stopReason = "newline";
      break;
    }
    if (s + 1 == decode.maxNewTokens) break;
    current.fill_(-1);
    r = model.forwardCached(at::full({1, 1}, y, at::kLong).to(model.device()), cache, s, fo, &step, ctx);
  }
  out.argmax = at::stack(steps);  // [step, layer, head]
  out.promptHash = fnv1a64Hex(fmt::format("{}", fmt::join(test.ids, ",")));  // scripts/device/niah_protocol.py's prompt_hash
  if (test.answer && decodeText) {
    out.rouge1 = rouge1Recall(*test.answer, decodeText(out.generated));
    out.success = *out.rouge1 > successThreshold;
  }
  return out;
}

nlohmann::json retrievalTestToJson(const RetrievalTestResult& r, bool withScores) {
  nlohmann::json j = {{"needle", r.needleIndex}, {"length", r.length}, {"depth", r.depth}, {"n_tokens", r.nTokens},
                      {"needle_span", r.spanFound ? nlohmann::json{r.needleStart, r.needleEnd} : nlohmann::json(nullptr)},
                      {"span_found", r.spanFound}, {"generated_ids", r.generated},
                      {"rouge1_recall", r.rouge1 ? nlohmann::json(*r.rouge1 * 100.0) : nlohmann::json(nullptr)},
                      {"success", r.success}};
  if (r.insertedAt >= 0) j["inserted_at"] = r.insertedAt;
  if (!r.stopReason.empty()) j["stop_reason"] = r.stopReason;
  if (!r.promptHash.empty()) j["prompt_hash"] = r.promptHash;
  if (withScores) {
    j["head_scores"] = tensorToJson(r.score);
    j["argmax"] = tensorToJson(r.argmax);
  }
  return j;
}

RetrievalTestResult retrievalTestFromJson(const nlohmann::json& j) {
  try {
    RetrievalTestResult r;
    r.needleIndex = j.at("needle").get<int>();
    r.length = j.at("length").get<int64_t>();
    r.depth = j.at("depth").get<int64_t>();
    r.nTokens = j.at("n_tokens").get<int64_t>();
    r.spanFound = j.value("span_found", true);
    if (r.spanFound) {
      r.needleStart = j.at("needle_span").at(0).get<int64_t>();
      r.needleEnd = j.at("needle_span").at(1).get<int64_t>();
    }
    r.insertedAt = j.value("inserted_at", int64_t{-1});
    r.stopReason = j.value("stop_reason", std::string());
    r.promptHash = j.value("prompt_hash", std::string());
    r.generated = j.at("generated_ids").get<std::vector<int64_t>>();
    if (!j.at("rouge1_recall").is_null()) r.rouge1 = j.at("rouge1_recall").get<double>() / 100.0;
    r.success = j.at("success").get<bool>();
    const auto rows = j.at("head_scores").get<std::vector<std::vector<double>>>();
    std::vector<double> flat;
    for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
    r.score = at::tensor(at::ArrayRef<double>(flat), at::kDouble).view({static_cast<int64_t>(rows.size()), -1}).clone();
    const auto am = j.at("argmax").get<std::vector<std::vector<std::vector<int64_t>>>>();
    std::vector<int64_t> af;
    for (const auto& a : am)
      for (const auto& b : a) af.insert(af.end(), b.begin(), b.end());
    if (!am.empty())
      r.argmax = at::tensor(at::ArrayRef<int64_t>(af), at::kLong).view({static_cast<int64_t>(am.size()), static_cast<int64_t>(am[0].size()), -1}).clone();
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("retrieval: malformed test record in the resume file ({})", e.what()));
  }
}

std::vector<HeadRef> rankHeads(const at::Tensor& score, int k) {
  std::vector<std::pair<double, HeadRef>> v;
  const at::Tensor s = score.to(at::kDouble).cpu();  // [layer, head]
  const auto val = s.accessor<double, 2>();          // element reads, not an indexing op per head
  for (int l = 0; l < s.size(0); ++l)
    for (int h = 0; h < s.size(1); ++h) v.push_back({val[l][h], {l, h}});
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<HeadRef> out;
  for (const auto& e : v) {
    if (k > 0 && static_cast<int>(out.size()) >= k) break;
    out.push_back(e.second);
  }
  return out;
}

AnalysisResult retrievalToResult(const std::vector<RetrievalTestResult>& tests, int nLayers, int nHeads, bool successFilter) {
  AnalysisResult r;
  r.name = "retrieval";
  at::Tensor sum = at::zeros({nLayers, nHeads}, at::kDouble);   // [layer, head]
  at::Tensor fired = at::zeros({nLayers, nHeads}, at::kDouble);  // [layer, head]
  int64_t used = 0;
  nlohmann::json list = nlohmann::json::array();
  double rougeSum = 0;
  int64_t rougeCount = 0;
  for (const auto& t : tests) {
    list.push_back(retrievalTestToJson(t, false));
    if (t.rouge1) {
      rougeSum += *t.rouge1;
      ++rougeCount;
    }
    if (successFilter && !t.success) continue;
    sum += t.score;
    fired += (t.score > 0).to(at::kDouble);
    ++used;
  }
  const at::Tensor score = used > 0 ? sum / static_cast<double>(used) : sum;
  const at::Tensor freq = used > 0 ? fired / static_cast<double>(used) : fired;
  r.json["retrieval_score"] = tensorToJson(score);
  r.json["activation_frequency"] = tensorToJson(freq);
  r.json["tests"] = list;
  nlohmann::json ranked = nlohmann::json::array();
  const auto scoreOf = score.accessor<double, 2>(), freqOf = freq.accessor<double, 2>();  // [layer, head] on the host
  for (const auto& [l, h] : rankHeads(score, 0)) {
    const double v = scoreOf[l][h];
    if (v <= 0) break;
    ranked.push_back({{"layer", l}, {"head", h}, {"score", v}, {"activation_frequency", freqOf[l][h]}});
  }
  r.json["ranked_heads"] = ranked;
  r.json["tests_used"] = used;
  r.json["tests_without_span"] = std::count_if(tests.begin(), tests.end(), [](const RetrievalTestResult& t) { return !t.spanFound; });
  r.json["success_filter"] = successFilter;
  r.json["mean_rouge1_recall"] = rougeCount > 0 ? nlohmann::json(rougeSum / static_cast<double>(rougeCount) * 100.0) : nlohmann::json(nullptr);
  r.addArray("retrieval_score", score);
  r.addArray("activation_frequency", freq);
  // Per test (docs/metrics.md §1.6): argmax key of every head at every step, generated ids, needle span.
  for (size_t i = 0; i < tests.size(); ++i) {
    const auto& t = tests[i];
    if (t.argmax.defined()) r.addArray(fmt::format("test_{}_argmax", i), t.argmax);  // [step, layer, head]
    if (!t.generated.empty()) r.addArray(fmt::format("test_{}_generated_ids", i), at::tensor(at::ArrayRef<int64_t>(t.generated), at::kLong));
    // [start, end), or [−1, −1] when no span was found (as the official find_needle_idx).
    r.addArray(fmt::format("test_{}_needle_span", i),
               at::tensor(t.spanFound ? std::vector<int64_t>{t.needleStart, t.needleEnd} : std::vector<int64_t>{-1, -1}, at::kLong));
  }
  return r;
}

}  // namespace mechscope::analysis
