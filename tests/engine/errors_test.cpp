// Bad inputs give one-line InputErrors naming the file/tensor and the problem.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;
namespace fs = std::filesystem;

namespace {

/// Runs `fn`, expects an exception of type E whose one-line message contains every `parts`.
template <class E, class Fn>
void expectError(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one containing " << parts.front();
  } catch (const E& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void writeBytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

/// A safetensors file with a hand-written header and `dataBytes` zero bytes of data.
void writeRaw(const fs::path& p, const std::string& header, std::size_t dataBytes) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  writeBytes(p, s + header + std::string(dataBytes, '\0'));
}

/// Copies a fixture's config.json and weights into `dst`, letting `edit` change the tensors.
void copyModel(const fs::path& src, const fs::path& dst,
               const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  fs::create_directories(dst);
  fs::copy_file(src / "config.json", dst / "config.json", fs::copy_options::overwrite_existing);
  const auto f = SafetensorsFile::open(src / "model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (const auto& n : f.names()) ts.emplace_back(n, f.tensor(n).clone());
  edit(ts);
  writeSafetensors(dst / "model.safetensors", ts);
}

TEST(SafetensorsErrors, HeaderProblems) {
  const fs::path d = test::tempDir("st");
  writeBytes(d / "short.safetensors", "abc");
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "short.safetensors"); }, {"short.safetensors", "truncated"});
  writeRaw(d / "trunc.safetensors", "{}", 0);
  {  // claims a 1000-byte header but holds 2 bytes
    std::string s(8, '\0');
    s[0] = static_cast<char>(0xe8);
    s[1] = 0x03;
    writeBytes(d / "trunc.safetensors", s + "{}");
  }
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "trunc.safetensors"); },
                          {"trunc.safetensors", "truncated safetensors header", "1000"});
  {
    std::string s(8, '\0');
    s[7] = 0x10;  // enormous length
    writeBytes(d / "huge.safetensors", s + "{}");
  }
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "huge.safetensors"); }, {"huge.safetensors", "100 MB"});
  writeRaw(d / "badjson.safetensors", "{\"a\": {\"dtype\": ", 0);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "badjson.safetensors"); }, {"badjson.safetensors", "JSON"});
  writeRaw(d / "overlap.safetensors",
           R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 24);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "overlap.safetensors"); },
                          {"overlap.safetensors", "'a'", "'b'", "overlap"});
  writeRaw(d / "past.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "past.safetensors"); }, {"past.safetensors", "'a'", "past the end"});
  writeRaw(d / "size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "size.safetensors"); }, {"size.safetensors", "'a'", "12 bytes", "16 bytes"});
  writeRaw(d / "dtype.safetensors", R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "dtype.safetensors"); }, {"dtype.safetensors", "F8_E4M3"});
  writeRaw(d / "overflow.safetensors",
           R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4);
  expectError<InputError>([&] { (void)SafetensorsFile::open(d / "overflow.safetensors"); }, {"overflow.safetensors", "overflow"});
  mechscope::removeTree(d);
}

TEST(SafetensorsErrors, WriterRoundTripAndViews) {
  const fs::path d = test::tempDir("rt");
  const at::Tensor a = at::arange(12, at::kFloat).view({3, 4});
  const at::Tensor b = at::arange(6, at::kFloat).to(at::kBFloat16);
  const at::Tensor i = at::arange(5, at::kLong);
  writeSafetensors(d / "x.safetensors", {{"a", a}, {"b", b}, {"i", i}}, {{"format", "pt"}});
  EXPECT_FALSE(fs::exists(d / "x.safetensors.partial"));
  const auto f = SafetensorsFile::open(d / "x.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_TRUE(at::equal(f.tensor("a"), a));
  EXPECT_EQ(f.info("b").dtype, SafetensorsDType::BF16);
  EXPECT_TRUE(at::equal(f.tensor("b", at::kFloat), b.to(at::kFloat)));
  EXPECT_TRUE(at::equal(f.tensor("i"), i));
  // The view outlives the file object (the mapping is kept alive by the tensor).
  at::Tensor keep;
  { keep = SafetensorsFile::open(d / "x.safetensors").tensor("a"); }
  EXPECT_TRUE(at::equal(keep, a));
  expectError<InputError>([&] { (void)f.tensor("nope"); }, {"x.safetensors", "'nope'", "missing"});
  mechscope::removeTree(d);
}

TEST(ModelErrors, FolderAndConfig) {
  MECHSCOPE_FIXTURE_OR_SKIP(gpt2, "gpt2");
  const fs::path d = test::tempDir("cfg");
  // Missing config.json.
  fs::create_directories(d / "noconfig");
  fs::copy_file(gpt2 / "model.safetensors", d / "noconfig" / "model.safetensors");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "noconfig"); }, {"config.json", "missing"});
  // Unknown model_type lists the supported ones.
  fs::create_directories(d / "bert");
  writeBytes(d / "bert" / "config.json", R"({"model_type": "bert", "hidden_size": 64})");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "bert"); },
                          {"config.json", "unknown model_type 'bert'", "gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"});
  // Missing key.
  fs::create_directories(d / "nokey");
  writeBytes(d / "nokey" / "config.json", R"({"model_type": "gpt2", "n_layer": 2, "n_head": 4, "vocab_size": 10, "n_positions": 8})");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "nokey"); }, {"config.json", "missing key 'n_embd'"});
  // Malformed config.
  fs::create_directories(d / "badcfg");
  writeBytes(d / "badcfg" / "config.json", "{\"model_type\": ");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "badcfg"); }, {"config.json", "malformed JSON"});
  // Pickle-only folder.
  fs::create_directories(d / "pickle");
  fs::copy_file(gpt2 / "config.json", d / "pickle" / "config.json");
  writeBytes(d / "pickle" / "pytorch_model.bin", "PK");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "pickle"); },
                          {"pytorch_model.bin", "safetensors", "save_pretrained", "safe_serialization=True"});
  // Empty folder with a config.
  fs::create_directories(d / "empty");
  fs::copy_file(gpt2 / "config.json", d / "empty" / "config.json");
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "empty"); }, {"no model.safetensors"});
  // Not a folder.
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "does-not-exist"); }, {"does-not-exist"});
  mechscope::removeTree(d);
}

