// `mechscope-cli tokenize`: encode text with a tokenizer.json exactly as Hugging Face `tokenizers` does.
// Plain output is a table (index, id, readable token, code-point span); --json prints one object per
// input line: {"ids": [...], "tokens": [...], "offsets": [[start, end], ...]}.
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/cli/command.hpp"
#include "core/common/errors.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string textFile;
  bool addSpecialTokens = false;
  bool json = false;
  bool jsonLines = false;
};

std::vector<std::string> readInputs(const TokenizeOptions& o) {
  if (!o.textFile.empty() && !o.text.empty()) throw InputError("tokenize: give either --text or --text-file, not both");
  if (o.textFile.empty()) return {o.text};
  std::ifstream in(o.textFile, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the text file for reading", o.textFile));
  std::vector<std::string> lines;
  std::string line;
  size_t lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (!line.empty() && line.back() == '\r' && !o.jsonLines) line.pop_back();
    if (o.jsonLines) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw InputError(fmt::format("{}:{}: expected a JSON string per line (--json-lines): {}", o.textFile, lineNo, e.what()));
      }
      if (!j.is_string())
        throw InputError(fmt::format("{}:{}: expected a JSON string per line (--json-lines), found {}", o.textFile, lineNo, j.type_name()));
      lines.push_back(j.get<std::string>());
    } else {
      lines.push_back(line);
    }
  }
  return lines;
}

void runTokenize(const TokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::fromFile(o.tokenizer);
  for (const auto& u : tok.unsupportedComponents()) std::cerr << "mechscope-cli: warning: " << o.tokenizer << ": " << u << "\n";
  const auto inputs = readInputs(o);
  for (size_t n = 0; n < inputs.size(); ++n) {
    processContext().check();
    const Encoding enc = tok.encode(inputs[n], o.addSpecialTokens);
    if (o.json) {
      nlohmann::json offsets = nlohmann::json::array();
      for (const auto& [b, e] : enc.offsets) offsets.push_back({b, e});
      const nlohmann::json j = {{"ids", enc.ids}, {"tokens", enc.tokens}, {"offsets", offsets}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      continue;
    }
    if (inputs.size() > 1) std::cout << fmt::format("# line {}: {} tokens\n", n + 1, enc.ids.size());
    for (size_t i = 0; i < enc.ids.size(); ++i)
      std::cout << fmt::format("{:>5} {:>8}  {:<24} [{}, {})\n", i, enc.ids[i], tok.displayToken(enc.ids[i]), enc.offsets[i].first,
                               enc.offsets[i].second);
  }
}

const RegisterCommand reg_cmd_tokenize{"tokenize", 20, [](CLI::App& root) {
                            auto opts = std::make_shared<TokenizeOptions>();
                            auto* sub = root.add_subcommand("tokenize", "Encode text with a tokenizer.json (Hugging Face-exact)");
                            sub->add_option("--tokenizer", opts->tokenizer, "tokenizer.json or a model folder holding one")->required();
                            auto* text = sub->add_option("--text", opts->text, "The text to encode");
                            auto* file = sub->add_option("--text-file", opts->textFile, "Encode each line of this file");
                            text->excludes(file);
                            sub->add_flag("--add-special-tokens", opts->addSpecialTokens, "Let the post-processor add BOS/EOS etc.");
                            sub->add_flag("--json", opts->json, "One JSON object per input line: ids, tokens, offsets");
                            sub->add_flag("--json-lines", opts->jsonLines,
                                          "--text-file holds one JSON string per line (texts may contain newlines)");
                            sub->callback([opts] { runTokenize(*opts); });
                          }};

}  // namespace
}  // namespace mechscope::cli
