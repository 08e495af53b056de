// The pre-run estimator (core/model/memory_estimate): hook sizes equal the tensors a real forward pass
// produces, the weight estimate matches the parameter count, the cache-size estimate matches a written
// file, the measured CPU peak of a forward stays under the estimate, and refusals carry the numbers.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/model/memory_estimate.hpp"
#include "core/probe/cpu_memory_meter.hpp"
#include "store/cache_writer.hpp"
#include "tests/engine/engine_test_support.hpp"

using namespace mechscope;

namespace {

// The mixture-of-experts families (tests/data/families) check that every expert is counted.
const std::vector<std::string> kEstimateFamilies = {"gpt2",    "pythia",    "llama",     "qwen2",  "qwen3",
                                                    "mistral", "mixtral",   "qwen2_moe", "qwen3_moe", "gpt_oss"};

at::Tensor someTokens(const ModelConfig& cfg, int64_t batch, int64_t pos) {
  return at::arange(batch * pos, at::kLong).remainder(cfg.dVocab).view({batch, pos});  // [batch, pos]
}

int64_t procValue(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1)) * 1024;
  return -1;
}

}  // namespace

TEST(MemoryEstimate, HookSizesMatchAForwardPassOfEveryFamily) {
  int seen = 0;
  for (const auto& family : kEstimateFamilies) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto model = HookedTransformer::load(*folder);
    const ModelConfig& cfg = model->config();
    const ActivationCache cache = model->runWithCache(someTokens(cfg, 2, 11), {"*"});
    ASSERT_GT(cache.tensors.size(), 10u) << family;
    for (const auto& [name, t] : cache.tensors)
      EXPECT_EQ(hookElementCount(cfg, name, 2, 11), t.numel()) << family << " " << name;
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no fixtures in shared/fixtures/models";
}

TEST(MemoryEstimate, WeightsMatchTheParameterCount) {
  int seen = 0;
  for (const auto& family : kEstimateFamilies) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto model = HookedTransformer::load(*folder);
    ForwardMemoryOptions o;
    const MemoryEstimate e = estimateForwardMemory(model->config(), o);
    const double ratio = static_cast<double>(e.weights) / (4.0 * static_cast<double>(model->parameterCount()));
    EXPECT_NEAR(ratio, 1.0, 0.05) << family << ": estimate " << e.weights << " B, parameters " << model->parameterCount();
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no fixtures in shared/fixtures/models";
}

TEST(MemoryEstimate, CacheFileSizeMatchesAWrittenCache) {
  const auto folder = test::fixtureModel("gpt2");
  if (!folder) GTEST_SKIP() << "no gpt2 fixture";
  const auto model = HookedTransformer::load(*folder);
  const at::Tensor tokens = someTokens(model->config(), 2, 64);
  ForwardResult result;
  const ActivationCache cache = model->runWithCache(tokens, {"*"}, {}, {}, &result);
  const auto dir = test::tempDir("estimate_cache");
  const auto path = dir / "c.h5";
  {
    store::CacheWriter w(path, store::Provenance{});
    w.writeTokens(tokens);
    w.writeLogits(result.logits);
    for (const auto& [n, t] : cache.tensors) w.writeActivation(n, t);
    w.commit();
  }
  const int64_t predicted = cacheFileBytes(model->config(), cache.names(), 2, 64);
  const auto actual = static_cast<int64_t>(std::filesystem::file_size(path));
  mechscope::removeTree(dir);
  EXPECT_GE(actual, predicted);
  EXPECT_LE(actual, predicted + predicted / 10 + (int64_t{256} << 10)) << "predicted " << predicted;
}

