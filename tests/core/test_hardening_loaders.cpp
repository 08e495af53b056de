// Loader hardening (issue 12): every refusal is one InputError line naming the file and the problem.
// safetensors (header cap, sizes, ranges, overlaps, overflow, depth), pickle checkpoints, JSON
// depth/size limits of config.json and tokenizer.json, the tokenizer's input limit.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/common/errors.hpp"
#include "core/common/json_guard.hpp"
#include "core/model/model_config.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "core/tokenizer/tokenizer.hpp"
#include "tests/common/scratch_root.hpp"

using namespace mechscope;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  return test::freshScratchDir("hardening/" + name);
}

void writeBytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

/// 8-byte little-endian length + header + `dataBytes` zero bytes.
std::string safetensorsBytes(const std::string& header, std::size_t dataBytes, uint64_t claimed = UINT64_MAX) {
  const uint64_t n = claimed == UINT64_MAX ? header.size() : claimed;
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s + header + std::string(dataBytes, '\0');
}

/// Expects InputError whose single-line message holds every part.
template <class Fn>
std::string expectInputError(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no InputError; expected one mentioning '" << parts.front() << "'";
  return {};
}

std::string nested(int depth) { return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']'); }

}  // namespace

TEST(HardeningSafetensors, HeaderLengthCap) {
  const auto d = scratch("cap");
  writeBytes(d / "big.safetensors", safetensorsBytes("{}", 0, 100ull * 1024 * 1024 + 1));
  expectInputError([&] { (void)SafetensorsFile::open(d / "big.safetensors"); }, {"big.safetensors", "exceeds the 100 MB limit"});
}

TEST(HardeningSafetensors, ShapeTimesDtypeMustEqualRange) {
  const auto d = scratch("size");
  writeBytes(d / "m.safetensors", safetensorsBytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24));
  expectInputError([&] { (void)SafetensorsFile::open(d / "m.safetensors"); },
                   {"m.safetensors", "'w'", "[2, 3] of F32 = 24 bytes", "span 20 bytes"});
}

TEST(HardeningSafetensors, RangeInsideFile) {
  const auto d = scratch("range");
  writeBytes(d / "m.safetensors", safetensorsBytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8));
  expectInputError([&] { (void)SafetensorsFile::open(d / "m.safetensors"); }, {"m.safetensors", "'w'", "past the end"});
}

TEST(HardeningSafetensors, OverlapBehindAnEmptyTensor) {
  // a [0,100) and c [40,60) overlap; the empty b [10,10) sits between them in offset order.
  const auto d = scratch("overlap");
  writeBytes(d / "m.safetensors",
             safetensorsBytes(R"({"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},)"
                              R"("b":{"dtype":"U8","shape":[0],"data_offsets":[10,10]},)"
                              R"("c":{"dtype":"U8","shape":[20],"data_offsets":[40,60]}})",
                              100));
  expectInputError([&] { (void)SafetensorsFile::open(d / "m.safetensors"); }, {"m.safetensors", "'a' [0, 100]", "'c' [40, 60]", "overlap"});
  // Empty tensors anywhere, and adjacent ranges, are fine.
  writeBytes(d / "ok.safetensors",
             safetensorsBytes(R"({"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
                              R"("b":{"dtype":"U8","shape":[0],"data_offsets":[5,5]},)"
                              R"("c":{"dtype":"U8","shape":[2,5],"data_offsets":[10,20]}})",
                              20));
  const auto f = SafetensorsFile::open(d / "ok.safetensors");
  EXPECT_EQ(f.names().size(), 3u);
  EXPECT_EQ(f.tensor("c").numel(), 10);
}

TEST(HardeningSafetensors, ShapeProductOverflow) {
  const auto d = scratch("overflow");
  // 2^32 * 2^32 elements wraps to 0 in 64 bits, which would "match" the empty range [0, 0].
  writeBytes(d / "m.safetensors",
             safetensorsBytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0));
  expectInputError([&] { (void)SafetensorsFile::open(d / "m.safetensors"); }, {"m.safetensors", "'w'", "overflows"});
}

TEST(HardeningSafetensors, HeaderDepthLimit) {
  const auto d = scratch("depth");
  writeBytes(d / "m.safetensors", safetensorsBytes(R"({"__metadata__":{"x":)" + nested(100000) + "}}", 0));
  expectInputError([&] { (void)SafetensorsFile::open(d / "m.safetensors"); }, {"m.safetensors", "nested deeper than 64 levels"});
}

/// A valid safetensors file whose header is exactly `headerLength` bytes (JSON padded with spaces, as
/// the format allows): one F32 tensor "w" = [1.5, -2.25] when the length fits it, else no tensor.
const std::string kOneTensorHeader = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

