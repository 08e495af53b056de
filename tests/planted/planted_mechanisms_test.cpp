// The planted model behaves as designed (docs/planted-models.md): each head's attention lands where
// it was built to, the tasks are solved, the sinks have the planted window and lifetime, and the
// local/global split at the 30 % quantile is exactly planted.json's.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/model/generate.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"
#include "tests/planted/planted_fixture.hpp"

namespace mechscope::test {
namespace {

using planted::toIds;
using planted::tokenId;

using HeadSet = std::set<std::pair<int, int>>;

HeadSet headSet(const nlohmann::json& list) {
  HeadSet s;
  for (const auto& e : list) s.insert({e[0].get<int>(), e[1].get<int>()});
  return s;
}


/// Greedy accuracy over task prompts, batched by length (prompts of one template share it).
int correctAnswers(const std::vector<planted::TaskPrompt>& prompts) {
  std::map<size_t, std::vector<const planted::TaskPrompt*>> byLength;
  for (const auto& p : prompts) byLength[p.words.size()].push_back(&p);
  int correct = 0;
  for (const auto& [len, group] : byLength) {
    std::vector<at::Tensor> rows;
    for (const auto* p : group) rows.push_back(at::tensor(toIds(p->words), at::kLong));
    ForwardOptions opts;
    opts.logitsLastOnly = true;
    const auto logits = plantedFixture().model->forward(at::stack(rows), opts).logits;  // [batch, 1, vocab]
    const auto predicted = logits.select(1, 0).argmax(-1);
    for (size_t i = 0; i < group.size(); ++i)
      correct += predicted[static_cast<int64_t>(i)].item<int64_t>() == tokenId(group[i]->answer);
  }
  return correct;
}

/// Position (BOS = 0) of the n-th occurrence of a word.
int64_t positionOf(const std::vector<std::string>& words, const std::string& w, int occurrence = 0) {
  for (size_t i = 0; i < words.size(); ++i)
    if (words[i] == w && occurrence-- == 0) return static_cast<int64_t>(i) + 1;
  return -1;
}

TEST(PlantedModel, FolderIsAnOrdinaryGpt2Checkpoint) {
  const auto& f = plantedFixture();
  EXPECT_EQ(f.model->config().modelType, "gpt2");
  EXPECT_EQ(f.model->config().nLayers, 24);
  EXPECT_EQ(f.model->config().nHeads, 4);
  EXPECT_TRUE(std::filesystem::exists(f.folder / "tokenizer.json"));
  EXPECT_EQ(headSet(f.planted["expected"]["ioi_circuit"]), (HeadSet{{1, 1}, {2, 1}, {3, 0}, {3, 1}}));
  EXPECT_EQ(headSet(f.planted["expected"]["colored_objects_circuit"]), (HeadSet{{0, 0}, {1, 2}, {3, 0}, {3, 1}}));
  EXPECT_EQ(headSet(f.planted["expected"]["retrieval_heads"]), (HeadSet{{1, 0}, {2, 0}}));
}

TEST(PlantedModel, IoiGreedyCompletionIsTheIndirectObject) {
  const int correct = correctAnswers(planted::ioiPrompts(200, 7));
  EXPECT_GE(correct, 198) << "IOI accuracy " << correct << "/200";
}

TEST(PlantedModel, ColoredObjectsGreedyCompletionIsTheQueriedColour) {
  const int correct = correctAnswers(planted::coloredObjectsPrompts(200, 11));
  EXPECT_GE(correct, 198) << "Colored Objects accuracy " << correct << "/200";
}

TEST(PlantedModel, CorruptedPromptsLoseTheAnswer) {
  // p_ABC (no repeated name) leaves the movers undecided; the logit difference collapses.
  const auto p = planted::ioiPrompts(1, 3)[0];
  const auto clean = runPlanted(toIds(p.words)).logits[-1];
  const double ldClean = (clean[tokenId(p.answer)] - clean[tokenId(p.incorrect)]).item<double>();
  EXPECT_GT(ldClean, 15.0);
  const auto corrupt = runPlanted(toIds(p.corrupted)).logits[-1];
  EXPECT_LT(std::abs((corrupt[tokenId(p.answer)] - corrupt[tokenId(p.incorrect)]).item<double>()), 1.0);
}

TEST(PlantedModel, IoiHeadsAttendWhereBuilt) {
  const auto p = planted::ioiPrompts(1, 5)[0];
  const auto run = runPlanted(toIds(p.words));
  const int64_t end = static_cast<int64_t>(p.words.size());
  const int64_t io = positionOf(p.words, p.answer), s1 = positionOf(p.words, p.incorrect),
                s2 = positionOf(p.words, p.incorrect, 1);
  auto a = [&](int l, int h, int64_t q, int64_t k) { return run.patterns[l][h][q][k].item<double>(); };
  for (int64_t i = 1; i <= end; ++i) EXPECT_GT(a(0, 0, i, i - 1), 0.99) << "previous-token head row " << i;
  EXPECT_GT(a(1, 1, s2, s1), 0.99) << "duplicate-token head: S2 → S1";
  EXPECT_GT(a(2, 1, end, s2), 0.99) << "S-inhibition: END → S2";
  EXPECT_GT(a(3, 0, end, io), 0.99) << "mover: END → IO";
  EXPECT_GT(a(3, 1, end, io), 0.99) << "mover: END → IO";
}

TEST(PlantedModel, ColoredObjectsGathererFindsTheDescribedObject) {
  const auto p = planted::coloredObjectsPrompts(1, 9)[0];
  const auto run = runPlanted(toIds(p.words));
  const int64_t end = static_cast<int64_t>(p.words.size());
  const std::string object = p.words[p.words.size() - 2];
  const int64_t described = positionOf(p.words, object);  // first mention, preceded by its colour
  EXPECT_GT(run.patterns[1][2][end][described].item<double>(), 0.99);
  EXPECT_GT(run.patterns[3][0][end][positionOf(p.words, p.answer)].item<double>(), 0.99);
}

TEST(PlantedModel, InductionHeadsCompleteTheNeedleWithKvCache) {
  const auto& f = plantedFixture();
  const auto needle = planted::needlePrompt(120, 0.4, 1);
  GenerateOptions opts;
  opts.maxNewTokens = static_cast<int>(needle.answer.size());
  // At every decode step, heads 1.0 and 2.0 must put their argmax on the needle token being emitted.
  std::vector<std::vector<int64_t>> argmax(2);
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_pattern", [&](const at::Tensor& t, const HookContext& ctx) -> std::optional<at::Tensor> {
    if (ctx.layer == 1 || ctx.layer == 2)
      argmax[static_cast<size_t>(ctx.layer - 1)].push_back(t[0][0][-1].argmax().item<int64_t>());
    return std::nullopt;
  });
  const auto result = generate(*f.model, toIds(needle.words), opts, &hooks);
  std::vector<int64_t> want;
  for (const auto& w : needle.answer) want.push_back(tokenId(w));
  EXPECT_EQ(result.generated, want);
  const auto prompt = toIds(needle.words);
  // Entry 0 is the prompt's last row (prefill, step −1); entry s predicts generated token s.
  for (size_t layer = 0; layer < 2; ++layer)
    for (size_t s = 0; s < argmax[layer].size() && s < want.size(); ++s) {
      const int64_t j = argmax[layer][s];
      EXPECT_GE(j, needle.needleStart);
      EXPECT_LT(j, needle.needleEnd);
      if (j < static_cast<int64_t>(prompt.size())) {
        EXPECT_EQ(prompt[static_cast<size_t>(j)], want[s]);
      }
    }
}