TEST(ModelErrors, TensorMissingOrWrongShape) {
  MECHSCOPE_FIXTURE_OR_SKIP(gpt2, "gpt2");
  const fs::path d = test::tempDir("tensors");
  copyModel(gpt2, d / "missing", [](auto& ts) {
    ts.erase(std::remove_if(ts.begin(), ts.end(), [](const auto& p) { return p.first == "transformer.h.1.ln_2.bias"; }), ts.end());
  });
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "missing"); },
                          {"model.safetensors", "'transformer.h.1.ln_2.bias'", "missing"});
  copyModel(gpt2, d / "shape", [](auto& ts) {
    for (auto& [n, t] : ts)
      if (n == "transformer.h.0.attn.c_attn.weight") t = t.narrow(1, 0, 190).contiguous();
  });
  expectError<InputError>([&] { (void)HookedTransformer::load(d / "shape"); },
                          {"model.safetensors", "'transformer.h.0.attn.c_attn.weight'", "[64, 190]", "expected [64, 192]"});
  // Sharded folder: index + two shards load and match the single file.
  {
    const auto f = SafetensorsFile::open(gpt2 / "model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> s1, s2;
    nlohmann::json map;
    for (const auto& n : f.names()) {
      const bool first = n.find(".h.0.") != std::string::npos || n.find("wte") != std::string::npos;
      (first ? s1 : s2).emplace_back(n, f.tensor(n));
      map[n] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    fs::create_directories(d / "sharded");
    fs::copy_file(gpt2 / "config.json", d / "sharded" / "config.json");
    writeSafetensors(d / "sharded" / "model-00001-of-00002.safetensors", s1);
    writeSafetensors(d / "sharded" / "model-00002-of-00002.safetensors", s2);
    writeBytes(d / "sharded" / "model.safetensors.index.json", nlohmann::json{{"metadata", {}}, {"weight_map", map}}.dump());
    auto a = HookedTransformer::load(d / "sharded");
    auto b = HookedTransformer::load(gpt2);
    const at::Tensor ids = at::arange(10, at::kLong).unsqueeze(0);
    EXPECT_TRUE(at::equal(a->forward(ids).logits, b->forward(ids).logits));
    EXPECT_EQ(a->parameterCount(), b->parameterCount());
  }
  mechscope::removeTree(d);
}

TEST(ModelErrors, TokensAndDevices) {
  MECHSCOPE_FIXTURE_OR_SKIP(gpt2, "gpt2");
  auto m = HookedTransformer::load(gpt2);
  at::Tensor ids = at::arange(10, at::kLong).unsqueeze(0);
  ids[0][7] = 1000;
  expectError<InputError>([&] { (void)m->forward(ids); }, {"token id 1000", "[0, 7]", "vocab size 1000"});
  ids[0][7] = -3;
  expectError<InputError>([&] { (void)m->forward(ids); }, {"token id -3"});
  const at::Tensor longIds = at::zeros({1, 129}, at::kLong);
  expectError<InputError>([&] { (void)m->forward(longIds); }, {"129", "n_ctx = 128"});
  expectError<InputError>([&] { (void)m->forward(at::zeros({4}, at::kLong)); }, {"[batch, pos]"});
  expectError<InputError>([&] { (void)m->forward(at::zeros({1, 4}, at::kFloat)); }, {"integer"});
  expectError<UnsupportedError>([&] { (void)HookedTransformer::load(gpt2, LoadOptions{"cpu", "fp16"}); }, {"fp16", "cpu"});
  expectError<InputError>([&] { (void)HookedTransformer::load(gpt2, LoadOptions{"cpu", "int8"}); }, {"int8"});
  expectError<InputError>([&] { (void)HookedTransformer::load(gpt2, LoadOptions{"tpu", "fp32"}); }, {"tpu"});
  if (!at::hasCUDA())
    expectError<UnsupportedError>([&] { (void)HookedTransformer::load(gpt2, LoadOptions{"cuda", "fp32"}); }, {"cuda", "no CUDA"});
  // A replacement of the wrong shape is refused by name.
  HookSet bad;
  bad.add("blocks.0.hook_resid_pre", [](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
    return t.narrow(1, 0, 1);
  });
  expectError<InputError>([&] { (void)m->forward(at::arange(5, at::kLong).unsqueeze(0), {}, &bad); },
                          {"blocks.0.hook_resid_pre", "shape"});
  // bf16 on CPU works and stays close to fp32.
  auto b = HookedTransformer::load(gpt2, LoadOptions{"cpu", "bf16"});
  const at::Tensor x = at::arange(12, at::kLong).unsqueeze(0);
  const double d = (b->forward(x).logits - m->forward(x).logits).abs().max().item<double>();
  EXPECT_LT(d, 0.5);
  EXPECT_EQ(b->dtype(), at::kBFloat16);
}

}  // namespace