std::string validSafetensorsOfHeaderLength(std::size_t headerLength) {
  std::string header = headerLength >= kOneTensorHeader.size() ? kOneTensorHeader : std::string("{}");
  header.resize(headerLength, ' ');
  std::string data(8, '\0');
  const float values[2] = {1.5f, -2.25f};
  std::memcpy(data.data(), values, sizeof values);
  return safetensorsBytes(header, 0) + data;
}

// Issue 20: the first bytes of a safetensors file are the low bytes of its header length, so a length
// of 0x280 (bytes 80 02) or 0x04034B50 (bytes "PK\3\4") looked like a pickle or a zip and a valid shard
// was refused. Every header length loads, with its tensor's values read back as written.
TEST(HardeningSafetensors, AnyHeaderLengthLoads) {
  const auto d = scratch("anylength");
  std::vector<std::size_t> lengths;
  for (std::size_t n = 2; n <= 2100; ++n) lengths.push_back(n);  // every length up to 2 KiB, 0x280..0x580 among them
  for (std::size_t v = 2; v <= 5; ++v)                           // bytes 80 0v then a higher nonzero byte
    for (std::size_t hi : {1u, 3u, 17u}) lengths.push_back(0x80 + (v << 8) + (hi << 16));
  lengths.push_back(0x04034B50);  // "PK\3\4": 67 MB of header, under the 100 MB cap
  const fs::path f = d / "model-00001-of-00002.safetensors";
  for (const std::size_t n : lengths) {
    writeBytes(f, validSafetensorsOfHeaderLength(n));
    try {
      const auto st = SafetensorsFile::open(f);
      if (n >= kOneTensorHeader.size()) {
        ASSERT_EQ(st.names().size(), 1u) << "header length " << n;
        const at::Tensor w = st.tensor("w");
        ASSERT_EQ(w.numel(), 2) << "header length " << n;
        EXPECT_EQ(w[0].item<float>(), 1.5f) << "header length " << n;
        EXPECT_EQ(w[1].item<float>(), -2.25f) << "header length " << n;
      } else {
        EXPECT_TRUE(st.names().empty()) << "header length " << n;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "a valid safetensors file with header length " << n << " was refused: " << e.what();
      break;
    }
  }
}

// The same through a sharded folder (index.json naming two shards), with a header length of 640 and a
// shard name holding ".." that is still a plain file name; a name that leaves the folder is refused.
TEST(HardeningSafetensors, ShardWithPickleLikeHeaderLengthLoads) {
  const auto d = scratch("sharded");
  const std::string one = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  for (const char* name : {"a", "b"}) {
    std::string header = one;
    header[2] = name[0];
    header.resize(0x280, ' ');
    std::string data(8, '\0');
    writeBytes(d / (std::string("model..") + name + ".safetensors"), safetensorsBytes(header, 0) + data);
  }
  writeBytes(d / "model.safetensors.index.json",
             R"({"metadata":{"total_size":16},"weight_map":{"a":"model..a.safetensors","b":"model..b.safetensors"}})");
  const auto set = SafetensorsSet::openFolder(d);
  EXPECT_TRUE(set.has("a"));
  EXPECT_TRUE(set.has("b"));
  writeBytes(d / "model.safetensors.index.json", R"({"weight_map":{"a":"../model..a.safetensors"}})");
  expectInputError([&] { (void)SafetensorsSet::openFolder(d); }, {"model.safetensors.index.json", "not a plain file name"});
}

TEST(HardeningPickle, RefusedWithGuidance) {
  const auto d = scratch("pickle");
  writeBytes(d / "pytorch_model.bin", std::string("PK\x03\x04", 4) + "archive/data.pkl");
  expectInputError([&] { (void)SafetensorsFile::open(d / "pytorch_model.bin"); },
                   {"pytorch_model.bin", "pickle", "save_pretrained", "safe_serialization=True"});
  // torch.save output renamed to .safetensors is recognised by its bytes (zip or pickle protocol 2-5).
  writeBytes(d / "renamed.safetensors", std::string("\x80\x04\x95", 3) + std::string(32, '\0'));
  expectInputError([&] { (void)SafetensorsFile::open(d / "renamed.safetensors"); },
                   {"renamed.safetensors", "pickle", "safe_serialization=True"});
  writeBytes(d / "zip.safetensors", std::string("PK\x03\x04", 4) + std::string(32, '\0'));
  expectInputError([&] { (void)SafetensorsFile::open(d / "zip.safetensors"); }, {"zip.safetensors", "torch.save"});
  for (const char* ext : {".pt", ".pth", ".ckpt"}) {
    const auto f = scratch(std::string("folder") + (ext + 1));
    writeBytes(f / (std::string("weights") + ext), "x");
    expectInputError([&] { (void)SafetensorsSet::openFolder(f); },
                     {f.string(), std::string("weights") + ext, "pickle", "save_pretrained('" + f.string() + "'"});
  }
}

TEST(HardeningJson, GuardCountsOnlyStructuralBrackets) {
  EXPECT_NO_THROW(checkJsonLimits(R"({"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]"})", "x",
                                  JsonLimits{1000, 2}));
  EXPECT_NO_THROW(checkJsonLimits(nested(64), "x", JsonLimits{1000, 64}));
  expectInputError([] { checkJsonLimits(nested(65), "src.json", JsonLimits{1000, 64}); },
                   {"src.json", "nested deeper than 64 levels", "at byte 64"});
  expectInputError([] { checkJsonLimits(std::string(11, ' '), "src.json", JsonLimits{10, 64}); },
                   {"src.json", "11 bytes", "10-byte limit"});
}