TEST(PlantedModel, SinkWindowAndSecondarySinkLifetime) {
  // docs/metrics.md §2.1 on hidden states: clipper window from BOS norms, then cos > 0.9 with BOS.
  auto words = planted::idleText();
  words.insert(words.begin() + 5, ";");
  const auto run = runPlanted(toIds(words));
  const int L = static_cast<int>(run.residPost.size());
  std::vector<double> norms;
  for (int l = 0; l < L; ++l) norms.push_back(run.residPost[l][0].norm().item<double>());
  std::vector<double> delta;
  for (int l = 0; l + 1 < L; ++l) delta.push_back(norms[l + 1] - norms[l]);
  const int start = static_cast<int>(std::max_element(delta.begin(), delta.end()) - delta.begin()) + 1;
  const int end = static_cast<int>(std::min_element(delta.begin() + start, delta.end()) - (delta.begin() + start)) + start + 1;
  EXPECT_EQ(start, 1);
  EXPECT_EQ(end, 14);
  const int64_t delim = 6;  // BOS + 5 words
  std::vector<int> layers;
  for (int l = start; l < end; ++l) {
    const auto h = run.residPost[l];
    const double c = at::cosine_similarity(h[delim], h[0], 0).item<double>();
    if (std::abs(c) > 0.9) layers.push_back(l);
    for (int64_t p = 1; p < h.size(0); ++p)
      if (p != delim) {
        EXPECT_LT(std::abs(at::cosine_similarity(h[p], h[0], 0).item<double>()), 0.9);
      }
  }
  EXPECT_EQ(layers, (std::vector<int>{8, 9, 10, 11, 12, 13}));
  // Sink heads 9.0..14.0 attend the delimiter from the layer after its creation.
  EXPECT_GT(run.patterns[10][0][12][delim].item<double>(), 0.3);
  EXPECT_LT(run.patterns[5][0][12][delim].item<double>(), 0.01);
}

TEST(PlantedModel, LocalGlobalSplitAndSinkHeadsOnIdleText) {
  const auto& f = plantedFixture();
  const auto run = runPlanted(toIds(planted::idleText()));
  const int L = static_cast<int>(run.patterns.size()), H = static_cast<int>(run.patterns[0].size(0));
  const int64_t n = run.patterns[0].size(1);
  const auto t = at::arange(n, at::kDouble);
  const auto dist = (t.unsqueeze(1) - t.unsqueeze(0)).clamp_min(0);  // [query, key] = i − j
  std::vector<std::pair<double, std::pair<int, int>>> d;
  HeadSet sinks;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const auto a = run.patterns[l][h].to(at::kDouble);
      d.push_back({(a * dist).sum(1).mean().item<double>(), {l, h}});
      if (a.index({at::indexing::Slice(1), 0}).mean().item<double>() > 0.3) sinks.insert({l, h});
    }
  std::sort(d.begin(), d.end());
  const auto k = static_cast<size_t>(std::lround(0.3 * L * H));
  HeadSet local, global;
  for (size_t i = 0; i < k; ++i) local.insert(d[i].second);
  for (size_t i = d.size() - k; i < d.size(); ++i) global.insert(d[i].second);
  EXPECT_EQ(local, headSet(f.planted["expected"]["local_heads"]));
  EXPECT_EQ(global, headSet(f.planted["expected"]["global_heads"]));
  EXPECT_EQ(sinks, headSet(f.planted["expected"]["sink_heads"]));
}

}  // namespace
}  // namespace mechscope::test