TEST(MemoryEstimate, MeasuredForwardPeakStaysUnderTheEstimate) {
  const auto folder = test::fixtureModel("gpt2");
  if (!folder) GTEST_SKIP() << "no gpt2 fixture";
  const auto model = HookedTransformer::load(*folder);
  const ModelConfig& cfg = model->config();
  const at::Tensor tokens = someTokens(cfg, 2, 128);
  HookSet hooks;  // every hook, nothing kept (as `run --cache` streams them)
  hooks.add("*", [](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> { return std::nullopt; });
  int64_t peak = 0;
  {
    CpuMemoryMeter meter;
    ForwardOptions fo;
    fo.path = AttentionPath::Explicit;
    (void)model->forward(tokens, fo, &hooks);
    peak = meter.peakBytes();
  }
  ForwardMemoryOptions o;
  o.batch = 2;
  o.positions = 128;
  const MemoryEstimate e = estimateForwardMemory(cfg, o);
  std::cout << "forward peak " << peak << " B; estimate (layer + kept) " << e.layer + e.retained << " B\n";
  EXPECT_GT(peak, 0);
  EXPECT_LE(peak, e.layer + e.retained) << e.describe();
  EXPECT_LE(e.layer + e.retained, 8 * peak) << "the estimate is far too pessimistic: " << e.describe();
}

TEST(MemoryEstimate, AvailableMemoryIsBoundedByMemTotal) {
  std::string source;
  const int64_t avail = availableMemoryBytes(&source);
  ASSERT_GT(avail, 0);
  EXPECT_FALSE(source.empty());
  EXPECT_LE(avail, procValue("/proc/meminfo", "MemTotal"));
}

TEST(MemoryEstimate, AddressSpaceLimitBoundsAvailableMemory) {
  const pid_t pid = fork();
  if (pid == 0) {  // the child limits itself; the parent keeps its own limits
    const int64_t vm = procValue("/proc/self/status", "VmSize");
    const rlimit lim{static_cast<rlim_t>(vm + (int64_t{64} << 20)), RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(3);
    std::string source;
    const int64_t avail = availableMemoryBytes(&source);
    _exit(source == "RLIMIT_AS" && avail > 0 && avail <= (int64_t{64} << 20) ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "availableMemoryBytes ignored RLIMIT_AS";
}

TEST(MemoryEstimate, RefusalCarriesTheEstimateAndForceOverrides) {
  MemoryEstimate e;
  e.weights = int64_t{3} << 50;  // 3 PiB
  e.layer = int64_t{1} << 30;
  try {
    checkMemoryOrThrow("sinks", "--materialize on 1×65536 tokens", e, false);
    FAIL() << "expected a refusal";
  } catch (const InputError& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find("sinks: --materialize on 1×65536 tokens needs ≈ "), std::string::npos) << msg;
    EXPECT_NE(msg.find("weights 3145728.0 GiB + one layer 1.0 GiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(checkMemoryOrThrow("sinks", "x", e, true));
  EXPECT_NO_THROW(checkMemoryOrThrow("sinks", "x", MemoryEstimate{1024, 1024, 1024}, false));
}

// Loading onto a GPU too small for the weights is refused before any weight is read, with the numbers. The
// Llama-2-7B shape in bf16 is 6.74e9 parameters: 12.6 GiB, which 8 GiB cannot hold and 16 GiB can.
TEST(MemoryEstimate, WeightsThatCannotFitTheDeviceAreRefused) {
  ModelConfig c;
  c.nLayers = 32;
  c.dModel = 4096;
  c.nHeads = c.nKvHeads = 32;
  c.dHead = 128;
  c.dMlp = 11008;
  c.dVocab = 32000;
  c.gatedMlp = true;
  ForwardMemoryOptions fo;
  fo.elementBytes = 2;
  const int64_t weights = estimateForwardMemory(c, fo).weights;
  EXPECT_NEAR(static_cast<double>(weights) / 2.0, 6.74e9, 0.01e9);  // Llama-2-7B: 6,738,415,616 parameters
  try {
    checkWeightsFit("models/llama7b", "cuda:0", "bf16", weights, int64_t{8} << 30);
    FAIL() << "expected a refusal";
  } catch (const InputError& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find("models/llama7b: the weights need ≈ 12.6 GiB in bf16 but cuda:0 has only 8.0 GiB free"), std::string::npos)
        << msg;
  }
  EXPECT_NO_THROW(checkWeightsFit("m", "cuda:0", "bf16", weights, int64_t{16} << 30));
  EXPECT_NO_THROW(checkWeightsFit("m", "cuda:0", "bf16", weights, -1));  // unknown: no check
}

TEST(MemoryEstimate, DiskRefusalNamesTheFile) {
  const auto dir = test::tempDir("estimate_disk");
  const std::string path = (dir / "big.h5").string();
  try {
    checkDiskOrThrow("run", path, int64_t{1} << 60, false);
    FAIL() << "expected a refusal";
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find(path), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("1073741824.0 GiB"), std::string::npos) << err.what();
  }
  EXPECT_NO_THROW(checkDiskOrThrow("run", path, int64_t{1} << 60, true));
  EXPECT_NO_THROW(checkDiskOrThrow("run", path, 4096, false));
  EXPECT_GT(freeDiskBytes(path), 0);
  mechscope::removeTree(dir);
}

TEST(MemoryEstimate, FormatsBytes) {
  EXPECT_EQ(formatBytes(17), "17 B");
  EXPECT_EQ(formatBytes(12 * 1024), "12.0 KiB");
  EXPECT_EQ(formatBytes(int64_t{300} << 20), "300.0 MiB");
  EXPECT_EQ(formatBytes(int64_t{3} << 29), "1.5 GiB");
}