TEST(HardeningJson, ConfigDepthAndSize) {
  const auto d = scratch("config");
  writeBytes(d / "config.json", R"({"model_type": "gpt2", "x": )" + nested(5000) + "}");
  expectInputError([&] { (void)ModelConfig::fromJsonFile(d / "config.json"); }, {"config.json", "nested deeper than 64 levels"});
  writeBytes(d / "config.json", "{\"pad\": \"" + std::string(kConfigJsonLimits.maxBytes, 'x') + "\"}");
  expectInputError([&] { (void)ModelConfig::fromJsonFile(d / "config.json"); }, {"config.json", "over the 16777216-byte limit"});
}

TEST(HardeningJson, TokenizerDepth) {
  const std::string deep = R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "x": )" + nested(100000) + "}";
  expectInputError([&] { (void)Tokenizer::fromJson(deep, "deep/tokenizer.json"); },
                   {"deep/tokenizer.json", "nested deeper than 64 levels"});
}

TEST(HardeningTokenizer, InputSizeLimit) {
  const auto tok = Tokenizer::fromJson(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "tiny/tokenizer.json");
  EXPECT_EQ(tok.encode("aaa").ids, (std::vector<int64_t>{0, 0, 0}));
  const std::string big(Tokenizer::kMaxInputBytes + 1, 'a');
  expectInputError([&] { (void)tok.encode(big); }, {"tiny/tokenizer.json", "16777217 bytes", "input limit of 16777216 bytes"});
}

TEST(HardeningTokenizer, VocabIdFarBeyondEntriesIsRefused) {
  // Fuzz finding (tests/data/fuzz_regressions/tokenizer_json/oom-bpe-vocab-id-huge): one id of 10^12
  // made the id → token table allocate ~32 TB.
  expectInputError([] { (void)Tokenizer::fromJson(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1000000000000}, "merges": []}})", "huge/tokenizer.json"); },
                   {"huge/tokenizer.json", "vocab id 1000000000000", "2 entries", "below 65540"});
  // Gaps are fine: ids up to 2 × entries + 65536.
  const auto tok = Tokenizer::fromJson(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 65539}, "merges": []}})", "gap");
  EXPECT_EQ(tok.encode("ab").ids, (std::vector<int64_t>{0, 65539}));
  expectInputError([] { (void)Tokenizer::fromJson(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": "x"}})", "d.json"); },
                   {"d.json", "dropout"});
}

TEST(HardeningConfig, OutOfRangeNumbersAreRefused) {
  // tests/data/fuzz_regressions/config/*: n_inner 2^32 + 1 used to wrap to 1 when narrowed to int;
  // partial_rotary_factor 1e300 made d_head × factor overflow int (UBSan float-cast-overflow).
  const auto d = scratch("cfgrange");
  writeBytes(d / "config.json", R"({"model_type":"gpt2","n_layer":1,"n_embd":4,"n_head":1,"vocab_size":5,"n_positions":4,"n_inner":4294967297})");
  expectInputError([&] { (void)ModelConfig::fromJsonFile(d / "config.json"); }, {"config.json", "'n_inner'", "4294967297", "out of range"});
  writeBytes(d / "config.json", R"({"model_type":"llama","num_hidden_layers":1,"hidden_size":4,"num_attention_heads":1,"intermediate_size":4,)"
                                R"("vocab_size":5,"max_position_embeddings":4,"partial_rotary_factor":1e300})");
  expectInputError([&] { (void)ModelConfig::fromJsonFile(d / "config.json"); }, {"config.json", "partial_rotary_factor", "(0, 1]"});
  writeBytes(d / "config.json", R"({"model_type":"llama","num_hidden_layers":1,"hidden_size":4,"num_attention_heads":1,"intermediate_size":4,)"
                                R"("vocab_size":5,"max_position_embeddings":4,"partial_rotary_factor":0.5})");
  const auto cfg = ModelConfig::fromJsonFile(d / "config.json");
  EXPECT_EQ(cfg.dHead, 4);
  EXPECT_EQ(cfg.rotaryDim, 2);
}
