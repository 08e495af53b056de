// Tokenizer benchmarks: loading tokenizer.json files and encoding 1 MB of English-like text on one core.
// Needs the shared fixtures ($MECHSCOPE_SHARED or ../shared next to the source tree).
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include <benchmark/benchmark.h>

#include "core/tokenizer/tokenizer.hpp"

namespace {

std::filesystem::path fixtures() {
  const char* env = std::getenv("MECHSCOPE_SHARED");
  const std::filesystem::path base = env && *env ? std::filesystem::path(env) : std::filesystem::path(MECHSCOPE_SOURCE_DIR) / ".." / "shared";
  return base / "fixtures" / "tokenizers";
}

// ~1 MB of English-like prose: common words (Zipf-ish), some rare made-up words, punctuation, digits, newlines.
const std::string& englishText() {
  static const std::string text = [] {
    static const char* words[] = {
        "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as",
        "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "hot", "word", "but", "what",
        "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an",
        "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write",
        "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more",
        "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water",
        "than", "call", "first", "who", "may", "down", "side", "been", "now", "find", "attention", "head", "model",
        "retrieval", "interpretability", "mechanism", "transformer", "residual", "stream", "Mary", "John", "store",
        "drink", "needle", "haystack", "San", "Francisco", "sandwich", "weather", "government", "university"};
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> pick(0, static_cast<int>(std::size(words)) - 1), letter(0, 25), len(3, 11),
        r100(0, 99);
    std::string s;
    s.reserve(1 << 20);
    while (s.size() < (1u << 20)) {
      const int r = r100(rng);
      if (r < 8) {
        std::string w;
        for (int k = len(rng); k > 0; --k) w.push_back(static_cast<char>('a' + letter(rng)));
        s += w;
      } else if (r < 10) {
        s += std::to_string(rng() % 100000);
      } else {
        s += words[std::min(pick(rng), pick(rng))];
      }
      const int p = r100(rng);
      s += p < 6 ? ". " : p < 12 ? ", " : p < 13 ? ".\n\n" : p < 14 ? "'s " : " ";
    }
    return s;
  }();
  return text;
}

void BM_Load(benchmark::State& state, const char* name) {
  const auto dir = fixtures() / name;
  if (!std::filesystem::exists(dir / "tokenizer.json")) {
    state.SkipWithError("fixtures not found");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(mechscope::Tokenizer::fromFile(dir));
}

void BM_Encode1MB(benchmark::State& state, const char* name) {
  const auto dir = fixtures() / name;
  if (!std::filesystem::exists(dir / "tokenizer.json")) {
    state.SkipWithError("fixtures not found");
    return;
  }
  const auto tok = mechscope::Tokenizer::fromFile(dir);
  const std::string& text = englishText();
  size_t tokens = 0;
  for (auto _ : state) {
    auto enc = tok.encode(text);
    tokens = enc.ids.size();
    benchmark::DoNotOptimize(enc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}

BENCHMARK_CAPTURE(BM_Load, gpt2, "gpt2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, llama2, "llama2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, llama3, "llama3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Load, qwen3, "qwen3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode1MB, gpt2, "gpt2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode1MB, llama2, "llama2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode1MB, llama3, "llama3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode1MB, qwen3, "qwen3")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
