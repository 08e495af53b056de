#pragma once
// Small hand-written tokenizer.json documents for component tests.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope::test {

/// A BPE tokenizer.json whose vocab is `tokens` (ids in order) with no merges unless given.
inline nlohmann::json tinyBpe(const std::vector<std::string>& tokens, nlohmann::json merges = nlohmann::json::array(),
                              bool ignoreMerges = true) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", nlohmann::json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", ignoreMerges},
            {"vocab", vocab},
            {"merges", merges}}}};
}

/// Single characters a-z, A-Z, digits, space and common punctuation.
inline std::vector<std::string> asciiChars() {
  std::vector<std::string> v;
  for (char c = 32; c < 127; ++c) v.emplace_back(1, c);
  return v;
}

}  // namespace mechscope::test
