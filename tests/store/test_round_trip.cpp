// Round trips through CacheWriter → CacheReader: every dtype path, slices, tokens, provenance, analyses.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/cache_writer.hpp"
#include "store/synthetic_cache.hpp"
#include "store_test_util.hpp"

using namespace mechscope;
using namespace mechscope::store;
using mechscope::store::testing::ScratchDir;

namespace {

Provenance sampleProvenance() {
  Provenance p;
  p.modelFolder = "../shared/fixtures/models/gpt2";
  p.family = "gpt2";
  p.configJson = std::string(R"({"model_type": "gpt2", "n_layer": 2, "pad": ")") + std::string(100000, 'x') + "\"}";
  p.weightsHash = "sha256:0123abcd";
  p.dtype = "float32";
  p.device = "cpu";
  p.attentionPath = "explicit";
  p.bosHandling = "prepend";
  p.padding = "right";
  p.commandLine = "mechscope-cli run --model gpt2 --cache out.h5";
  return p;
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

bool bitEqual(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && at::equal(a, b);
}

}  // namespace

TEST(StoreRoundTrip, Float32ActivationsAreIdenticalAndNamedByHook) {
  ScratchDir dir;
  const auto path = dir / "cache.h5";
  const at::Tensor pattern = at::softmax(randn({2, 4, 24, 24}, 1), -1);  // [batch, head, query, key]
  const at::Tensor resid = randn({2, 24, 64}, 2);                        // [batch, pos, d_model]
  const at::Tensor z = randn({2, 24, 4, 16}, 3);                         // [batch, pos, head, d_head]
  {
    CacheWriter w(path, sampleProvenance());
    w.writeActivation("blocks.0.attn.hook_pattern", pattern);
    w.writeActivation("blocks.0.hook_resid_pre", resid);
    w.writeActivation("blocks.1.attn.hook_z", z);
    EXPECT_TRUE(std::filesystem::exists(w.partialPath()));
    EXPECT_FALSE(std::filesystem::exists(path));
    w.commit();
    EXPECT_FALSE(std::filesystem::exists(w.partialPath()));
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  const auto r = CacheReader::open(path);
  EXPECT_EQ(r.schemaVersion(), 1);
  const auto acts = r.activations();
  ASSERT_EQ(acts.size(), 3u);
  EXPECT_EQ(acts[0].name, "blocks.0.attn.hook_pattern");
  EXPECT_EQ(acts[0].path, "/activations/blocks.0.attn.hook_pattern");
  EXPECT_EQ(acts[0].shape, (std::vector<int64_t>{2, 4, 24, 24}));
  EXPECT_EQ(acts[0].dtype, "float32");
  EXPECT_EQ(acts[0].chunks, (std::vector<int64_t>{1, 1, 24, 24}));
  EXPECT_EQ(acts[0].axes, "batch,head,query,key");
  EXPECT_EQ(acts[0].compression, "none");
  EXPECT_EQ(acts[1].name, "blocks.0.hook_resid_pre");
  EXPECT_EQ(acts[1].chunks, (std::vector<int64_t>{1, 24, 64}));
  EXPECT_EQ(acts[2].axes, "batch,pos,head,d_head");
  EXPECT_TRUE(bitEqual(r.read("blocks.0.attn.hook_pattern"), pattern));
  EXPECT_TRUE(bitEqual(r.read("/activations/blocks.0.hook_resid_pre"), resid));
  EXPECT_TRUE(bitEqual(r.read("blocks.1.attn.hook_z"), z));

  const auto cache = r.toActivationCache({"blocks.0.*"});
  EXPECT_EQ(cache.names(), (std::vector<std::string>{"blocks.0.attn.hook_pattern", "blocks.0.hook_resid_pre"}));
  EXPECT_TRUE(bitEqual(cache.at("pattern", 0), pattern));
  EXPECT_FALSE(cache.tokens.defined());
  EXPECT_EQ(r.toActivationCache().tensors.size(), 3u);
  EXPECT_EQ(r.toActivationCache({"*hook_z", "*resid*"}).tensors.size(), 2u);
}

TEST(StoreRoundTrip, SlicesMatchTensorIndexing) {
  ScratchDir dir;
  const auto path = dir / "slices.h5";
  const at::Tensor pattern = randn({2, 3, 40, 40}, 7);
  {
    CacheWriter w(path, sampleProvenance());
    w.writeActivation("blocks.2.attn.hook_pattern", pattern);
    w.commit();
  }
  const auto r = CacheReader::open(path);
  using S = SliceRange;
  // One head of one batch row: [query, key]
  auto head = r.readSlice("blocks.2.attn.hook_pattern", {S::at(1), S::at(2)});
  EXPECT_EQ(head.sizes(), (at::IntArrayRef{40, 40}));
  EXPECT_TRUE(bitEqual(head, pattern.index({1, 2})));
  // Position range of queries, negative index, step.
  auto part = r.readSlice("blocks.2.attn.hook_pattern", parseSlice("0,-1,5:17,::3"));
  EXPECT_TRUE(bitEqual(part, pattern[0][2].slice(0, 5, 17).slice(1, 0, 40, 3)));
  EXPECT_EQ(part.sizes(), (at::IntArrayRef{12, 14}));
  // Ranges keep dims.
  auto keep = r.readSlice("blocks.2.attn.hook_pattern", {S::range(1, 2), S::range(0, 2)});
  EXPECT_EQ(keep.sizes(), (at::IntArrayRef{1, 2, 40, 40}));
  EXPECT_TRUE(bitEqual(keep, pattern.slice(0, 1, 2).slice(1, 0, 2)));
  // Empty range → empty tensor of the right shape.
  EXPECT_EQ(r.readSlice("blocks.2.attn.hook_pattern", parseSlice("0,0,5:5")).sizes(), (at::IntArrayRef{0, 40}));
  // Scalar element.
  auto one = r.readSlice("blocks.2.attn.hook_pattern", parseSlice("1,1,7,3"));
  EXPECT_EQ(one.dim(), 0);
  EXPECT_EQ(one.item<float>(), pattern[1][1][7][3].item<float>());
  // Errors name the dataset.
  try {
    (void)r.readSlice("blocks.2.attn.hook_pattern", parseSlice("2"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hook_pattern"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)r.read("blocks.9.attn.hook_pattern"), InputError);
}

TEST(StoreRoundTrip, EveryDtypePath) {
  ScratchDir dir;
  const at::Tensor f32 = randn({2, 5, 8}, 11);
  const at::Tensor f64 = f32.to(at::kDouble) * 1.000000001;
  const at::Tensor bf16 = f32.to(at::kBFloat16);
  const at::Tensor half = f32.to(at::kHalf);
  const at::Tensor strided = randn({8, 5, 2}, 12).permute({2, 1, 0});  // non-contiguous in
  // fp32 storage (default): fp32 identical; fp64 rounded to fp32; bf16 and fp16 widened exactly.
  {
    CacheWriter w(dir / "f32.h5", sampleProvenance());
    w.writeActivation("a.f32", f32);
    w.writeActivation("a.f64", f64);
    w.writeActivation("a.bf16", bf16);
    w.writeActivation("a.f16", half);
    w.writeActivation("a.strided", strided);
    w.writeLogits(f32);
    w.commit();
    const auto r = CacheReader::open(dir / "f32.h5");
    EXPECT_TRUE(bitEqual(r.read("a.f32"), f32));
    EXPECT_TRUE(bitEqual(r.read("a.f64"), f64.to(at::kFloat)));
    EXPECT_TRUE(bitEqual(r.read("a.bf16"), bf16.to(at::kFloat)));
    EXPECT_TRUE(bitEqual(r.read("a.f16"), half.to(at::kFloat)));
    EXPECT_TRUE(bitEqual(r.read("a.strided"), strided.contiguous()));
    EXPECT_TRUE(bitEqual(r.read("logits"), f32));
    EXPECT_EQ(r.info("/logits").dtype, "float32");
    EXPECT_EQ(r.attributes("/").at("storage_dtype"), "float32");
  }
  // fp16 storage: values are the fp16 rounding of the input, read back as kHalf.
  {
    CacheOptions o;
    o.dtype = StorageDtype::Float16;
    CacheWriter w(dir / "f16.h5", sampleProvenance(), o);
    w.writeActivation("a.f32", f32);
    w.writeActivation("a.bf16", bf16);
    w.writeLogits(f32);
    w.commit();
    const auto r = CacheReader::open(dir / "f16.h5");
    EXPECT_EQ(r.info("a.f32").dtype, "float16");
    EXPECT_TRUE(bitEqual(r.read("a.f32"), f32.to(at::kHalf)));
    EXPECT_TRUE(bitEqual(r.read("a.bf16"), bf16.to(at::kHalf)));
    EXPECT_TRUE(bitEqual(r.read("logits"), f32.to(at::kHalf)));
    // The stored fp16 values are within fp16 rounding of the originals.
    EXPECT_LE((r.read("a.f32").to(at::kFloat) - f32).abs().max().item<float>(),
              f32.abs().max().item<float>() * std::ldexp(1.0f, -11));
  }
  // bf16 as raw uint16 bits with the explicit attribute: bit-identical bf16 back.
  {
    CacheOptions o;
    o.dtype = StorageDtype::BFloat16;
    CacheWriter w(dir / "bf16.h5", sampleProvenance(), o);
    w.writeActivation("a.bf16", bf16);
    w.writeActivation("a.f32", f32);
    w.commit();
    const auto r = CacheReader::open(dir / "bf16.h5");
    EXPECT_EQ(r.info("a.bf16").dtype, "bfloat16");
    EXPECT_EQ(r.attributes("a.bf16").at("mechscope_dtype"), "bfloat16");
    EXPECT_TRUE(bitEqual(r.read("a.bf16"), bf16));
    EXPECT_TRUE(bitEqual(r.read("a.f32"), f32.to(at::kBFloat16)));
  }
  // Integer activations keep an integer type whatever the float storage dtype.
  {
    CacheOptions o;
    o.dtype = StorageDtype::Float16;
    CacheWriter w(dir / "int.h5", sampleProvenance(), o);
    const at::Tensor i64 = at::arange(-5, 7, at::TensorOptions().dtype(at::kLong)).reshape({3, 4}) * int64_t{1000000000000};
    const at::Tensor i32 = at::arange(12, at::TensorOptions().dtype(at::kInt)).reshape({3, 4});
    const at::Tensor b = i32.remainder(2).to(at::kBool);
    w.writeActivation("a.i64", i64);
    w.writeActivation("a.i32", i32);
    w.writeActivation("a.bool", b);
    w.commit();
    const auto r = CacheReader::open(dir / "int.h5");
    EXPECT_TRUE(bitEqual(r.read("a.i64"), i64));
    EXPECT_TRUE(bitEqual(r.read("a.i32"), i32));
    EXPECT_TRUE(bitEqual(r.read("a.bool"), b.to(at::kByte)));
  }
}

TEST(StoreRoundTrip, CompressionIsOptionalAndLossless) {
  ScratchDir dir;
  const at::Tensor pattern = at::softmax(randn({1, 4, 64, 64}, 5), -1);
  CacheOptions o;
  o.gzipLevel = 4;
  o.shuffle = true;
  {
    CacheWriter w(dir / "gz.h5", sampleProvenance(), o);
    w.writeActivation("blocks.0.attn.hook_pattern", pattern);
    w.writeActivation("zeros", at::zeros({4, 256, 256}));
    w.commit();
  }
  const auto r = CacheReader::open(dir / "gz.h5");
  EXPECT_EQ(r.info("blocks.0.attn.hook_pattern").compression, "shuffle + gzip 4");
  EXPECT_TRUE(bitEqual(r.read("blocks.0.attn.hook_pattern"), pattern));
  EXPECT_TRUE(bitEqual(r.readSlice("blocks.0.attn.hook_pattern", parseSlice("0,3")), pattern[0][3]));
  EXPECT_TRUE(bitEqual(r.read("zeros"), at::zeros({4, 256, 256})));
  // 1 MiB of zeros compresses to far less than that.
  EXPECT_LT(std::filesystem::file_size(dir / "gz.h5"), 200u * 1024u);
  EXPECT_EQ(r.attributes("/").at("gzip_level"), "4");
  CacheOptions bad;
  bad.gzipLevel = 10;
  EXPECT_THROW(CacheWriter(dir / "bad.h5", sampleProvenance(), bad), InputError);
}

TEST(StoreRoundTrip, TokensStringsProvenanceAttributes) {
  ScratchDir dir;
  const auto path = dir / "tok.h5";
  const at::Tensor tokens = at::tensor({50256, 15496, 11, 995, 0, 1, 2, 3}, at::TensorOptions().dtype(at::kLong)).reshape({2, 4});
  const std::vector<std::vector<std::string>> strings = {{"<|endoftext|>", "Hello", ",", " world"},
                                                         {"", "é", "日本語", "\xF0\x9F\x98\x80 emoji"}};
  Provenance prov = sampleProvenance();
  {
    CacheWriter w(path, prov);
    w.writeTokens(tokens.to(at::kInt), strings);
    w.setAttribute("/", "note", "hello");
    w.setAttribute("/", "seed", int64_t{42});
    w.setAttribute("/", "temperature", 0.5);
    w.writeAnalysisArray("sinks", "scores", at::arange(6, at::TensorOptions().dtype(at::kDouble)).reshape({2, 3}));
    w.writeAnalysisArray("sinks", "per_test/0/argmax", at::arange(4, at::TensorOptions().dtype(at::kLong)));
    w.writeAnalysisJson("sinks", "params", R"({"epsilon": 0.3})");
    w.setAttribute("/analyses/sinks", "metric", "sink score");
    EXPECT_THROW(w.writeTokens(tokens, {{"a"}}), InputError);
    EXPECT_THROW(w.writeTokens(at::zeros({2, 4}), {}), InputError);
    EXPECT_THROW(w.writeActivation("a/b", tokens), InputError);
    EXPECT_THROW(w.writeActivation("", tokens), InputError);
    w.commit();
    EXPECT_THROW(w.writeActivation("late", tokens), Error);
    EXPECT_THROW(w.commit(), Error);
  }
  const auto r = CacheReader::open(path);
  EXPECT_TRUE(bitEqual(r.tokens(), tokens));
  EXPECT_EQ(r.tokenStrings(), strings);
  const auto p = r.provenance();
  EXPECT_EQ(p.modelFolder, prov.modelFolder);
  EXPECT_EQ(p.family, "gpt2");
  EXPECT_EQ(p.configJson, prov.configJson);  // > 64 KiB attribute
  EXPECT_EQ(p.weightsHash, prov.weightsHash);
  EXPECT_EQ(p.dtype, "float32");
  EXPECT_EQ(p.device, "cpu");
  EXPECT_EQ(p.attentionPath, "explicit");
  EXPECT_EQ(p.bosHandling, "prepend");
  EXPECT_EQ(p.padding, "right");
  EXPECT_EQ(p.commandLine, prov.commandLine);
  EXPECT_FALSE(p.mechscopeVersion.empty());
  EXPECT_EQ(p.createdUtc.size(), 20u);  // 2025-01-01T00:00:00Z
  const auto attrs = r.attributes("/");
  EXPECT_EQ(attrs.at("note"), "hello");
  EXPECT_EQ(attrs.at("seed"), "42");
  EXPECT_EQ(attrs.at("temperature"), "0.5");
  EXPECT_EQ(attrs.at("schema_version"), "1");
  EXPECT_EQ(attrs.at("mechscope_complete"), "1");
  EXPECT_TRUE(bitEqual(r.read("/analyses/sinks/scores"), at::arange(6, at::TensorOptions().dtype(at::kDouble)).reshape({2, 3})));
  EXPECT_TRUE(bitEqual(r.read("/analyses/sinks/per_test/0/argmax"), at::arange(4, at::TensorOptions().dtype(at::kLong))));
  EXPECT_EQ(r.readText("/analyses/sinks/params"), R"({"epsilon": 0.3})");
  EXPECT_EQ(r.attributes("/analyses/sinks").at("metric"), "sink score");
  EXPECT_THROW((void)r.read("/token_strings"), InputError);
  const auto all = r.datasets();
  std::vector<std::string> paths;
  for (const auto& d : all) paths.push_back(d.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"/analyses/sinks/params", "/analyses/sinks/per_test/0/argmax",
                                             "/analyses/sinks/scores", "/token_strings", "/tokens"}));
}

TEST(StoreRoundTrip, BlockWritesThroughDatasetWriter) {
  ScratchDir dir;
  const auto path = dir / "blocks.h5";
  const at::Tensor full = randn({6, 2, 10, 8}, 21);  // [layer, batch, pos, d]
  {
    CacheOptions o;
    o.chunkBytes = 1024;  // force blocks that straddle chunk edges
    CacheWriter w(path, sampleProvenance(), o);
    auto dw = w.beginDataset("/analyses/stack/resid", {6, 2, 10, 8}, StorageDtype::Float32);
    EXPECT_EQ(dw.path(), "/analyses/stack/resid");
    for (int64_t l = 5; l >= 0; --l) dw.write({l, 0, 0, 0}, full.slice(0, l, l + 1));
    auto part = w.beginDataset("partial", {4, 4}, StorageDtype::Float16);
    part.write({1, 1}, at::ones({2, 3}));
    EXPECT_THROW(part.write({3, 3}, at::ones({2, 2})), InputError);
    EXPECT_THROW(part.write({0}, at::ones({2, 2})), InputError);
    EXPECT_THROW(w.beginDataset("partial", {4, 4}, StorageDtype::Float16), InputError);
    w.commit();
    EXPECT_THROW(dw.write({0, 0, 0, 0}, full.slice(0, 0, 1)), Error);
  }
  const auto r = CacheReader::open(path);
  EXPECT_TRUE(bitEqual(r.read("/analyses/stack/resid"), full));
  at::Tensor expect = at::zeros({4, 4}, at::TensorOptions().dtype(at::kHalf));
  expect.slice(0, 1, 3).slice(1, 1, 4).fill_(1);
  EXPECT_TRUE(bitEqual(r.read("partial"), expect));
}

TEST(StoreRoundTrip, SyntheticModelEveryHook) {
  ScratchDir dir;
  const auto path = dir / "synthetic.h5";
  const SyntheticShape shape{3, 2, 12, 4, 32};
  const auto stats = streamSyntheticCache(path, shape);
  const int64_t nHooks = 3 + 3 * 15;
  EXPECT_EQ(stats.datasets, nHooks);
  EXPECT_EQ(stats.bytes, syntheticCacheBytes(shape));
  const auto r = CacheReader::open(path);
  const auto acts = r.activations();
  ASSERT_EQ(static_cast<int64_t>(acts.size()), nHooks);
  std::vector<std::string> expected;
  for (const auto& h : syntheticPreHooks()) expected.push_back(h);
  for (int l = 0; l < 3; ++l)
    for (const auto& h : syntheticLayerHooks(l)) expected.push_back(h);
  for (const auto& h : syntheticPostHooks()) expected.push_back(h);
  for (const auto& name : expected) {
    ASSERT_TRUE(r.has(name)) << name;
    EXPECT_TRUE(bitEqual(r.read(name), syntheticActivation(name, shape))) << name;
  }
  // Patterns are causal and row-stochastic.
  const at::Tensor pat = r.read("blocks.1.attn.hook_pattern");
  EXPECT_EQ(pat.sizes(), (at::IntArrayRef{2, 4, 12, 12}));
  EXPECT_LT((pat.sum(-1) - 1).abs().max().item<float>(), 1e-6f);
  EXPECT_EQ(pat.triu(1).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(r.read("blocks.2.attn.hook_q").sizes(), (at::IntArrayRef{2, 12, 4, 8}));
  EXPECT_EQ(r.read("blocks.0.mlp.hook_post").sizes(), (at::IntArrayRef{2, 12, 128}));
  EXPECT_EQ(r.tokenStrings()[1][0], "t12");
  const auto cache = r.toActivationCache({"blocks.2.*"});
  EXPECT_EQ(cache.tensors.size(), 15u);
  EXPECT_EQ(cache.tokens.sizes(), (at::IntArrayRef{2, 12}));
}
