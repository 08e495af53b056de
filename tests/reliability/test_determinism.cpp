// Determinism on CPU: the same inputs give bit-identical logits and activations from two independently
// loaded models, bit-identical cache datasets and byte-identical analysis JSON from two CLI processes, and
// the results record dtype, device, attention path and seed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/remove_tree.hpp"
#include "core/model/hooked_transformer.hpp"
#include "store/cache_reader.hpp"
#include "tests/engine/engine_test_support.hpp"

using namespace mechscope;

namespace {

const std::vector<std::string> kFamilies = {"gpt2", "pythia", "llama", "qwen2", "qwen3", "mistral"};

std::filesystem::path cliPath() { return std::filesystem::path(MECHSCOPE_BINARY_DIR) / "bin" / "mechscope-cli"; }

/// Runs the CLI with `args` (shell words); its exit status.
int runCli(const std::string& args, const std::filesystem::path& log) {
  const std::string cmd = fmt::format("OMP_NUM_THREADS=2 '{}' {} >'{}' 2>&1", cliPath().string(), args, log.string());
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string fileText(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// 2 rows × 40 ids in [0, vocab) as a --token-ids file.
std::filesystem::path writeTokenIds(const std::filesystem::path& dir, int64_t vocab) {
  nlohmann::json rows = nlohmann::json::array();
  for (int b = 0; b < 2; ++b) {
    nlohmann::json r = nlohmann::json::array();
    for (int p = 0; p < 40; ++p) r.push_back((b * 131 + p * 17 + 3) % vocab);
    rows.push_back(r);
  }
  const auto path = dir / "ids.json";
  std::ofstream(path) << rows.dump();
  return path;
}

}  // namespace

TEST(Determinism, TwoLoadsGiveBitIdenticalLogitsAndActivations) {
  int seen = 0;
  for (const auto& family : kFamilies) {
    const auto folder = test::fixtureModel(family);
    if (!folder) continue;
    const auto a = HookedTransformer::load(*folder);
    const auto b = HookedTransformer::load(*folder);
    const at::Tensor tokens = at::arange(48, at::kLong).remainder(a->config().dVocab).view({2, 24});  // [batch, pos]
    ForwardResult ra, rb;
    const ActivationCache ca = a->runWithCache(tokens, {"*"}, {}, {}, &ra);
    const ActivationCache cb = b->runWithCache(tokens, {"*"}, {}, {}, &rb);
    EXPECT_TRUE(at::equal(ra.logits, rb.logits)) << family << ": logits differ";
    EXPECT_EQ(ra.attentionPath, rb.attentionPath) << family;
    ASSERT_EQ(ca.names(), cb.names()) << family;
    for (const auto& [name, t] : ca.tensors) EXPECT_TRUE(at::equal(t, cb.get(name))) << family << " " << name;
    // Plain forwards (no hooks: the attention may take another path than the hooked run's explicit one, with
    // other rounding at long inputs): equal across instances and across repeated calls.
    const at::Tensor fa = a->forward(tokens).logits;
    EXPECT_TRUE(at::equal(fa, b->forward(tokens).logits)) << family << ": plain forwards of two loads differ";
    EXPECT_TRUE(at::equal(fa, a->forward(tokens).logits)) << family << ": a repeated forward differs";
    ++seen;
  }
  if (seen == 0) GTEST_SKIP() << "no fixtures in shared/fixtures/models";
}

TEST(Determinism, CliCacheIsBitIdenticalAcrossProcessesAndRecordsProvenance) {
  const auto folder = test::fixtureModel("gpt2");
  if (!folder) GTEST_SKIP() << "no gpt2 fixture";
  if (!std::filesystem::exists(cliPath())) GTEST_SKIP() << "no mechscope-cli at " << cliPath();
  const auto dir = test::tempDir("determinism_cache");
  const auto ids = writeTokenIds(dir, 1000);
  for (const char* name : {"a", "b"})
    ASSERT_EQ(runCli(fmt::format("run --model '{}' --token-ids '{}' --hooks '*' --cache '{}'", folder->string(),
                                 ids.string(), (dir / (std::string(name) + ".h5")).string()),
                     dir / "log.txt"),
              0)
        << fileText(dir / "log.txt");
  const auto ra = store::CacheReader::open(dir / "a.h5");
  const auto rb = store::CacheReader::open(dir / "b.h5");
  const auto da = ra.datasets(), db = rb.datasets();
  ASSERT_EQ(da.size(), db.size());
  EXPECT_GT(da.size(), 40u);
  for (std::size_t i = 0; i < da.size(); ++i) {
    ASSERT_EQ(da[i].path, db[i].path);
    if (da[i].path == "/token_strings") continue;  // strings (absent: no tokenizer in the fixture)
    EXPECT_TRUE(at::equal(ra.read(da[i].path), rb.read(db[i].path))) << da[i].path;
  }
  auto attrsA = ra.attributes(), attrsB = rb.attributes();
  attrsA.erase("created_utc");
  attrsB.erase("created_utc");
  attrsA.erase("command_line");  // names the output file
  attrsB.erase("command_line");
  EXPECT_EQ(attrsA, attrsB);
  const store::Provenance p = ra.provenance();
  EXPECT_EQ(p.dtype, "fp32");
  EXPECT_EQ(p.device, "cpu");
  EXPECT_TRUE(p.attentionPath == "explicit" || p.attentionPath == "chunked" || p.attentionPath == "fused")
      << p.attentionPath;
  EXPECT_EQ(p.weightsHash.rfind("fnv1a64:", 0), 0u) << p.weightsHash;
  mechscope::removeTree(dir);
}

TEST(Determinism, CliAnalysisJsonIsByteIdenticalAndRecordsProvenance) {
  const auto folder = test::fixtureModel("llama");
  if (!folder) GTEST_SKIP() << "no llama fixture";
  if (!std::filesystem::exists(cliPath())) GTEST_SKIP() << "no mechscope-cli at " << cliPath();
  const auto dir = test::tempDir("determinism_json");
  const auto ids = writeTokenIds(dir, 1000);
  // Both runs write out.json (the command line, recorded in the provenance, names the output), renamed after.
  for (const std::string mode : {"", " --materialize"})
    for (const char* name : {"a", "b"}) {
      ASSERT_EQ(runCli(fmt::format("waad-fai --model '{}' --token-ids '{}' --json '{}'{}", folder->string(), ids.string(),
                                   (dir / "out.json").string(), mode),
                       dir / "log.txt"),
                0)
          << fileText(dir / "log.txt");
      std::filesystem::rename(dir / "out.json", dir / fmt::format("{}{}.json", name, mode.empty() ? "" : "_m"));
    }
  EXPECT_EQ(fileText(dir / "a.json"), fileText(dir / "b.json")) << "two runs of waad-fai differ";
  EXPECT_EQ(fileText(dir / "a_m.json"), fileText(dir / "b_m.json")) << "two runs of waad-fai --materialize differ";
  const auto j = nlohmann::json::parse(fileText(dir / "a.json"));
  ASSERT_TRUE(j.contains("provenance")) << j.dump().substr(0, 300);
  const auto& p = j["provenance"];
  EXPECT_EQ(p["dtype"], "fp32");
  EXPECT_EQ(p["device"], "cpu");
  EXPECT_EQ(p["attention_path"], "probe");
  EXPECT_EQ(nlohmann::json::parse(fileText(dir / "a_m.json"))["provenance"]["attention_path"], "materialized");
  EXPECT_EQ(p["family"], "llama");
  mechscope::removeTree(dir);
}

TEST(Determinism, SeededCommandsRecordTheirSeed) {
  if (!std::filesystem::exists(cliPath())) GTEST_SKIP() << "no mechscope-cli at " << cliPath();
  const auto dir = test::tempDir("determinism_seed");
  ASSERT_EQ(runCli(fmt::format("plant --out '{}'", (dir / "planted").string()), dir / "log.txt"), 0) << fileText(dir / "log.txt");
  for (const char* name : {"a", "b"}) {
    ASSERT_EQ(runCli(fmt::format("ablate --model '{}' --dataset ioi --n 6 --heads 3.0,3.1 --method resample --seed 7 --json '{}'",
                                 (dir / "planted").string(), (dir / "out.json").string()),
                     dir / "log.txt"),
              0)
        << fileText(dir / "log.txt");
    std::filesystem::rename(dir / "out.json", dir / (std::string(name) + ".json"));
  }
  EXPECT_EQ(fileText(dir / "a.json"), fileText(dir / "b.json"));
  const auto j = nlohmann::json::parse(fileText(dir / "a.json"));
  EXPECT_EQ(j["provenance"]["seed"], 7);
  EXPECT_NE(j["provenance"]["command_line"].get<std::string>().find("--seed 7"), std::string::npos);
  mechscope::removeTree(dir);
}
